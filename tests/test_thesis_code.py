"""The thesis code's composites against the thesis code itself (PyPI ``lrp-pf-auc`` 0.1.6, import
name ``lrp``), on real images with a random VGG-16 (no pretrained weights offline).

float64 with random biases for the exact agreement (a wrong bias term or index shows), float32 with
torchvision's own initialization for the unsigned "shift" stabilizer, whose patches come from
pre-activations within 1e-6 of a threshold: lrpkit must compute the very forward pass the code
computes, bit for bit, to find the same ones.
"""
import copy

import pytest
import torch
import torchvision

from lrpkit import composites, lrp
from lrpkit.rules import Gradient, Zero

from conftest import assert_conserved, randomize_biases, vgg16_without_biases
from oracles.thesis_code import thesis_code_relevance

IMAGES = ("castle", "common newt", "indigo bunting")
FACTORIES = {"tutorial": composites.thesis_code_tutorial, "decreasing_gamma": composites.thesis_code_decreasing_gamma}
SETTINGS = {"tutorial": [(0.25, 0.25), (0.0, 1e-3)], "decreasing_gamma": [(0.25, 0.1), (1e-3, 0.5)]}


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def vgg16_biased_f64():
    torch.manual_seed(0)
    return randomize_biases(torchvision.models.vgg16()).double().eval()


@pytest.fixture(scope="module")
def vgg16_f32():
    torch.manual_seed(0)
    return torchvision.models.vgg16().eval()


@pytest.mark.parametrize("composite", FACTORIES)
def test_thesis_code_composites_agree_with_lrp_pf_auc(composite, vgg16_biased_f64, sample_image):
    """Both composites, two settings each, three images; the zennit stabilizer; float64.
    The two settings run as one grid in lrpkit (a forward pass per setting)."""
    first, second = (torch.tensor(v, dtype=torch.float64) for v in zip(*SETTINGS[composite]))
    for name in IMAGES:
        x = sample_image(name).double()
        ours = lrp.explain(vgg16_biased_f64, x, None, FACTORIES[composite](first, second))
        for b, (p1, p2) in enumerate(SETTINGS[composite]):
            theirs, their_logits = thesis_code_relevance(vgg16_biased_f64, x, composite, p1, p2)
            assert rel_err(ours.relevance[b], theirs[0]) <= 1e-10, (name, p1, p2)
            torch.testing.assert_close(ours.logits[b], their_logits[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("composite, first, second", [("tutorial", 0.0, 0.25), ("tutorial", 0.25, 0.25),
                                                      ("decreasing_gamma", 0.0, 0.0)],
                         ids=["fig-2-3", "table-2-4", "decreasing-gamma-zero"])
@pytest.mark.rounding
def test_shift_stabilizer_agrees_with_lrp_pf_auc_in_float32(composite, first, second, vgg16_f32, sample_image):
    """The code's early "vanilla" (its stabilize patched to dividend + 1e-6), float32, as the book
    runs it: same logits bit for bit, same relevance to 1e-5 of its largest value."""
    for name in IMAGES:
        x = sample_image(name)
        ours = lrp.explain(vgg16_f32, x, None, FACTORIES[composite](first, second, "shift"))
        theirs, their_logits = thesis_code_relevance(vgg16_f32, x, composite, first, second, shift=True)
        assert rel_err(ours.relevance, theirs) <= 1e-5, name
        assert torch.equal(ours.logits, their_logits)


@pytest.mark.rounding
def test_shift_makes_the_common_newt_patch_and_zennit_does_not(vgg16_f32, sample_image):
    """The thesis code's own measurement, in lrpkit: Fig. 2.3's map on the common newt blows the
    relevance sum up (270x in float32 on the machine it was measured on) and the signed stabilizer
    does not. Computed in float64: which neurons fall into the 1e-6 window, and so how much the sum
    grows, depends on the CPU's float32 rounding; in float64 it does not."""
    model, x = copy.deepcopy(vgg16_f32).double(), sample_image("common newt").double()
    shifted = lrp.relevance(model, x, None, composites.thesis_code_tutorial(0.0, 0.25, "shift")).sum()
    signed = lrp.relevance(model, x, None, composites.thesis_code_tutorial(0.0, 0.25, "zennit")).sum()
    assert shifted / signed > 100


@pytest.mark.parametrize("composite", FACTORIES)
def test_grid_with_a_modified_forward_equals_settings_one_by_one(composite, vgg16_f64, images_f64):
    """The forward pass depends on the per-sample γ and ε: a grid must not share it."""
    first = torch.tensor([0.0, 0.25, 1e-3, 0.25], dtype=torch.float64)
    second = torch.tensor([0.25, 0.25, 0.5, 1e-4], dtype=torch.float64)
    image = images_f64[:1]
    grid = lrp.explain(vgg16_f64, image, 7, FACTORIES[composite](first, second), chunk_size=3, keep_layers=True)
    for b in range(4):
        one = lrp.explain(vgg16_f64, image, 7, FACTORIES[composite](float(first[b]), float(second[b])))
        # float64: a batch of four sums in another order than a batch of one (up to 4.6e-12 measured on
        # an Intel Xeon); sharing the forward pass across settings would be wrong by far more
        assert rel_err(grid.relevance[b], one.relevance[0]) <= 1e-10
        torch.testing.assert_close(grid.logits[b], one.logits[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grid.layer_sums[:, b], one.layer_sums[:, 0], rtol=1e-10, atol=1e-14)
    # the settings differ in the forward pass itself, not only in the backward pass
    assert not torch.equal(grid.logits[0], grid.logits[1])


def test_unmodified_layers_and_conservation(vgg16_f64, images_f64):
    """Decreasing-γ without biases conserves exactly (LRP-0, γ and the classifier's gradient);
    the classifier is unruled and its forward is the model's."""
    comp = composites.thesis_code_decreasing_gamma(0.1, 0.3)
    assert isinstance(comp.rule(31), Gradient) and isinstance(comp.rule(37), Gradient)
    assert isinstance(composites.thesis_code_tutorial().rule(37), Zero)
    model = vgg16_without_biases()
    e = lrp.explain(model, images_f64, None, comp)
    assert_conserved(e)


def test_gradient_rule_is_exact_lrp0():
    """rules.Gradient divides by the exact z whatever the composite's heuristic: a uniform Gradient
    composite is Gradient x Input."""
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 8 * 8, 5)).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for heuristic in ("zennit", "tutorial"):
        R = lrp.relevance(model, x, 2, composites.Composite({(0, None): Gradient()}, heuristic))
        assert rel_err(R, lrp.gradient_x_input(model, x, 2)) <= 1e-12


@pytest.mark.parametrize("call, error, match", [
    (lambda: composites.thesis_code_tutorial(heuristic="vanilla"), ValueError,
     r"unknown heuristic 'vanilla' of the thesis code; choose 'zennit' .* or 'shift'"),
    (lambda: composites.Composite({0: Zero()}, "zennit", forward="shift"), ValueError,
     r"forward='shift' needs heuristic='vanilla'"),
    (lambda: composites.Composite({0: Zero()}, "vanilla", forward="magic"), ValueError,
     r"unknown stabilizer 'magic'; choose one of 'zennit', 'shift'"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
