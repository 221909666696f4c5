"""Each rule of :mod:`lrpkit.rules` on one layer, against a float64 derivation of its own.

The derivation writes the layer as a dense matrix ``W`` (a convolution's matrix is read off its
action on the unit images) and computes the rule's formula with explicit sums,

    R_j = a_j Σ_k ρ(W)_jk R_k / den_k,   den = stabilized (ρ(W)ᵀ a + ρ(b)),

so it shares no code with lrpkit's transposed convolutions. LRP-αβ and z⁺ are also checked
against zennit's ``AlphaBeta`` and ``ZPlus`` (``tests/test_composites.py`` does the same on VGG-16).
"""
import pytest
import torch
from torch import nn
from zennit.core import Composite as ZennitComposite
from zennit.rules import AlphaBeta as ZennitAlphaBeta, ZPlus as ZennitZPlus

from lrpkit import canonical, rules
from lrpkit.rules import AlphaBeta, Epsilon, Gamma, Gradient, ZBox, Zero, ZPlus

torch.manual_seed(0)


def dense_matrix(layer, a):
    """The layer's weight as a matrix ``[inputs, outputs]`` and its bias per output, from its action."""
    units = torch.eye(a[0].numel(), dtype=torch.float64).view(-1, *a.shape[1:])
    weight = layer.affine(units, layer.weight, None).flatten(1)
    bias = layer.affine(torch.zeros_like(a[:1]), layer.weight, layer.bias).flatten(1)[0]
    return weight, bias


def zennit_denominator(z, epsilon=1e-6):
    return z + ((z == 0).to(z) + z.sign()) * epsilon


def derived(layer, a, R, rho, epsilon=1e-6):
    """The one-ρ rule by explicit sums (heuristic "zennit")."""
    W, b = dense_matrix(layer, a)
    Wr, br = rho(W), rho(b)
    x, r = a.flatten(1), R.flatten(1)
    z = x @ Wr + br
    return (x[:, :, None] * Wr[None] * (r / zennit_denominator(z, epsilon))[:, None, :]).sum(2).view_as(a)


LAYERS = {
    "conv": lambda: nn.Conv2d(3, 4, 3, padding=1),
    "strided conv": lambda: nn.Conv2d(2, 3, 3, stride=2),
    "dense": lambda: nn.Linear(10, 6),
}


@pytest.fixture(params=list(LAYERS), ids=list(LAYERS))
def one_layer(request):
    """One layer (float64, random weights and biases), a non-negative input and relevance above it."""
    module = LAYERS[request.param]().double()
    with torch.no_grad():
        module.bias.normal_()
    layer = canonical.layers(nn.Sequential(module).eval())[0]
    shape = (2, module.in_channels, 5, 5) if isinstance(module, nn.Conv2d) else (2, module.in_features)
    a = torch.randn(shape, dtype=torch.float64).clamp(min=0)
    out = layer.forward(a)
    return module, layer, a, out, torch.randn_like(out)


def positive(p):
    return p.clamp(min=0)


def negative(p):
    return p.clamp(max=0)


@pytest.mark.parametrize("rule, rho, epsilon", [
    (Zero(), lambda p: p, 1e-6),
    (Epsilon(0.3), lambda p: p, 0.3),
    (Gamma(0.25), lambda p: p + 0.25 * p.clamp(min=0), 1e-6),
    (Gamma(0.0), lambda p: p, 1e-6),
    (ZPlus(), positive, 1e-6),
], ids=["zero", "epsilon", "gamma", "gamma-0", "zplus"])
def test_one_rho_rules_equal_their_formula(one_layer, rule, rho, epsilon):
    _, layer, a, out, R = one_layer
    ours = rule.relevance(layer, a, out, R.clone(), "zennit")
    assert torch.allclose(ours, derived(layer, a, R, rho, epsilon), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha, beta", [(2.0, 1.0), (1.0, 0.0), (1.5, 0.5)])
def test_alpha_beta_equals_its_formula(one_layer, alpha, beta):
    _, layer, a, out, R = one_layer
    expected = alpha * derived(layer, a, R, positive) - beta * derived(layer, a, R, negative)
    ours = AlphaBeta(alpha, beta).relevance(layer, a, out, R.clone(), "zennit")
    assert torch.allclose(ours, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ours, theirs", [
    (ZPlus(), ZennitZPlus()), (AlphaBeta(2.0, 1.0), ZennitAlphaBeta(2.0, 1.0)), (AlphaBeta(1.0, 0.0), ZennitAlphaBeta(1.0, 0.0)),
], ids=["zplus", "alpha2-beta1", "alpha1-beta0"])
def test_signed_rules_equal_zennit_on_one_layer(one_layer, ours, theirs):
    module, layer, a, out, R = one_layer
    net = nn.Sequential(module).eval()
    composite = ZennitComposite(module_map=lambda ctx, name, m: theirs if isinstance(m, (nn.Conv2d, nn.Linear)) else None)
    x = a.clone().requires_grad_(True)
    with composite.context(net) as hooked:
        (expected,) = torch.autograd.grad(hooked(x), x, R)
    mine = ours.relevance(layer, a, out, R.clone(), "zennit")
    assert float((mine - expected).abs().max() / expected.abs().max()) <= 1e-10


