"""LRP core: agreement with independent implementations, conservation, batching, errors."""
import pytest
import torch
import torchvision
from torch import nn

from lrpkit import canonical, composites, lrp
from lrpkit.rules import Epsilon, Gamma, ZBox, Zero

from conftest import assert_conserved, randomize_biases, vgg16_without_biases
from oracles.zennit_lrp import gamma_oracle, tutorial_oracle, zennit_rules_oracle


def rel_err(a, b):
    """Max absolute difference over pixels, relative to the largest reference value."""
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def target(vgg16_f64, images_f64):
    with torch.no_grad():
        return vgg16_f64(images_f64).argmax(1)


def test_canonical_indices_match_the_thesis(vgg16_f64):
    chain = canonical.layers(vgg16_f64)
    assert len(chain) == 38
    assert [l.index for l in chain if l.kind == "conv"] == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert [l.index for l in chain if l.kind == "maxpool"] == [4, 9, 16, 23, 30]
    assert [(l.index, l.name) for l in chain if l.kind == "linear"] == [
        (31, "classifier.0"), (34, "classifier.3"), (37, "classifier.6")]
    assert [l.index for l in chain if l.kind == "identity"] == [33, 36]  # dropout


def test_uniform_lrp0_equals_gradient_x_input(vgg16_f64, images_f64):
    comp = composites.uniform("zero", zbox=False, heuristic="vanilla", maxpool="max")
    R = lrp.relevance(vgg16_f64, images_f64, composite=comp)
    G = lrp.gradient_x_input(vgg16_f64, images_f64)
    assert rel_err(R, G) <= 1e-8


# --- input sizes other than 224x224: the first dense layer follows the adaptive average pool --------

OTHER_SIZES = [(256, 256), (64, 64), (100, 140), (32, 32)]


