"""Part 2 of the chapter, convolutions: LRP-ε by the gradient trick and directly, LRP-γ, and zᴮ on
the pixel layer."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.nn import functional as F

from ..rules import Gamma, ZBox, Zero
from .cases import CONV_SHAPES, conv_draws, conv_layer, replaced, rule_relevance
from .dense import epsilon_mistakes, epsilon_rule
from .judge import CONV_LAYOUT, F64, Case, judge
from .verdict import Verdict, finish

__all__ = ["check_lrp_epsilon_conv_autograd", "check_lrp_epsilon_conv", "check_lrp_gamma_conv", "check_zbox_conv",
           "box"]


def _conv_cases(epsilons: Sequence[float]) -> list[Case]:
    cases = []
    for epsilon in epsilons:
        for a, W, b, R, layer, describe, B, stride, pad in conv_draws(epsilons):
            expected = rule_relevance(epsilon_rule(epsilon), layer, a, R)
            cases.append(Case((a, W, b, R, epsilon), dict(stride=stride, padding=pad), expected,
                               describe + f", ε = {epsilon:g}", B,
                               dict(layer=layer, a=a, R=R, epsilon=epsilon, stride=stride)))
    return cases


def _conv_shape_hint(case: Case, got: tuple) -> str:
    want = tuple(case.expected.shape)
    if got == tuple(case.extra["R"].shape):
        return "that is the shape of R at the output; return the relevance of the input a"
    if case.extra["stride"] > 1 and got[:2] == want[:2]:
        return ("with stride 2 several input sizes give the same output size, so conv_transpose2d needs "
                "output_padding = (size of a) - (size it computes)")
    return "the relevance of the input has the shape of a"


def _undetached(case: Case) -> torch.Tensor:
    """The gradient trick with s = R / z left attached to the graph."""
    x, epsilon = case.extra, case.extra["epsilon"]
    a = x["a"].clone().requires_grad_(True)
    with torch.enable_grad():
        z = x["layer"].forward(a) + epsilon
        s = x["R"] / z
        (z * s).sum().backward()
    return (x["a"] * a.grad).detach()


def _zero_filled(case: Case) -> Optional[torch.Tensor]:
    """The rule with Wᵀs from conv_transpose2d without output_padding, the missing rows filled with 0."""
    x = case.extra
    layer, a = x["layer"], x["a"]
    s = x["R"] / (layer.forward(a) + x["epsilon"])
    opts = layer.options
    c = F.conv_transpose2d(s, layer.weight, stride=opts["stride"], padding=opts["padding"])
    if c.shape == a.shape:
        return None
    return a * F.pad(c, (0, a.shape[3] - c.shape[3], 0, a.shape[2] - c.shape[2]))


def _conv_mistakes() -> list:
    return [*epsilon_mistakes(lambda c: c.extra["epsilon"]),
            ("the last rows or columns of the input get no relevance although the convolution reads them: with "
             "stride 2, conv_transpose2d needs output_padding = (size of a) - (size it computes), not a zero fill",
             _zero_filled),
            ("s was not detached: autograd also differentiated s = R/z; take s = (R / z).detach() before "
             "(z * s).sum().backward()", _undetached)]


def check_lrp_epsilon_conv_autograd(fn) -> Verdict:
    """Check ``fn(a, W, b, R, epsilon, stride=1, padding=0)``: LRP-ε (ε = 0: LRP-0) for a
    convolution, computed with the gradient trick, against :class:`lrpkit.rules.Epsilon`."""
    cases = _conv_cases((0.0, 0.25))
    return finish(judge("lrp_epsilon_conv_autograd", fn, cases, _conv_mistakes(), "lrpkit's rules.Epsilon",
                          things="convolutions (ε = 0 and 0.25; strides 1-2, paddings 0-1, kernels 1-3)",
                          shape_hint=_conv_shape_hint,
                          signature="lrp_epsilon_conv_autograd(a, W, b, R, epsilon, stride=..., padding=...)",
                          raise_hint=CONV_LAYOUT))


def check_lrp_epsilon_conv(fn) -> Verdict:
    """Check ``fn(a, W, b, R, epsilon, stride=1, padding=0)``: LRP-ε for a convolution computed
    directly (a transposed convolution, no autograd: it is called under ``torch.no_grad()``)."""
    cases = _conv_cases((0.0, 0.25))
    return finish(judge("lrp_epsilon_conv", fn, cases, _conv_mistakes(), "lrpkit's rules.Epsilon",
                          things="convolutions (ε = 0 and 0.25; strides 1-2, paddings 0-1, kernels 1-3), "
                          "without autograd", shape_hint=_conv_shape_hint, no_grad=True,
                          signature="lrp_epsilon_conv(a, W, b, R, epsilon, stride=..., padding=...)",
                          raise_hint=CONV_LAYOUT))


def check_lrp_gamma_conv(fn, gamma: float = 0.25) -> Verdict:
    """Check ``fn(a, W, b, R, gamma, stride=1, padding=0)``: LRP-γ for a convolution, against
    :class:`lrpkit.rules.Gamma` (``ρ(p) = p + γp⁺`` on weights and bias)."""
    cases = []
    for g in (gamma, 4 * gamma):
        for a, W, b, R, layer, describe, B, stride, pad in conv_draws([], seed=200, gammas=(g,)):
            cases.append(Case((a, W, b, R, g), dict(stride=stride, padding=pad), rule_relevance(Gamma(g), layer, a, R),
                               describe + f", γ = {g:g}", B, dict(layer=layer, a=a, R=R, gamma=g, stride=stride)))

    def rho(case, weight, bias, numerator=True, denominator=True, times_a=True):
        x = case.extra
        layer = replaced(x["layer"], weight=weight(x["layer"].weight, x["gamma"]), bias=bias(x["layer"].bias, x["gamma"]))
        z = layer.forward(x["a"]) if denominator else x["layer"].forward(x["a"])
        a = x["a"] if times_a else torch.ones_like(x["a"])
        return rule_relevance(Zero(), layer if numerator else x["layer"], a, x["R"], z=z)

    plus = lambda p, g: p + g * p.clamp(min=0)  # noqa: E731
    same = lambda p, g: p  # noqa: E731
    mistakes = [
        ("γ applied to the negative weights: ρ(w) = w + γ·w⁺ boosts the positive ones (clamp(min=0))",
         lambda case: rho(case, lambda p, g: p + g * p.clamp(max=0), lambda p, g: p + g * p.clamp(max=0))),
        ("γ applied to the negative weights and biases: ρ(w) = w + γ·w⁺ boosts the positive ones",
         lambda case: rho(case, lambda p, g: p + g * p.clamp(max=0), plus)),
        ("ρ applied to the weights but not to the bias: the γ-rule uses b + γ·b⁺ too",
         lambda case: rho(case, plus, same)),
        ("bias forgotten: the denominator is ρ(W) a + ρ(b), bias included",
         lambda case: rho(case, plus, lambda p, g: 0 * p)),
        ("γ has no effect: you compute LRP-0; use ρ(w) = w + γ·w⁺ in numerator and denominator",
         lambda case: rho(case, same, same)),
        ("γ used in the denominator only: the numerator needs ρ(W) as well (c = ρ(W)ᵀ s)",
         lambda case: rho(case, plus, plus, numerator=False)),
        ("γ used in the numerator only: the denominator needs ρ(W) a + ρ(b) as well",
         lambda case: rho(case, plus, plus, denominator=False)),
        ("you keep only the positive weights (w⁺, the z⁺ rule, γ → ∞); LRP-γ uses w + γ·w⁺",
         lambda case: rho(case, lambda p, g: p.clamp(min=0), lambda p, g: p.clamp(min=0))),
        ("the activations are missing: you return c = ρ(W)ᵀs; multiply it by the input a",
         lambda case: rho(case, plus, plus, times_a=False)),
    ]
    return finish(judge("lrp_gamma_conv", fn, cases, mistakes, "lrpkit's rules.Gamma",
                          things=f"convolutions (γ = {gamma:g} and {4 * gamma:g})", shape_hint=_conv_shape_hint,
                          signature="lrp_gamma_conv(a, W, b, R, gamma, stride=..., padding=...)",
                          raise_hint=CONV_LAYOUT))


def box(x, W, b, R, lp, hm, stride, padding, *, bias=False, sign=-1.0, bounds_in_numerator=True):
    """zᴮ written out, with switches for its mistakes: ``lp`` pairs with W⁺, ``hm`` with W⁻."""
    conv = lambda t, w, bb=None: F.conv2d(t, w, bb, stride=stride, padding=padding)  # noqa: E731
    wp, wm = W.clamp(min=0), W.clamp(max=0)
    z = conv(x, W, b if bias else None) + sign * (conv(lp, wp) + conv(hm, wm))
    s = R / z

    def t(w):
        size = [(s.shape[2 + d] - 1) * stride - 2 * padding + w.shape[2 + d] for d in range(2)]
        return F.conv_transpose2d(s, w, stride=stride, padding=padding,
                                  output_padding=(x.shape[2] - size[0], x.shape[3] - size[1]))

    out = x * t(W)
    if bounds_in_numerator:
        out = out + sign * (lp * t(wp) + hm * t(wm))
    return out


def check_zbox_conv(fn) -> Verdict:
    """Check ``fn(x, W, b, R, low, high, stride=1, padding=0)``: the zᴮ rule on the pixel layer
    (``low``, ``high``: per-channel bounds ``[C]``), against :class:`lrpkit.rules.ZBox`."""
    cases = []
    for i, (B, C, H, Wd, K, k, stride, pad) in enumerate(CONV_SHAPES):
        g = torch.Generator().manual_seed(300 + i)
        low = -1.0 - torch.rand(C, generator=g, dtype=F64)
        high = 1.0 + torch.rand(C, generator=g, dtype=F64)
        x = low.view(1, -1, 1, 1) + (high - low).view(1, -1, 1, 1) * torch.rand(B, C, H, Wd, generator=g, dtype=F64)
        W = torch.randn(K, C, k, k, generator=g, dtype=F64) / k
        b = 0.3 * torch.randn(K, generator=g, dtype=F64)
        layer = conv_layer(W, b, stride, pad)
        R = torch.randn(layer.forward(x).shape, generator=g, dtype=F64)
        rule = ZBox(low.tolist(), high.tolist())
        expected = rule_relevance(rule, layer, x, R)
        describe = f"a batch of {B} {C}×{H}×{Wd} images, {K} filters {k}×{k}, stride {stride}, padding {pad}"
        lo, hi = (v.view(1, -1, 1, 1).expand_as(x) for v in (low, high))
        cases.append(Case((x, W, b, R, low, high), dict(stride=stride, padding=pad), expected, describe, B,
                           dict(layer=layer, x=x, W=W, b=b, R=R, lo=lo, hi=hi, stride=stride, pad=pad)))

    def mistaken(case, swap=False, **switches):
        e = case.extra
        lp, hm = (e["hi"], e["lo"]) if swap else (e["lo"], e["hi"])
        return box(e["x"], e["W"], e["b"], e["R"], lp, hm, e["stride"], e["pad"], **switches)

    mistakes = [
        ("zᴮ bounds swapped: the lowest value l goes with the positive weights (W⁺) and the highest h with "
         "the negative ones (W⁻)", lambda case: mistaken(case, swap=True)),
        ("the bias is in the denominator: in zᴮ it cancels, z = W x - W⁺ l - W⁻ h",
         lambda case: mistaken(case, bias=True)),
        ("the bound terms have the wrong sign: z = W x - W⁺ l - W⁻ h and R = x·c - l·c⁺ - h·c⁻",
         lambda case: mistaken(case, sign=1.0)),
        ("the numerator misses the bound terms: R = x·c - l·c⁺ - h·c⁻, not x·c alone",
         lambda case: mistaken(case, bounds_in_numerator=False)),
        ("you compute LRP-0 on the pixels: zᴮ also subtracts the bound terms W⁺ l and W⁻ h",
         lambda case: rule_relevance(Zero(), case.extra["layer"], case.extra["x"], case.extra["R"])),
        ("you compute LRP-0 without the bias on the pixels: zᴮ also subtracts the bound terms W⁺ l and W⁻ h",
         lambda case: mistaken(case, sign=0.0)),
    ]
    return finish(judge("zbox_conv", fn, cases, mistakes, "lrpkit's rules.ZBox",
                          things="pixel layers (1-4 channels, strides 1-2, paddings 0-1)",
                          shape_hint=lambda case, got: "the relevance of the pixels has the shape of x",
                          signature="zbox_conv(x, W, b, R, low, high, stride=..., padding=...)",
                          raise_hint="reshape the per-channel bounds to [1, C, 1, 1] (low.view(1, -1, 1, 1)); " + CONV_LAYOUT))
