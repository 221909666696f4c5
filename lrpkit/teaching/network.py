"""Part 3 of the chapter, the network: max-pooling both ways, the backward loop of a composite by
layer index, and Pixel-Flipping."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .. import canonical, imagenet, lrp, pf
from ..composites import Composite
from ..rules import Epsilon, Gamma, ZBox, Zero, pool_relevance
from .cases import activations
from .judge import F64, Case, judge, renamed
from .verdict import Verdict, finish

__all__ = ["check_maxpool_winner", "check_maxpool_average", "check_lrp_by_index", "check_pixel_flipping",
           "small_vgg"]


_POOL_SHAPES = ((1, 2, 6, 6, 2), (2, 3, 7, 5, 2), (1, 2, 9, 9, 3))   # (batch, C, H, W, kernel = stride)


def _pool_cases(epsilon: float = 0.0, zero_window: bool = False) -> list[Case]:
    """Random pooling inputs; with ``zero_window`` the first window of every map is all zeros (after a
    ReLU that happens, and its average is a 0/0)."""
    cases = []
    for i, (B, C, H, Wd, k) in enumerate(_POOL_SHAPES):
        g = torch.Generator().manual_seed(400 + i)
        a = activations((B, C, H, Wd), g)
        if zero_window:
            a[:, :, :k, :k] = 0
        layer = canonical.Layer(0, "pool", "maxpool", options=dict(kernel_size=k, stride=k, padding=0, ceil_mode=False))
        R = torch.randn(layer.forward(a).shape, generator=g, dtype=F64)
        describe = f"a batch of {B} {C}×{H}×{Wd} inputs, {k}×{k} windows"
        cases.append(Case((a, R), dict(kernel_size=k, stride=k), None, describe, B,
                           dict(layer=layer, a=a, R=R, k=k, epsilon=epsilon)))
    return cases


def _pool(case: Case, mode: str, epsilon=None) -> torch.Tensor:
    x = case.extra
    with torch.no_grad():
        return pool_relevance(x["layer"], x["a"], x["R"].clone(), mode, epsilon, "vanilla")


def _evenly(case: Case) -> torch.Tensor:
    x, k = case.extra, case.extra["k"]
    out = F.interpolate(x["R"] / (k * k), scale_factor=k, mode="nearest")
    return F.pad(out, (0, x["a"].shape[3] - out.shape[3], 0, x["a"].shape[2] - out.shape[2]))


def _pool_shape_hint(case: Case, got: tuple) -> str:
    if got == tuple(case.extra["R"].shape):
        return "that is the pooled shape of R; return the relevance of the pool's input a"
    return "the relevance of the input has the shape of a (rows and columns the windows miss get 0)"


def check_maxpool_winner(fn) -> Verdict:
    """Check ``fn(a, R, kernel_size=2, stride=2)``: a max-pooling layer, winner takes all, against
    :func:`lrpkit.rules.pool_relevance` (``mode="max"``)."""
    cases = _pool_cases()
    for case in cases:
        case.expected = _pool(case, "max")
    mistakes = [
        ("pooling treated as average pooling: the relevance is spread over the window in proportion to the "
         "activations, but winner-takes-all gives all of it to the window's maximum", lambda c: _pool(c, "avg")),
        ("relevance split evenly over each window; winner-takes-all gives all of it to the window's maximum",
         _evenly),
    ]
    return finish(judge("maxpool_winner", fn, cases, mistakes, "lrpkit's rules.pool_relevance(mode='max')",
                          things="max-pooling layers (2×2 and 3×3 windows, sizes the window does and does not "
                          "divide)", shape_hint=_pool_shape_hint,
                          signature="maxpool_winner(a, R, kernel_size=..., stride=...)"))


def check_maxpool_average(fn) -> Verdict:
    """Check ``fn(a, R, kernel_size=2, stride=2, epsilon=0.0)``: a max-pooling layer read as
    average pooling in the backward pass (the tutorial), against
    :func:`lrpkit.rules.pool_relevance` (``mode="avg"``)."""
    cases = _pool_cases(0.0, zero_window=True) + [renamed(c, ", ε = 0.25") for c in _pool_cases(0.25)]
    for case in cases:
        epsilon = case.extra["epsilon"]
        case.kwargs["epsilon"] = epsilon
        case.expected = _pool(case, "avg", epsilon or None)
    mistakes = [
        ("pooling treated as max (winner takes all) instead of average: the average pool shares each window's "
         "relevance among all its inputs, in proportion to their activations", lambda c: _pool(c, "max")),
        ("relevance split evenly over each window: LRP on the average pool shares it in proportion to the "
         "activations, R_j = a_j / Σ a · R", _evenly),
        ("ε has no effect: the pooled z of the average pool gets + ε too",
         lambda c: _pool(c, "avg") if c.extra["epsilon"] else None),
        ("relevance k² times too large: the transpose of the average pool divides by the window size, as the "
         "pool does", lambda c: _pool(c, "avg", c.extra["epsilon"] or None) * c.extra["k"] ** 2),
    ]
    return finish(judge("maxpool_average", fn, cases, mistakes, "lrpkit's rules.pool_relevance(mode='avg')",
                          things="max-pooling layers read as average pooling (2×2 and 3×3 windows, ε = 0 and "
                          "0.25)", shape_hint=_pool_shape_hint,
                          signature="maxpool_average(a, R, kernel_size=..., stride=..., epsilon=...)"))

# --------------------------------------------------------------------------------------------------
# a composite by layer index: the backward loop


def small_vgg(seed: int = 0, classes: int = 5) -> nn.Sequential:
    """A VGG-shaped ``nn.Sequential`` for 3×16×16 inputs, float64, random weights and biases, in eval
    mode: its canonical layers are 0 conv, 1 ReLU, 2 conv, 3 ReLU, 4 max-pool, 5 conv, 6 ReLU,
    7 max-pool, 8 flatten, 9 linear, 10 ReLU, 11 dropout, 12 linear."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(6 * 4 * 4, 8), nn.ReLU(), nn.Dropout(), nn.Linear(8, classes))
    with torch.no_grad():
        for p in model.parameters():
            scale = (2 / p[0].numel()) ** 0.5 if p.dim() > 1 else 0.1   # He init; small random biases
            p.copy_(scale * torch.randn(p.shape, generator=generator))
    return model.double().eval()