def test_gradient_divides_by_the_exact_z_whatever_the_heuristic(one_layer):
    _, layer, a, out, R = one_layer
    W, b = dense_matrix(layer, a)
    x, r = a.flatten(1), R.flatten(1)
    expected = (x[:, :, None] * W[None] * (r / (x @ W + b))[:, None, :]).sum(2).view_as(a)
    for heuristic in ("tutorial", "zennit"):
        assert torch.allclose(Gradient().relevance(layer, a, out, R.clone(), heuristic), expected, rtol=1e-10)


def test_zbox_equals_its_formula():
    """zᴮ: R_i = x_i c_i - l_i c⁺_i - h_i c⁻_i with the denominator W x - W⁺ l - W⁻ h (biases cancel)."""
    module = nn.Conv2d(3, 4, 3, padding=1).double()
    layer = canonical.layers(nn.Sequential(module).eval())[0]
    rule = ZBox()
    a = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    low, high = (t.expand_as(a) for t in rule.bounds(a))
    R = torch.randn_like(layer.forward(a))
    W, _ = dense_matrix(layer, a)
    x, l, h, r = a.flatten(1), low.flatten(1), high.flatten(1), R.flatten(1)
    z = x @ W - l @ positive(W) - h @ negative(W)
    s = r / zennit_denominator(z)
    expected = x * (s @ W.T) - l * (s @ positive(W).T) - h * (s @ negative(W).T)
    ours = rule.relevance(layer, a, layer.forward(a), R.clone(), "zennit")
    assert torch.allclose(ours, expected.view_as(a), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rule", [Zero(), Epsilon(0.1), Gamma(0.5), ZPlus()], ids=lambda r: r.label)
def test_rho_is_the_modification_the_forward_pass_uses(one_layer, rule):
    """:meth:`Rule.preactivation` (the thesis code's forward) is the layer with ρ(W), ρ(b), plus ε."""
    _, layer, a, out, _ = one_layer
    weight, bias = rule.rho(layer.weight, layer.bias)
    expected = layer.affine(a, weight, bias) + (rule.epsilon or 0.0)
    assert torch.allclose(rule.preactivation(layer, a, out), expected, rtol=1e-12, atol=1e-12)


def test_per_sample_gamma_preactivation_equals_one_gamma_at_a_time(one_layer):
    _, layer, a, out, _ = one_layer
    gammas = torch.tensor([0.0, 0.5], dtype=torch.float64)
    z = Gamma(gammas).preactivation(layer, a, out)
    for row, gamma in enumerate(gammas.tolist()):
        assert torch.equal(z[row], Gamma(gamma).preactivation(layer, a[row:row + 1], out[row:row + 1])[0])


def test_alpha_beta_refuses_what_it_cannot_be():
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        AlphaBeta(2.0, 0.5)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        AlphaBeta(0.5, -0.5)
    with pytest.raises(TypeError, match="alpha of LRP-αβ must be a float"):
        AlphaBeta(torch.tensor([2.0, 3.0]), 1.0)
    with pytest.raises(ValueError, match="use parts"):
        AlphaBeta().rho(torch.ones(1), None)


def test_every_named_rule_builds_from_its_hyperparameter():
    for name, entry in rules.RULES.items():
        rule = rules.named_rule(name, gamma=0.5, epsilon=0.2)
        assert isinstance(rule, rules.Rule)
        if entry.parameter is not None:
            assert getattr(rule, entry.parameter) == {"gamma": 0.5, "epsilon": 0.2}[entry.parameter]
    with pytest.raises(ValueError, match="unknown rule 'zplsu'.*did you mean 'zplus'"):
        rules.named_rule("zplsu")
