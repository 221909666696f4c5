"""The composites of :mod:`lrpkit.composites`: the registry against the composites it builds, the
signed rules (z⁺, LRP-αβ) on VGG-16 against zennit, and the three ways to extend lrpkit that the
README's "Extending lrpkit" names: a rule, a composite, a network of VGG-16's layout."""
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torchvision
from torch import nn
from zennit.rules import AlphaBeta as ZennitAlphaBeta, ZPlus as ZennitZPlus

from conftest import assert_conserved
from oracles.zennit_lrp import signed_oracle
from lrpkit import canonical, composites, diagnostics, lrp, sweeps
from lrpkit.composites import COMPOSITES, Composite, NamedComposite, Parameter
from lrpkit.experiment import grid
from lrpkit.rules import AlphaBeta, Epsilon, Gamma, Rule, ZBox, Zero, ZPlus


# --- the registry --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(COMPOSITES))
def test_each_parameter_sets_exactly_its_layers(key):
    """What the registry declares is what the composite holds: a parameter set to a value of its
    own changes the rules of its layers, and of no other layer; left out, it is its default."""
    named = COMPOSITES[key]
    for parameter in named.parameters:
        start, stop = parameter.layers
        stop = canonical.VGG16_LAYERS - 1 if stop is None else stop
        options = {"rule": parameter.name} if "uniform" in key else {}
        default = named.composite(**options)
        changed = named.composite(**{parameter.name: 0.123}, **options)
        attribute = {"γ": "gamma", "ε": "epsilon"}[parameter.symbol]
        for index in range(1, canonical.VGG16_LAYERS):
            inside = start <= index <= stop
            assert (getattr(changed.rule(index), attribute, None) == 0.123) == inside, (parameter, index)
            if inside:
                assert getattr(default.rule(index), attribute) == parameter.default


def test_the_grid_builds_the_registered_composites():
    """Each grid family and variant is a registered composite with its two axes set, the rest at
    their defaults: the same rules by layer as the named functions."""
    def rules(composite):
        return [(s, e, r) for s, e, r in composite.assignments]

    built = grid.build_composite("decreasing-gamma", "table", 0.3, 0.2, heuristic="zennit", maxpool="max")
    assert rules(built) == rules(composites.decreasing_gamma((0.5, 0.3, 0.2, 0.0), heuristic="zennit", maxpool="max"))
    built = grid.build_composite("tutorial", "table", 0.3, 0.2, heuristic="tutorial", maxpool="avg")
    assert rules(built) == rules(composites.tutorial(0.3, 0.2))
    axes = grid.FAMILIES["decreasing-gamma"].axes
    assert [a.layers for a in axes["table"]] == [(11, 17), (18, 24)]
    assert [a.layers for a in axes["thesis-code"]] == [(1, 17), (18, 24)]


def test_sweeps_are_the_thesis_code_composites_with_one_parameter_varied():
    sweep = sweeps.SWEEPS["composite-epsilon"]
    built = sweep.composite(0.5)
    assert built.rule(20) == Epsilon(0.5)
    assert built.rule(5) == Gamma(COMPOSITES["thesis-code-tutorial"].parameter("gamma").default)
    assert "γ = 0.25 on 1–16" in sweep.layers


def test_unknown_names_are_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown composite 'tutorail'.*did you mean 'tutorial'"):
        composites.named("tutorail")
    with pytest.raises(ValueError, match="unknown hyperparameter of composite 'tutorial' 'gama'"):
        COMPOSITES["tutorial"].parameter("gama")


# --- z⁺ and LRP-αβ on VGG-16 against zennit -----------------------------------------------------


@pytest.mark.parametrize("ours, theirs", [
    (ZPlus(), ZennitZPlus()), (AlphaBeta(2.0, 1.0), ZennitAlphaBeta(2.0, 1.0)),
    (AlphaBeta(1.0, 0.0), ZennitAlphaBeta(1.0, 0.0)),
], ids=["zplus", "alpha2-beta1", "alpha1-beta0"])
def test_signed_rules_equal_zennit_on_vgg16(vgg16_f64, images_f64, ours, theirs):
    target = torch.tensor([3, 500])
    composite = Composite({0: ZBox(), (1, None): ours}, "zennit", "max")
    mine = lrp.relevance(vgg16_f64, images_f64, target, composite)
    expected = signed_oracle(vgg16_f64, images_f64, target, theirs)
    error = float((mine - expected).abs().max() / expected.abs().max())
    assert error <= 1e-10, error


def test_alpha1_beta0_is_zplus_and_uniform_takes_both(vgg16_f64, images_f64):
    x = images_f64[:1]
    zplus = lrp.relevance(vgg16_f64, x, 7, composites.uniform("zplus", zbox=True, heuristic="zennit"))
    ab = lrp.relevance(vgg16_f64, x, 7, composites.uniform("alpha1-beta0", zbox=True, heuristic="zennit"))
    assert torch.allclose(zplus, ab, rtol=1e-12, atol=1e-12 * float(zplus.abs().max()))


def test_a_rule_modified_forward_refuses_alpha_beta():
    with pytest.raises(ValueError, match="LRP-αβ .*no single pre-activation"):
        Composite({(1, None): AlphaBeta()}, "vanilla", "max", forward="zennit")