@pytest.fixture(scope="module", params=OTHER_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def other_size_image(request):
    g = torch.Generator().manual_seed(10)
    return torch.randn(1, 3, *request.param, generator=g, dtype=torch.float64)


def test_uniform_lrp0_equals_gradient_x_input_at_other_sizes(vgg16_f64, other_size_image):
    """torchvision's VGG-16 runs any input of 32x32 or more through its AdaptiveAvgPool2d(7); so does
    lrpkit, and uniform LRP-0 is still Gradient × Input, with the model's own logits."""
    x = other_size_image
    e = lrp.explain(vgg16_f64, x, None, composites.uniform("zero", heuristic="vanilla", maxpool="max"))
    with torch.no_grad():
        logits = vgg16_f64(x)
    assert torch.allclose(e.logits, logits, rtol=1e-12, atol=0)
    assert rel_err(e.relevance, lrp.gradient_x_input(vgg16_f64, x)) <= 1e-8


def test_composites_equal_zennit_at_other_sizes(vgg16_f64):
    """Through the adaptive pool, the first dense layer's rule (LRP-0, γ) equals zennit with the pool
    as a layer of its own under LRP-0 (zennit's ``Norm``, as in its composites)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, 3, 100, 140, generator=g, dtype=torch.float64)  # a 3x4 map: overlapping windows
    target = torch.tensor([500])
    R = lrp.relevance(vgg16_f64, x, target, composites.tutorial())
    assert rel_err(R, tutorial_oracle(vgg16_f64, x, target)) <= 1e-6
    # γ up to layer 34 (zennit's generalized γ differs from LRP-γ at the logits, which may be negative)
    R = lrp.relevance(vgg16_f64, x, target, composites.Composite({(1, 36): Gamma(0.3)}, "zennit", "max"))
    assert rel_err(R, gamma_oracle(vgg16_f64, x, target, gamma=0.3)) <= 1e-6


@pytest.mark.parametrize("comp, size", [
    (composites.uniform("zero", zbox=True, heuristic="vanilla"), (256, 256)),
    (composites.uniform("gamma", gamma=0.3, zbox=True, heuristic="vanilla", maxpool="max"), (100, 140)),
], ids=["lrp0-zbox-avgpool-256x256", "gamma-zbox-maxpool-100x140"])
def test_conservation_at_other_sizes(comp, size):
    """Without biases, relevance is conserved through the adaptive pool too (it has no bias)."""
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    model = vgg16_without_biases()
    e = lrp.explain(model, x, None, comp)
    assert_conserved(e)


@pytest.mark.parametrize("size, pooled", [((8, 8), (7, 7)), ((1, 1), (7, 7)), ((13, 9), (3, 4)), ((7, 7), (7, 7))])
def test_pooled_dense_transpose_is_the_adjoint(size, pooled):
    """A dense layer behind an adaptive average pool: its transposed product is the gradient of its
    forward map, re-derived with autograd."""
    from torch.nn import functional as F

    g = torch.Generator().manual_seed(12)
    seq = nn.Sequential(nn.AdaptiveAvgPool2d(pooled), nn.Flatten(), nn.Linear(4 * pooled[0] * pooled[1], 5))
    chain = canonical.layers(seq.double())
    assert [l.kind for l in chain] == ["identity", "linear"] and chain[-1].pool == pooled
    dense = chain[-1]
    a = torch.rand(1, 4, *size, generator=g, dtype=torch.float64).requires_grad_(True)
    s = torch.randn(3, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(dense.weight.shape, generator=g, dtype=torch.float64)
    got = dense.transpose(s, weight, a.shape)
    batch = a.detach().expand(3, -1, -1, -1).clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(F.linear(F.adaptive_avg_pool2d(batch, pooled).flatten(1), weight), batch, s)
    assert got.shape == batch.shape and rel_err(got, expected) <= 1e-12
    with torch.no_grad():
        assert torch.equal(dense.forward(a), F.linear(F.adaptive_avg_pool2d(a, pooled).flatten(1), dense.weight, dense.bias))


def test_too_small_inputs_are_refused_naming_the_smallest(vgg16_f64):
    comp = composites.uniform("zero")
    for size in ((31, 31), (31, 140), (140, 16)):
        with pytest.raises(ValueError, match=rf"input of size \({size[0]}, {size[1]}\) is too small.*at least 32x32"):
            lrp.relevance(vgg16_f64, torch.zeros(1, 3, *size, dtype=torch.float64), composite=comp)
    # a chain without adaptive pooling takes only the size its first dense layer was built for
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10)).eval()
    with pytest.raises(ValueError, match=r"layer 3 \('3'\), which expects 3600.*no adaptive pooling"):
        lrp.relevance(seq, torch.randn(1, 3, 40, 40), composite=comp)
    with pytest.raises(canonical.NonCanonicalModelError, match=r"'1' \(AdaptiveAvgPool2d\).*followed by a dense layer"):
        canonical.layers(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(2), nn.Conv2d(4, 4, 1)))


def test_tutorial_composite_equals_zennit_oracle(vgg16_f64, images_f64, target):
    R = lrp.relevance(vgg16_f64, images_f64, target, composites.tutorial())
    expected = tutorial_oracle(vgg16_f64, images_f64, target)
    for b in range(2):
        assert rel_err(R[b], expected[b]) <= 1e-6


def test_zennit_heuristic_equals_zennit_rules(vgg16_f64, images_f64, target):
    comp = composites.tutorial(gamma=0.5, epsilon=0.1, heuristic="zennit", maxpool="max")
    R = lrp.relevance(vgg16_f64, images_f64, target, comp)
    expected = zennit_rules_oracle(vgg16_f64, images_f64, target, gamma=0.5, epsilon=0.1)
    for b in range(2):
        assert rel_err(R[b], expected[b]) <= 1e-6


def test_batched_grid_equals_settings_one_by_one(vgg16_f64, images_f64):
    gammas = torch.tensor([0.0, 1e-3, 0.1, 1.0], dtype=torch.float64)
    epsilons = torch.tensor([0.25, 0.0, 1e-2, 1.0], dtype=torch.float64)
    image = images_f64[:1]
    grid = lrp.relevance(vgg16_f64, image, 7, composites.tutorial(gamma=gammas, epsilon=epsilons), chunk_size=3)
    assert grid.shape == (4, 3, 224, 224)
    for b in range(4):
        one = lrp.relevance(vgg16_f64, image, 7, composites.tutorial(gamma=float(gammas[b]), epsilon=float(epsilons[b])))
        assert rel_err(grid[b], one[0]) <= 1e-6


@pytest.mark.parametrize("block_bytes", [1 << 20, 1 << 40], ids=["small-blocks", "no-blocks"])
def test_grid_report_equals_settings_one_by_one(vgg16_f64, images_f64, monkeypatch, block_bytes):
    """Per-layer sums and relevances of a grid (repeated settings, two targets) equal single runs,
    whether the rows below the split are carried down in blocks (CPU) or all at once."""
    monkeypatch.setattr(lrp, "CPU_BLOCK_BYTES", block_bytes)
    gammas = torch.tensor([0.1, 0.0, 0.1, 0.1], dtype=torch.float64)
    epsilons = torch.tensor([0.25, 0.25, 1.0, 0.25], dtype=torch.float64)
    targets = torch.tensor([7, 7, 7, 3])
    grid = lrp.explain(vgg16_f64, images_f64[:1], targets, composites.tutorial(gamma=gammas, epsilon=epsilons),
                       keep_layers=True)
    for b in range(4):
        one = lrp.explain(vgg16_f64, images_f64[:1], int(targets[b]),
                          composites.tutorial(gamma=float(gammas[b]), epsilon=float(epsilons[b])), keep_layers=True)
        assert rel_err(grid.relevance[b], one.relevance[0]) <= 1e-6
        assert torch.allclose(grid.layer_sums[:, b], one.layer_sums[:, 0], rtol=1e-6, atol=1e-12)
        for k in (0, 1, 4, 16, 17, 30, 31, 38):
            assert rel_err(grid.layer_relevance[k][b], one.layer_relevance[k][0]) <= 1e-6
    assert grid.relevance.is_contiguous() and all(r.is_contiguous() for r in grid.layer_relevance)


def test_grid_over_different_images_and_decreasing_gamma(vgg16_f64, images_f64, target):
    gammas = (torch.tensor([0.5, 0.0], dtype=torch.float64), 0.25, torch.tensor([0.1, 0.3], dtype=torch.float64), 0.0)
    grid = lrp.relevance(vgg16_f64, images_f64, target, composites.decreasing_gamma(gammas, heuristic="zennit"))
    for b in range(2):
        one = composites.decreasing_gamma([float(g[b]) if torch.is_tensor(g) else g for g in gammas], heuristic="zennit")
        assert rel_err(grid[b], lrp.relevance(vgg16_f64, images_f64[b:b + 1], int(target[b]), one)[0]) <= 1e-6


@pytest.mark.parametrize("comp", [
    composites.uniform("zero", zbox=True, heuristic="vanilla"),
    composites.uniform("gamma", gamma=0.3, zbox=True, heuristic="vanilla", maxpool="max"),
    composites.decreasing_gamma(heuristic="vanilla"),
], ids=["lrp0-zbox-avgpool", "gamma-zbox-maxpool", "decreasing-gamma"])
def test_conservation_layer_by_layer(comp, images_f64):
    """Without biases, LRP-0, LRP-γ, z^B and both pool treatments conserve relevance exactly."""
    model = vgg16_without_biases()
    e = lrp.explain(model, images_f64, None, comp)
    assert_conserved(e)
    report = e.conservation(sample=1)
    assert (report["ratio"] - 1).abs().max() < 1e-9


def test_epsilon_absorbs_relevance(vgg16_f64, images_f64):
    e = lrp.explain(vgg16_f64, images_f64, None, composites.uniform("epsilon", epsilon=1.0, heuristic="vanilla"))
    assert (e.layer_sums[0].abs() < e.layer_sums[-1].abs()).all()


def test_keep_layers_and_explanation(vgg16_f64, images_f64):
    e = lrp.explain(vgg16_f64, images_f64, None, composites.tutorial(), keep_layers=True)
    assert len(e.layer_relevance) == 39
    assert torch.equal(e.layer_relevance[0], e.relevance)
    assert e.layer_relevance[31].shape == (2, 512, 7, 7)
    assert torch.equal(e.target, e.logits.argmax(1))
    assert torch.allclose(e.layer_relevance[0].flatten(1).sum(1), e.layer_sums[0])


def test_vgg16_bn_folding_keeps_logits():
    torch.manual_seed(4)
    model = randomize_biases(torchvision.models.vgg16_bn()).double()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
    model.eval()
    x = torch.randn(1, 3, 224, 224, generator=g, dtype=torch.float64)
    chain = canonical.layers(model)
    assert len(chain) == 38 and chain[0].name == "features.0+features.1"
    a = x
    with torch.no_grad():
        for layer in chain:
            a = layer.forward(a)
        expected = model(x)
    assert rel_err(a, expected) <= 1e-10
    comp = composites.uniform("zero", heuristic="vanilla", maxpool="max")
    assert rel_err(lrp.relevance(model, x, composite=comp), lrp.gradient_x_input(model, x)) <= 1e-8


def test_float32_close_to_float64(vgg16_f64, images_f64):
    model32 = torchvision.models.vgg16().eval()
    model32.load_state_dict({k: v.float() for k, v in vgg16_f64.state_dict().items()})
    R64 = lrp.relevance(vgg16_f64, images_f64[:1], 3)
    R32 = lrp.relevance(model32, images_f64[:1].float(), 3)
    assert R32.dtype == torch.float32
    assert rel_err(R32.double(), R64) <= 1e-3


@pytest.fixture(scope="module")
def sample_images_f32():
    """The castle and three ImageNet samples, float32, from the data mirror (sha256-checked)."""
    import os
    from lrpkit import data
    if not os.environ.get(data.MIRROR_ENV):
        pytest.skip(f"no image mirror ({data.MIRROR_ENV} unset)")
    records = data.image_set("castle") + data.image_set("imagenet-samples")[:3]
    return torch.cat([data.load_image(r.path) for r in records])


def test_float32_uniform_lrp0_equals_gradient_x_input_on_real_images(sample_images_f32):
    """In float32 too: LRP-0 must divide by the very pre-activations whose ReLU gave the activations.

    A forward pass computed differently from the model's (another memory layout) puts a few
    pre-activations within rounding of zero on the other side of zero; their ReLUs then switch in
    one pass and not in the other, and the two maps differed by 10 % of the largest relevance.
    """
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    comp = composites.uniform("zero", heuristic="vanilla", maxpool="max")
    for x in sample_images_f32.split(1):
        R = lrp.relevance(model, x, composite=comp)
        G = lrp.gradient_x_input(model, x)
        assert R.dtype == torch.float32
        assert rel_err(R, G) <= 1e-5


def test_targets_and_chunking(vgg16_f64, images_f64):
    x = torch.cat([images_f64, images_f64[:1]])
    t = torch.tensor([1, 500, 999])
    R = lrp.relevance(vgg16_f64, x, t, chunk_size=2)
    for b, image in ((1, 1), (2, 0)):  # chunk boundaries change nothing; each sample keeps its own target
        alone = lrp.relevance(vgg16_f64, images_f64[image:image + 1], int(t[b]))
        assert rel_err(R[b], alone[0]) <= 1e-10
    # Σ R ≈ target logit for every sample
    with torch.no_grad():
        logits = vgg16_f64(x).gather(1, t[:, None])[:, 0]
    e = lrp.explain(vgg16_f64, x, t, composites.uniform("zero", heuristic="vanilla", maxpool="max"))
    assert torch.equal(e.target, t)
    assert torch.allclose(e.layer_sums[-1], logits, rtol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(vgg16_f64, images_f64):
    model = torchvision.models.vgg16().double().eval()
    model.load_state_dict(vgg16_f64.state_dict())
    gammas = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    cpu = lrp.relevance(model, images_f64[:1], 5, composites.tutorial(gamma=gammas))
    gpu = lrp.relevance(model.cuda(), images_f64[:1].cuda(), 5, composites.tutorial(gamma=gammas.cuda()))
    assert rel_err(gpu.cpu(), cpu) <= 1e-9


# --- bad input: a clear error, never a wrong answer -------------------------------------------

@pytest.fixture(scope="module")
def small_vgg():
    torch.manual_seed(6)
    return torchvision.models.vgg11().eval()


def test_errors_on_bad_input(small_vgg):
    x = torch.randn(2, 3, 224, 224)
    u = composites.uniform("epsilon")  # VGG-11 has 28 layers: the VGG-16 composites do not fit it
    cases = [
        (lambda: lrp.relevance(small_vgg, x[0], composite=u), ValueError, "4-D"),
        (lambda: lrp.relevance(small_vgg, torch.randn(1, 1, 224, 224), composite=u), ValueError, "channels"),
        (lambda: lrp.relevance(small_vgg, torch.randn(1, 3, 30, 30), composite=u), ValueError, "at least 32x32"),
        (lambda: lrp.relevance(small_vgg, x, 1000, composite=u), ValueError, "target 1000 is out of range"),
        (lambda: lrp.relevance(small_vgg, x, -1, composite=u), ValueError, "out of range"),
        (lambda: lrp.relevance(small_vgg, x, torch.tensor([1, 2, 3]), composite=u), ValueError, "one class index per sample"),
        (lambda: lrp.relevance(small_vgg, x, torch.tensor([1.0, 2.0]), composite=u), TypeError, "integer"),
        (lambda: lrp.relevance(small_vgg, x, composite=composites.uniform("gamma", gamma=torch.tensor([0.1, 0.2, 0.3]))),
         ValueError, "per-sample hyperparameters for 3 samples but x has 2"),
        (lambda: lrp.relevance(small_vgg, x.double(), composite=u), ValueError, "float64"),
        (lambda: lrp.relevance(small_vgg, x * float("nan"), composite=u), ValueError, "NaN"),
        (lambda: lrp.relevance(small_vgg.train(), x, composite=u), ValueError, "training mode"),
        (lambda: composites.tutorial(gamma=-0.1), ValueError, "gamma must be >= 0"),
        (lambda: composites.tutorial(gamma=torch.tensor([[0.1]])), ValueError, "1-D"),
        (lambda: composites.tutorial(heuristic="magic"), ValueError, "unknown heuristic 'magic'"),
        (lambda: composites.tutorial(maxpool="min"), ValueError, "unknown maxpool"),
        (lambda: composites.uniform("alpha-beta"), ValueError, "unknown rule 'alpha-beta'"),
        (lambda: composites.Composite({(0, 10): Zero(), (5, 20): Gamma(0.1)}), ValueError, "overlap"),
        (lambda: composites.Composite({(5, 2): Zero()}), ValueError, "out of range"),
        (lambda: composites.Composite({-1: Zero()}), ValueError, "out of range"),
        (lambda: composites.Composite({3: ZBox()}), ValueError, "index 0 only"),
        (lambda: composites.Composite({3: "gamma"}), TypeError, "must be an lrpkit.rules.Rule"),
        (lambda: composites.Composite({(0, 3): Gamma(torch.tensor([0.1, 0.2])), 5: Epsilon(torch.tensor([1.0, 2, 3]))}),
         ValueError, "different lengths"),
    ]
    small_vgg.eval()
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
        small_vgg.eval()
    with pytest.raises(ValueError, match="out of range: the model has layers 0–27"):
        lrp.relevance(small_vgg, x, composite=composites.Composite({(25, 40): Zero()}))


def test_composite_tables_print_the_models_indices(small_vgg):
    """Thesis Table 2.4 with the concrete indices of VGG-16 (38 layers: 31–37, not 31-n), zᴮ written
    as it reads in HTML and on a terminal (not z^B); other models via n_layers or the model."""
    rows = composites.tutorial().table().values.tolist()
    assert rows == [["0", "zᴮ", "low, high ([-2.12, 2.25], [-2.04, 2.43], [-1.8, 2.64])"],
                    ["1–16", "LRP-γ", "γ = 0.25"], ["17–30", "LRP-ε", "ε = 0.25"], ["31–37", "LRP-0", ""]]
    uniform = composites.uniform("epsilon", zbox=True)
    assert uniform.name == "uniform LRP-ε with zᴮ"
    assert uniform.table(model=small_vgg)["Layer index"].tolist() == ["0", "1–27"]  # VGG-11: 28 layers
    assert uniform.table(n_layers=2)["Layer index"].tolist() == ["0", "1"]
    assert repr(uniform) == ("Composite('uniform LRP-ε with zᴮ', {0: ZBox(low=..., high=...), 1–n: Epsilon(ε = 0.25)}, "
                             "heuristic='tutorial', maxpool='avg')").replace("ZBox(low=..., high=...)", repr(uniform.rule(0)))
    with pytest.raises(ValueError, match="layer range 17–30 of composite 'LRP-Tutorial' is out of range: the model has layers 0–27"):
        composites.tutorial().table(model=small_vgg)
    with pytest.raises(ValueError, match="n_layers must be a positive int, got 0"):
        uniform.table(n_layers=0)


def test_non_canonical_models_are_refused():
    with pytest.raises(canonical.NonCanonicalModelError, match=r"layer 'layer1\.0' \(BasicBlock\)"):
        lrp.relevance(torchvision.models.resnet18().eval(), torch.randn(1, 3, 224, 224))
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10)).eval()
    with pytest.raises(canonical.NonCanonicalModelError, match=r"layer '1' \(Tanh\)"):
        lrp.relevance(seq, torch.randn(1, 3, 32, 32))


def test_sequential_chain_matches_gradient_x_input():
    """Canonical nn.Sequential chains (not only VGG) are supported, Linear after Flatten included."""
    torch.manual_seed(7)
    seq = randomize_biases(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 7 * 7, 16), nn.ReLU(), nn.Dropout(), nn.Linear(16, 5))).double().eval()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    R = lrp.relevance(seq, x, composite=composites.uniform("zero", heuristic="vanilla", maxpool="max"))
    assert rel_err(R, lrp.gradient_x_input(seq, x)) <= 1e-10


@pytest.mark.parametrize("size, kernel, stride", [((224, 224), 2, 2), ((7, 9), 2, 2), ((9, 9), 3, 3), ((9, 8), 3, 2)])
def test_max_pool_read_as_average_pool_matches_autograd(size, kernel, stride):
    """The tutorial's pooling rule, R_in = a ⊙ ∂/∂a avgpool(a) · (R / avgpool(a)), re-derived with autograd."""
    from torch.nn import functional as F
    from lrpkit.canonical import Layer
    from lrpkit.rules import pool_relevance

    g = torch.Generator().manual_seed(8)
    a = torch.rand(1, 4, *size, generator=g, dtype=torch.float64)
    layer = Layer(0, "pool", "maxpool", options=dict(kernel_size=kernel, stride=stride, padding=0, ceil_mode=False))
    z = F.avg_pool2d(a, kernel, stride)
    R = torch.randn(3, *z.shape[1:], generator=g, dtype=torch.float64)
    got = pool_relevance(layer, a, R.clone(), "avg", None, "vanilla")
    batch = a.expand(3, -1, -1, -1).clone().requires_grad_(True)
    pooled = F.avg_pool2d(batch, kernel, stride)
    (c,) = torch.autograd.grad(pooled, batch, grad_outputs=R / pooled)
    assert rel_err(got, batch.detach() * c) <= 1e-12