def pixels(B: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Random images in pixel range [0, 1], normalized as ImageNet images are."""
    mean = torch.tensor(imagenet.MEAN, dtype=F64).view(1, -1, 1, 1)
    std = torch.tensor(imagenet.STD, dtype=F64).view(1, -1, 1, 1)
    return (torch.rand(B, 3, size, size, generator=g, dtype=F64) - mean) / std


def _composites() -> list[Composite]:
    return [
        Composite({0: ZBox(), (1, 4): Gamma(0.25), (5, 7): Epsilon(0.25), (8, None): Zero()}, "vanilla", "avg",
                  name="tutorial-like"),
        Composite({0: ZBox(), (1, 5): Gamma(0.5), (6, 9): Epsilon(0.1)}, "vanilla", "max", name="winner-takes-all"),
        Composite({(0, 3): Epsilon(0.2), (4, 12): Gamma(0.1)}, "vanilla", "avg", name="ε then γ"),
    ]


def check_lrp_by_index(fn) -> Verdict:
    """Check ``fn(model, x, target, composite)``: the LRP backward pass of a whole network, each
    layer with the rule its composite assigns to its index (``composite.rule(index)``) and
    max-pooling as ``composite.maxpool`` says, against :func:`lrpkit.lrp.relevance` (``"vanilla"``
    composites on small random VGG-shaped networks, :func:`small_vgg`)."""
    cases = []
    for i, composite in enumerate(_composites()):
        model = small_vgg(seed=i)
        B = 1 + i % 2
        x = pixels(B, 16, torch.Generator().manual_seed(500 + i))
        target = i % 5
        expected = lrp.relevance(model, x, target, composite)
        cases.append(Case((model, x, target, composite), {}, expected,
                           f"a batch of {B} images, composite {composite!r}", B,
                           dict(model=model, x=x, target=target, composite=composite)))

    def other(case, composite=None, target="same", start=None):
        e = case.extra
        composite = composite or e["composite"]
        tgt = e["target"] if target == "same" else target
        if start == "all":
            logits = e["model"](e["x"])
            return sum(lrp.relevance(e["model"], e["x"], c, composite) for c in range(logits.shape[1]))
        out = lrp.relevance(e["model"], e["x"], tgt, composite)
        if start == "one":
            return out / e["model"](e["x"])[:, e["target"]].view(-1, 1, 1, 1)
        return out

    def remap(case, change):
        c = case.extra["composite"]
        assignments = change(c)
        return None if assignments is None else Composite(assignments, c.heuristic, c.maxpool, c.name)

    def pooling(case, mode):
        c = case.extra["composite"]
        return None if c.maxpool == mode else Composite([((s, e), r) for s, e, r in c.assignments], c.heuristic,
                                                         mode, c.name)

    def pool_without_epsilon(c):
        layers = canonical.layers(small_vgg())
        pools = [l.index for l in layers if l.kind == "maxpool" and c.rule(l.index).epsilon]
        if not pools or c.maxpool != "avg":
            return None
        return [(i, Zero() if i in pools else c.rule(i)) for i in range(len(layers))]

    def shifted(c):   # layer i gets the rule of layer i + 1
        n = len(canonical.layers(small_vgg()))
        return [(i, c.rule(i + 1)) for i in range(n) if not isinstance(c.rule(i + 1), ZBox)]

    def without_zbox(c):
        if not isinstance(c.rule(0), ZBox):
            return None
        return [((s, e), Zero() if isinstance(r, ZBox) else r) for s, e, r in c.assignments]

    def variant(change):
        def compute(case):
            composite = change(case)
            return None if composite is None else other(case, composite)
        return compute

    mistakes = [
        ("max-pooling treated as average pooling where the composite says winner takes all (composite.maxpool "
         "== 'max')", variant(lambda case: pooling(case, "avg"))),
        ("max-pooling treated as max (winner takes all) where the composite says average pooling "
         "(composite.maxpool == 'avg')", variant(lambda case: pooling(case, "max"))),
        ("the average pool inside an ε block ignores ε: it takes the ε of the rule at its own index",
         variant(lambda case: remap(case, pool_without_epsilon))),
        ("layer 0 does not use zᴮ: the rule at index 0 is rules.ZBox, with the bounds rule.low and rule.high",
         variant(lambda case: remap(case, without_zbox))),
        ("the rules are shifted by one layer: layer i gets the rule of index i + 1; ask composite.rule(layer.index)",
         variant(lambda case: remap(case, shifted))),
        ("relevance starts from every logit: start from the target's logit alone (zero for the other classes)",
         lambda case: other(case, start="all")),
        ("relevance starts from 1 instead of the target's logit", lambda case: other(case, start="one")),
        ("you explain the predicted class, not the target given",
         lambda case: None if bool((case.extra["model"](case.extra["x"]).argmax(1) == case.extra["target"]).all())
         else other(case, target=None)),
    ]
    return finish(judge("lrp_by_index", fn, cases, mistakes, "lrpkit's lrp.relevance",
                          things="networks (lrpkit.teaching.small_vgg, three composites of 'vanilla' rules)",
                          signature="lrp_by_index(model, x, target, composite)"))

# --------------------------------------------------------------------------------------------------
# Pixel-Flipping


def check_pixel_flipping(fn) -> Verdict:
    """Check ``fn(model, x, R, target, patch_size, counts, fill)``: the Pixel-Flipping curve of one
    image ``x`` ``[1, C, H, W]`` and its heatmap ``R`` (same shape): the target's logit before any
    change and after the ``counts[k]`` most relevant patches (sum of ``R`` over the patch) are set
    to ``fill`` (``[C]``, normalized units), ``[len(counts) + 1]``; against
    :func:`lrpkit.pf.pixel_flipping` (``order="morf"``, ``mode="gray"``)."""
    cases = []
    setups = ((16, 4, [1, 4, 9, 16]), (16, 4, [2, 5, 16]), (16, 8, [1, 2, 3, 4]))
    for i, (size, patch, counts) in enumerate(setups):
        model = small_vgg(seed=10 + i)
        g = torch.Generator().manual_seed(600 + i)
        x = pixels(1, size, g)
        R = torch.randn(x.shape, generator=g, dtype=F64)
        target = i % 5
        gray = 0.5
        fill = (gray - torch.tensor(imagenet.MEAN, dtype=F64)) / torch.tensor(imagenet.STD, dtype=F64)
        extra = dict(model=model, x=x, R=R, target=target, patch=patch, counts=counts)
        case = Case((model, x, R, target, patch, counts, fill), {}, None,
                     f"a {size}×{size} image with {patch}×{patch} patches and counts {counts}", 1, extra)
        case.expected = _curve(case)
        cases.append(case)

    def non_cumulative(case):   # step k flips only the patches new in step k
        e = case.extra
        order = pf.flip_order(pf.patch_scores(e["R"], e["patch"]), "morf")[0]
        height, width = e["x"].shape[2:]
        grid = (-(-height // e["patch"]), -(-width // e["patch"]))
        fill = case.args[-1].view(1, -1, 1, 1)
        images, previous = [e["x"]], 0
        for count in e["counts"]:
            new = torch.zeros(grid[0] * grid[1], dtype=torch.bool)
            new[order[previous:count]] = True
            pixels = new.view(*grid).repeat_interleave(e["patch"], 0).repeat_interleave(e["patch"], 1)
            images.append(torch.where(pixels[:height, :width], fill, e["x"]))
            previous = count
        with torch.no_grad():
            return e["model"](torch.cat(images))[:, e["target"]]

    mistakes = [
        ("you flip the least relevant patches first (LRF); Pixel-Flipping for grading starts with the most "
         "relevant (MoRF: sort descending)", lambda case: _curve(case, order="lrf")),
        ("you rank the patches by |R|; MoRF ranks them by their signed relevance (negative evidence last)",
         lambda case: _curve(case, relevance=case.extra["R"].abs())),
        ("you record softmax probabilities; the curve is of the target's logit (the model's raw output)",
         lambda case: _curve(case, score="softmax")),
        ("you fill with 0 (the ImageNet mean after normalization) instead of the gray value `fill`",
         lambda case: _curve(case, gray_value=imagenet.MEAN)),
        ("earlier patches are restored at every step: step k must show all of the first counts[k] patches "
         "flipped, not only the new ones", non_cumulative),
    ]

    def shape_hint(case, got):
        if got == (len(case.extra["counts"]),):
            return "the curve starts with the unperturbed image's score (step 0), then one score per count"
        return "one score for the unperturbed image and one per count, as a 1-D tensor"

    return finish(judge("pixel_flipping", fn, cases, mistakes, "lrpkit's pf.pixel_flipping (MoRF, gray)",
                          things="images (small_vgg networks, 4×4 and 8×8 patches, several schedules)",
                          shape_hint=shape_hint,
                          signature="pixel_flipping(model, x, R, target, patch_size, counts, fill)"))


def _curve(case: Case, order: str = "morf", relevance=None, score: str = "logit", gray_value=0.5) -> torch.Tensor:
    e = case.extra
    result = pf.pixel_flipping(e["model"], e["x"], e["R"] if relevance is None else relevance, e["target"],
                               patch_size=e["patch"], order=order, mode="gray", schedule=e["counts"], score=score,
                               gray_value=gray_value, workers=0, progress=False)
    return result.scores[0, :-1]   # without the gray step pixel_flipping appends