# --- extending lrpkit -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DoubledWeights(Rule):
    """A rule written as a user would add one: a label and ρ. ``ρ(p) = 2p`` scales every
    contribution and its denominator alike, so it must give LRP-0's relevance."""

    label: ClassVar[str] = "2p"

    def rho(self, weight, bias):
        return tuple(None if p is None else 2 * p for p in (weight, bias))


def test_a_new_rule_is_its_rho_alone(vgg16_f64, images_f64):
    """Written in a few lines, the rule works in a composite, in the thesis code's forward pass
    and in the detector's culprit search, with nothing registered anywhere else."""
    x = images_f64[:1]
    zero = Composite({0: ZBox(), (1, 30): Zero()}, "vanilla", "max")
    doubled = Composite({0: ZBox(), (1, 30): DoubledWeights()}, "vanilla", "max")
    expected = lrp.relevance(vgg16_f64, x, 7, zero)
    assert torch.allclose(lrp.relevance(vgg16_f64, x, 7, doubled), expected, rtol=1e-9, atol=1e-12)
    code = Composite({0: ZBox(), (1, 30): DoubledWeights()}, "vanilla", "max", forward="zennit")
    forward = lrp.forward_pass(vgg16_f64, x, code)
    layer = canonical.layers(vgg16_f64)[2]
    assert torch.allclose(forward.preactivations[2], 2 * forward.outputs[2], rtol=1e-12)
    assert layer.kind == "conv"
    found = diagnostics.culprits(vgg16_f64, x, doubled, 7, count=3)
    assert len(found) == 3 and all(c.rule == "2p" for c in found if 1 <= c.layer <= 30)


def test_a_new_composite_is_one_registry_entry(monkeypatch):
    """A composite registered once is built by name and by the grid, its axes labelled from it."""
    low = Parameter("gamma", "γ", (1, 10), 0.5)
    high = Parameter("epsilon", "ε", (11, 30), 0.1)

    def gamma_then_epsilon(gamma=low.default, epsilon=high.default, heuristic="tutorial", maxpool="avg", **box):
        return Composite({0: ZBox.from_normalization(**box), low.layers: Gamma(gamma), high.layers: Epsilon(epsilon)},
                         heuristic, maxpool, name="γ then ε")

    monkeypatch.setitem(COMPOSITES, "gamma-then-epsilon",
                        NamedComposite("gamma-then-epsilon", "γ then ε", gamma_then_epsilon, (low, high)))
    monkeypatch.setitem(grid.FAMILIES, "gamma-then-epsilon",
                        grid.Family("gamma-then-epsilon", "γ then ε", ("gamma", "epsilon"),
                                    {"table": "gamma-then-epsilon"}))
    built = grid.build_composite("gamma-then-epsilon", "table", 0.2, 0.3, heuristic="zennit", maxpool="max")
    assert built.rule(10) == Gamma(0.2) and built.rule(11) == Epsilon(0.3) and built.heuristic == "zennit"
    assert composites.named("gamma-then-epsilon").composite().rule(5) == Gamma(0.5)
    assert [a.label() for a in grid.FAMILIES["gamma-then-epsilon"].axes["table"]] == [
        "γ (layers 1-10)", "ε (layers 11-30)"]


def narrow_vgg16(classes: int = 6, width: int = 4, pooled: int = 2) -> nn.Module:
    """VGG-16's layout (13 convolutions, 5 max-pools, 3 dense layers) at 1/width of its widths, as
    torchvision builds it, with a smaller pool and classifier: the layer indices of thesis Tables
    2.3 and 2.4."""
    config = [v if v == "M" else v // width for v in torchvision.models.vgg.cfgs["D"]]
    model = torchvision.models.VGG(torchvision.models.vgg.make_layers(config), num_classes=classes)
    channels, hidden = config[-2], 4096 // width // 4
    model.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
    model.classifier = nn.Sequential(nn.Linear(channels * pooled * pooled, hidden), nn.ReLU(True), nn.Dropout(),
                                     nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(), nn.Linear(hidden, classes))
    return model.eval()


def test_a_network_of_vgg16_layout_needs_no_special_case():
    """The thesis's composites, its code's and the detector apply to a narrow VGG-16 layout at
    64 px as they do to VGG-16: same indices, conservation where the rules conserve."""
    torch.manual_seed(3)
    model = narrow_vgg16().double()
    layers = canonical.layers(model)
    assert len(layers) == canonical.VGG16_LAYERS
    assert [layer.index for layer in layers if layer.is_linear][-3:] == [31, 34, 37]
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    for key in COMPOSITES:
        explanation = lrp.explain(model, x, 2, COMPOSITES[key].composite())
        assert explanation.relevance.shape == x.shape and torch.isfinite(explanation.relevance).all()
    unbiased = narrow_vgg16().double()
    unbiased.load_state_dict({k: v * 0 if k.endswith("bias") else v for k, v in model.state_dict().items()})
    assert_conserved(lrp.explain(unbiased, x, 2, composites.uniform("zero", heuristic="vanilla")))
    report = diagnostics.instability(lrp.explain(model, x, 2, composites.thesis_code_tutorial(), keep_layers=True))
    assert len(report.unstable) == 1
    assert len(diagnostics.culprits(model, x, composites.thesis_code_tutorial(), 2, count=2)) == 2
