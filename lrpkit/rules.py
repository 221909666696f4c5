"""LRP rules for the layers of a deep rectifier network (thesis Table 2.2).

Each rule turns the relevance ``R`` at a layer's output into the relevance at its input. With
``a`` the layer's input, ``z`` its pre-activation and ``ρ`` a modification of the parameters,
every rule here has the form

.. math:: R_j = a_j \\sum_k \\frac{\\rho(w_{jk})}{\\mathrm{den}(\\sum_{0,j} a_j \\rho(w_{jk}))} R_k

computed as ``s = R / den(z_ρ)``, ``c = ρ(W)ᵀ s``, ``R_in = a ⊙ c`` (Montavon's four steps), where
``den`` is one of the three heuristics of :mod:`lrpkit.heuristics`.

A rule is a few declarative parts: its label, its hyperparameters, the ε it adds to the
denominator (:attr:`Rule.epsilon`) and its parameter modification :meth:`Rule.rho`, written once
and read by the backward pass, by the thesis code's rule-modified forward pass
(:meth:`Rule.preactivation`) and by the detector's culprit search
(:func:`lrpkit.diagnostics.culprits`). A rule that sums several modified passes (LRP-αβ) names
them in :meth:`Rule.parts`. A new rule is a subclass here and a line in :data:`RULES`.

Hyperparameters (γ, ε) may be a float or a 1-D tensor with one value per sample: one backward pass
then computes a whole grid of settings. For γ this uses the identity, valid for ``a ≥ 0``,

.. math:: z_\\gamma = z + \\gamma (W^+ a + b^+), \\qquad c = (W + \\gamma W^+)^\\top s,

so one extra convolution (``W⁺ a``) serves every γ in the batch; the transposed product uses
``ρ(W) = W + γW⁺`` once per distinct γ.

References
----------
G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Müller, *Layer-Wise Relevance Propagation:
An Overview*, in Explainable AI, LNCS 11700 (2019).
G. Montavon et al., *Explaining nonlinear classification decisions with deep Taylor
decomposition*, Pattern Recognition 65 (2017) (the zᴮ and z⁺ rules).
S. Bach et al., *On pixel-wise explanations for non-linear classifier decisions by layer-wise
relevance propagation*, PLoS ONE 10 (2015) (LRP-αβ).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Optional, Sequence, Union

import torch
from torch.nn import functional as F

from ._checks import choice
from .canonical import Layer, _pair
from .heuristics import denominator, divide, per_sample
from .imagenet import MEAN as IMAGENET_MEAN, STD as IMAGENET_STD

__all__ = [
    "Rule", "Zero", "Epsilon", "Gamma", "ZPlus", "AlphaBeta", "ZBox", "Gradient",
    "RULES", "NamedRule", "named_rule", "pool_relevance", "POOLING",
]

POOLING = ("avg", "max")

Hyperparameter = Union[float, torch.Tensor]


def _check_hyperparameter(name: str, value: Hyperparameter, negative_ok: bool = False) -> Hyperparameter:
    if isinstance(value, torch.Tensor):
        if value.dim() != 1 or value.numel() == 0:
            raise ValueError(f"{name} must be a float or a non-empty 1-D tensor (one value per sample), got shape {tuple(value.shape)}")
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or Inf")
        if not negative_ok and (value < 0).any():
            raise ValueError(f"{name} must be >= 0, got {value.min().item():g}")
        if value.numel() > 1 and bool((value == value[0]).all()):
            return float(value[0])  # one value for every sample: cheaper as a scalar
        return value.detach()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a 1-D tensor, got {type(value).__name__}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if not negative_ok and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value:g}")
    return value


def _take(value: Hyperparameter, index) -> Hyperparameter:
    return value[index] if isinstance(value, torch.Tensor) else value


def _describe(symbol: str, value: Hyperparameter) -> str:
    if isinstance(value, torch.Tensor):
        return f"{symbol} per sample ({value.numel()} values, {value.min().item():.3g} … {value.max().item():.3g})"
    return f"{symbol} = {value:g}"


@dataclass(frozen=True)
class Rule:
    """Base class of the rules for convolutional and dense layers."""

    label: ClassVar[str] = "rule"
    #: The ε the rule adds to its denominator, or None if it has none.
    epsilon: ClassVar[Optional[Hyperparameter]] = None

    @property
    def batch_size(self) -> Optional[int]:
        """The number of samples the rule's per-sample hyperparameters describe (None if scalar)."""
        sizes = {v.numel() for v in vars(self).values() if isinstance(v, torch.Tensor) and v.dim() == 1}
        return sizes.pop() if sizes else None

    def take(self, index) -> "Rule":
        """The rule restricted to the samples ``index`` (a slice or index tensor)."""
        return self

    def hyperparameters(self) -> str:
        """The hyperparameters as the thesis's tables print them."""
        return ""

    def relevance(self, layer: Layer, a: torch.Tensor, z: torch.Tensor, R: torch.Tensor, heuristic: str,
                  memo: Optional[dict] = None, den: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Relevance at the input of ``layer`` from the relevance ``R`` at its output.

        Parameters
        ----------
        layer : Layer
            A convolution or dense layer.
        a : torch.Tensor
            The layer's input activations (may have batch 1 when shared by all samples of ``R``).
        z : torch.Tensor
            The layer's ordinary output ``W a + b`` from the forward pass.
        R : torch.Tensor
            Relevance at the layer's output, ``[B, ...]``. It is a temporary of the LRP loop and
            is overwritten (the quotient ``s`` reuses its memory).
        heuristic : str
            Denominator heuristic.
        memo : dict, optional
            Where the rule may keep what depends only on the layer and ``a`` (e.g. ``W⁺a``), for
            the next call on the same layer and activations (other rows of a grid).
        den : torch.Tensor, optional
            The denominator to divide by instead of the rule's own: under the thesis code's
            rule-modified forward pass, the pre-activation that pass computed
            (:meth:`preactivation`, batch 1 or one row per sample of ``R``), the same to the bit.
        """
        weight, bias = self.rho(layer.weight, layer.bias)
        if den is None:
            z_rho = z if weight is layer.weight and bias is layer.bias else layer.affine(a, weight, bias)
            den = denominator(z_rho, self.epsilon, heuristic)
        s = divide(R, den, inplace=True)
        return _times(layer.transpose(s, weight, a.shape), a)

    def rho(self, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> tuple:
        """The rule's modification of a layer's parameters, ``(ρ(W), ρ(b))``: the parameters
        themselves (the same objects) for a rule that keeps them. Its hyperparameters must be
        scalars (:meth:`take` one sample first)."""
        return weight, bias

    def parts(self) -> tuple:
        """``((coefficient, rule), ...)``: the rule as a sum of rules with one :meth:`rho` each
        (LRP-αβ: ``α`` times z⁺ and ``-β`` times z⁻); most rules are one part, themselves."""
        return ((1.0, self),)

    def preactivation(self, layer: Layer, a: torch.Tensor, out: torch.Tensor) -> Optional[torch.Tensor]:
        """The rule's pre-activation ``z`` (the vanilla denominator), computed as the thesis code's
        rules compute it in their forward pass: the layer with ``ρ(W)``, ``ρ(b)`` (``out`` itself
        where ρ keeps them), plus ε for LRP-ε; z^B ``out - (W⁺l + b⁺) - (W⁻h + b⁻)``; None for a
        layer the code leaves unwrapped (:class:`Gradient`). ``out = W a + b`` is the layer's
        output; ``a`` holds one input per sample of a per-sample rule, or one for all of them."""
        if len(self.parts()) > 1:
            raise ValueError(f"{self.label} sums {len(self.parts())} modified passes and has no single pre-activation: "
                             "the thesis code's rule-modified forward pass (forward=...) cannot use it")
        weight, bias = self.rho(layer.weight, layer.bias)
        z = out if weight is layer.weight and bias is layer.bias else layer.affine(a, weight, bias)
        return z if self.epsilon is None else per_sample(self.epsilon, z) + z


@dataclass(frozen=True)
class Gradient(Rule):
    """No rule: the layer's own gradient, ``R_j = Σ_k a_j w_jk / z_k · R_k`` with the exact ``z``
    whatever the heuristic (LRP-0 without a stabilizer). This is what the thesis code's
    Decreasing-γ composite leaves to its classifier, and the layer's forward pass stays the model's
    under a rule-modified forward (:meth:`preactivation` is None)."""

    label: ClassVar[str] = "none (gradient)"

    def relevance(self, layer, a, z, R, heuristic, memo=None, den=None):
        return super().relevance(layer, a, z, R, "vanilla", memo, den)

    def preactivation(self, layer, a, out):
        return None


@dataclass(frozen=True)
class Zero(Rule):
    """LRP-0: ``R_j = Σ_k a_j w_jk / z_k · R_k``. Uniform LRP-0 equals Gradient × Input."""

    label: ClassVar[str] = "LRP-0"


class _OneHyperparameter(Rule):
    """A rule with one hyperparameter (``parameter``, printed as ``symbol``), a float or per sample."""

    parameter: ClassVar[str]
    symbol: ClassVar[str]

    def __post_init__(self) -> None:
        # the checked value replaces the given one (a per-sample tensor of one value becomes a float)
        object.__setattr__(self, self.parameter, _check_hyperparameter(self.parameter, getattr(self, self.parameter)))

    def take(self, index) -> "_OneHyperparameter":
        return type(self)(_take(getattr(self, self.parameter), index))

    def hyperparameters(self) -> str:
        return _describe(self.symbol, getattr(self, self.parameter))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hyperparameters()})"


@dataclass(frozen=True, repr=False)
class Epsilon(_OneHyperparameter):
    """LRP-ε: adds ε to the denominator, absorbing weak or contradictory relevance.

    Parameters
    ----------
    epsilon : float or torch.Tensor
        ε >= 0, or one value per sample (1-D tensor of length B).
    """

    epsilon: Hyperparameter = 0.25
    label: ClassVar[str] = "LRP-ε"
    parameter: ClassVar[str] = "epsilon"
    symbol: ClassVar[str] = "ε"


@dataclass(frozen=True, repr=False)
class Gamma(_OneHyperparameter):
    """LRP-γ: ``ρ(p) = p + γ p⁺`` on weights and biases, favouring positive contributions.

    Parameters
    ----------
    gamma : float or torch.Tensor
        γ >= 0, or one value per sample (1-D tensor of length B). γ = 0 is LRP-0.

    Notes
    -----
    Valid for non-negative inputs (after a ReLU or a max-pool), as in VGG; with them it equals
    zennit's generalized ``Gamma`` rule.
    """

    gamma: Hyperparameter = 0.25
    label: ClassVar[str] = "LRP-γ"
    parameter: ClassVar[str] = "gamma"
    symbol: ClassVar[str] = "γ"

    def relevance(self, layer, a, z, R, heuristic, memo=None, den=None):
        if isinstance(self.gamma, float) and self.gamma == 0.0:
            return super().relevance(layer, a, z, R, heuristic, den=den)
        w_plus = _memoized(memo, ("w+", layer.index), lambda: layer.weight.clamp(min=0))
        z_plus = None
        if den is None:  # W⁺a + b⁺: one convolution for every γ
            z_plus = _memoized(memo, ("gamma", layer.index), lambda: layer.affine(a, w_plus, layer.bias.clamp(min=0)))
        if isinstance(self.gamma, float):
            return self._relevance(layer, a, z, z_plus, w_plus, R, self.gamma, heuristic, den)
        # One pass per run of samples sharing γ, with ρ(W) = W + γW⁺: half the work of Wᵀs + W⁺ᵀ(γs),
        # and the large temporaries of the early layers stay one run in size.
        gammas = self.gamma.tolist()
        starts = [i for i in range(len(gammas)) if i == 0 or gammas[i] != gammas[i - 1]]
        if len(starts) == 1:
            return self._relevance(layer, a, z, z_plus, w_plus, R, gammas[0], heuristic, den)
        out = _empty_rows(a, R.shape[0])
        for start, stop in zip(starts, starts[1:] + [len(gammas)]):
            rows = slice(start, stop)
            out[rows] = self._relevance(layer, _rows(a, rows), _rows(z, rows), _rows(z_plus, rows), w_plus, R[rows],
                                        gammas[start], heuristic, _rows(den, rows))
        return out

    def rho(self, weight, bias):
        if not isinstance(self.gamma, float):
            raise ValueError(f"ρ of LRP-γ with per-sample γ ({self.hyperparameters()}): take() one sample first")
        if self.gamma == 0.0:
            return weight, bias
        return _each(lambda p: _plus_gamma(p, self.gamma), weight, bias)

    def preactivation(self, layer, a, out):
        if isinstance(self.gamma, float):
            return super().preactivation(layer, a, out)
        z = out.new_empty((len(self.gamma), *out.shape[1:]))
        for gamma in self.gamma.unique().tolist():
            rows = (self.gamma == gamma).to(out.device)
            z[rows] = Gamma(gamma).preactivation(layer, _rows(a, rows), _rows(out, rows))
        return z

    @staticmethod
    def _relevance(layer, a, z, z_plus, w_plus, R, gamma: float, heuristic, den=None):
        """The γ rule for one γ: ``c = ρ(W)ᵀ (R / den(z_γ))`` with ``z_γ = z + γ (W⁺a + b⁺)``, which is
        ``ρ(W) a + ρ(b)`` since ρ adds γ times the positive part (:meth:`rho`)."""
        if den is None:
            den = denominator(torch.add(z, z_plus, alpha=gamma), None, heuristic, inplace=True)
        s = divide(R, den, inplace=True)
        return _times(layer.transpose(s, _plus_gamma(layer.weight, gamma, w_plus), a.shape), a)


@dataclass(frozen=True)
class ZPlus(Rule):
    """The z⁺ rule: ``ρ(p) = p⁺`` on weights and biases, only positive contributions.

    Valid for non-negative inputs (after a ReLU or a max-pool), as LRP-γ; with them it equals
    zennit's ``ZPlus`` and LRP-αβ with α = 1, β = 0. z⁺ is LRP-γ in the limit γ → ∞.
    """

    label: ClassVar[str] = "z⁺"

    def rho(self, weight, bias):
        return _each(lambda p: p.clamp(min=0), weight, bias)


@dataclass(frozen=True)
class _ZMinus(Rule):
    """The negative half of LRP-αβ: ``ρ(p) = p⁻`` on weights and biases."""

    label: ClassVar[str] = "z⁻"

    def rho(self, weight, bias):
        return _each(lambda p: p.clamp(max=0), weight, bias)


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-αβ: ``α`` times the relevance of the positive contributions (z⁺) minus ``β`` times
    that of the negative ones (``ρ(p) = p⁻``), each over its own denominator.

    Parameters
    ----------
    alpha, beta : float
        ``α - β = 1``, both >= 0 (so that the rule conserves); α = 1, β = 0 is z⁺, α = 2, β = 1
        the usual choice for lower layers (Montavon et al. 2019).

    Notes
    -----
    Valid for non-negative inputs (after a ReLU or a max-pool); with them it equals zennit's
    ``AlphaBeta``. It sums two modified passes (:meth:`parts`), so it has no single
    pre-activation: the thesis code's rule-modified forward pass cannot use it.
    """

    alpha: float = 2.0
    beta: float = 1.0
    label: ClassVar[str] = "LRP-αβ"

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                raise TypeError(f"{name} of LRP-αβ must be a float (no per-sample values), got a tensor")
            object.__setattr__(self, name, _check_hyperparameter(name, value))
        if abs(self.alpha - self.beta - 1.0) > 1e-12:
            raise ValueError(f"LRP-αβ needs alpha - beta = 1 to conserve relevance, got alpha={self.alpha:g}, "
                             f"beta={self.beta:g}")

    def hyperparameters(self) -> str:
        return f"α = {self.alpha:g}, β = {self.beta:g}"

    def parts(self):
        return ((self.alpha, ZPlus()),) + (((-self.beta, _ZMinus()),) if self.beta else ())

    def rho(self, weight, bias):
        raise ValueError("LRP-αβ has two parameter modifications, one per part: use parts()")

    def relevance(self, layer, a, z, R, heuristic, memo=None, den=None):
        if den is not None:
            raise ValueError("LRP-αβ has no single pre-activation to divide by (a rule-modified forward pass)")
        (alpha, positive), *negative = self.parts()
        out = positive.relevance(layer, a, z, R.clone() if negative else R, heuristic).mul_(alpha)
        for coefficient, part in negative:
            out.add_(part.relevance(layer, a, z, R, heuristic), alpha=coefficient)
        return out


@dataclass(frozen=True)
class ZBox(Rule):
    """The zᴮ rule for the pixel layer, with box constraints ``low <= x <= high``.

    ``R_i = x_i c_i - l_i c⁺_i - h_i c⁻_i`` with ``c = Wᵀ s``, ``c± = (W±)ᵀ s`` and
    ``s = R / den(W x - W⁺ l - W⁻ h)``; the biases cancel.

    Parameters
    ----------
    low, high : sequence of float
        Per-channel bounds of the *normalized* input. Default: the bounds of pixel values in
        [0, 1] under ``normalization``.
    normalization : (sequence of float, sequence of float), optional
        ``(mean, std)`` of the input normalization that the bounds come from, ``l = (0 - μ) / σ``,
        ``h = (1 - μ) / σ`` (:meth:`from_normalization`). Default: ImageNet's when neither bound
        is given, else none.
    """

    low: Optional[tuple] = None
    high: Optional[tuple] = None
    normalization: Optional[tuple] = None
    label: ClassVar[str] = "zᴮ"  # a superscript that needs no math rendering (tables, terminals)

    def __post_init__(self) -> None:
        normalization = self.normalization
        if normalization is None and self.low is None and self.high is None:
            normalization = (IMAGENET_MEAN, IMAGENET_STD)
        if normalization is not None:
            mean, std = normalization
            normalization = (tuple(map(float, mean)), tuple(map(float, std)))
        low, high = _box(*(normalization or (IMAGENET_MEAN, IMAGENET_STD)))
        low = low if self.low is None else tuple(float(v) for v in self.low)
        high = high if self.high is None else tuple(float(v) for v in self.high)
        if len(low) != len(high) or any(lo >= hi for lo, hi in zip(low, high)):
            raise ValueError(f"zᴮ bounds must have one low < high per channel, got low={low}, high={high}")
        for name, value in (("low", low), ("high", high), ("normalization", normalization)):
            object.__setattr__(self, name, value)

    def bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``low`` and ``high`` as ``[1, C, 1, 1]`` tensors of ``like``'s dtype and device.

        Bounds from a normalization are computed as that normalization computes a black and a
        white pixel, ``(0 - μ) / σ`` and ``(1 - μ) / σ`` in ``like``'s dtype (in float32 this may
        differ by one unit in the last place from the rounded float64 value).
        """
        if self.normalization is None:
            return tuple(like.new_tensor(bound).view(1, -1, 1, 1) for bound in (self.low, self.high))
        mean, std = (like.new_tensor(v).view(1, -1, 1, 1) for v in self.normalization)
        return (0 - mean) / std, (1 - mean) / std

    @classmethod
    def from_normalization(cls, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> "ZBox":
        """Bounds of pixel values in [0, 1] after ``(x - mean) / std``."""
        return cls(normalization=(mean, std))

    def hyperparameters(self) -> str:
        return "low, high (" + ", ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(self.low, self.high)) + ")"

    def __repr__(self) -> str:
        return f"ZBox(low={self.low}, high={self.high})"

    def preactivation(self, layer, a, out):
        low, high = (bound.expand_as(a[:1]).contiguous() for bound in self.bounds(a))
        z_low = layer.affine(low, layer.weight.clamp(min=0), layer.bias.clamp(min=0))
        z_high = layer.affine(high, layer.weight.clamp(max=0), layer.bias.clamp(max=0))
        return out - z_low - z_high

    def relevance(self, layer, a, z, R, heuristic, memo=None, den=None):
        if a.shape[1] != len(self.low):
            raise ValueError(f"zᴮ has bounds for {len(self.low)} channels but layer {layer.index} gets {a.shape[1]}")
        low, high = (bound.expand_as(a[:1]) for bound in self.bounds(a))

        def box():  # W = W⁺ + W⁻, so z = W x - W⁺ l - W⁻ h = W⁺ (x - l) + W⁻ (x - h)
            w_plus, w_minus = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
            above_low, below_high = a - low, a - high
            z_box = layer.affine(above_low, w_plus, None).add_(layer.affine(below_high, w_minus, None))
            return (w_plus, w_minus), above_low, below_high, z_box

        (w_plus, w_minus), above_low, below_high, z_box = _memoized(memo, ("zbox", layer.index, self.low, self.high), box)
        s = divide(R, denominator(z_box, None, heuristic) if den is None else den, inplace=True)
        # R = x ⊙ Wᵀs - l ⊙ W⁺ᵀs - h ⊙ W⁻ᵀs = (x - l) ⊙ W⁺ᵀs + (x - h) ⊙ W⁻ᵀs, with W⁺ᵀs and W⁻ᵀs
        # in one transposed product (the two weights stacked along input channels)
        channels = a.shape[1]
        if layer.options.get("groups", 1) == 1:
            c = layer.transpose(s, torch.cat([w_plus, w_minus], dim=1), (a.shape[0], 2 * channels, *a.shape[2:]))
            c_plus, c_minus = c.split(channels, dim=1)
        else:
            c_plus, c_minus = (layer.transpose(s, w, a.shape) for w in (w_plus, w_minus))
        return torch.addcmul(c_plus * above_low, c_minus, below_high)


@dataclass(frozen=True)
class NamedRule:
    """A rule by the name that uniform composites and ``lrpkit explain --rule`` take: how to make it
    and the one hyperparameter it takes (``"gamma"``, ``"epsilon"`` or None)."""

    make: Callable[..., Rule]
    parameter: Optional[str] = None


#: The rules by name, for :func:`lrpkit.composites.uniform` and the command line. A new rule
#: written in this module is offered there by one line here.
RULES = {
    "zero": NamedRule(Zero),
    "epsilon": NamedRule(Epsilon, "epsilon"),
    "gamma": NamedRule(Gamma, "gamma"),
    "zplus": NamedRule(ZPlus),
    "alpha2-beta1": NamedRule(lambda: AlphaBeta(2.0, 1.0)),
    "alpha1-beta0": NamedRule(lambda: AlphaBeta(1.0, 0.0)),
}


def named_rule(name: str, **hyperparameters: Hyperparameter) -> Rule:
    """The rule ``name`` of :data:`RULES` with its hyperparameter taken from ``hyperparameters``
    (e.g. ``named_rule("gamma", gamma=0.25, epsilon=0.25)`` is ``Gamma(0.25)``)."""
    entry = RULES[choice("rule", name, tuple(RULES))]
    return entry.make() if entry.parameter is None else entry.make(hyperparameters[entry.parameter])


def _plus_gamma(p: torch.Tensor, gamma: float, positive: Optional[torch.Tensor] = None) -> torch.Tensor:
    """LRP-γ's ``ρ(p) = p + γ p⁺``, with ``p⁺`` given where it is already at hand (a grid's memo)."""
    return p + gamma * (p.clamp(min=0) if positive is None else positive)


def _each(modify: Callable[[torch.Tensor], torch.Tensor], weight, bias) -> tuple:
    """``(modify(weight), modify(bias))``, a missing bias left None: a rule's ρ on both parameters."""
    return tuple(None if p is None else modify(p) for p in (weight, bias))


def _box(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple, tuple]:
    """zᴮ's bounds under the normalization ``(x - mean) / std``: a black pixel ``(0 - μ) / σ`` and a
    white one ``(1 - μ) / σ``, per channel."""
    if len(mean) != len(std) or any(s <= 0 for s in std):
        raise ValueError(f"mean and std must have one value per channel and std > 0, got mean={mean}, std={std}")
    return tuple((0 - m) / s for m, s in zip(mean, std)), tuple((1 - m) / s for m, s in zip(mean, std))


def _times(c: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``c ⊙ a`` in place in ``c``, in ``a``'s memory layout (a dense layer's ``Wᵀs`` comes out
    row-major; element-wise work on tensors of different layouts is several times slower)."""
    layout = _memory_format(a)
    if layout != torch.contiguous_format and not c.is_contiguous(memory_format=layout):
        c = c.contiguous(memory_format=layout)
    return c.mul_(a)


def _rows(t: Optional[torch.Tensor], rows) -> Optional[torch.Tensor]:
    """The rows ``rows`` of a per-sample tensor; a tensor of batch 1 (shared by every sample) or None as is."""
    return t if t is None or t.shape[0] == 1 else t[rows]


def _memoized(memo: Optional[dict], key, compute):
    """``compute()``, kept in ``memo`` under ``key`` when a memo is given."""
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    """The memory format of the activations ``t`` (channels-last on a CPU, see :mod:`lrpkit.lrp`)."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _empty_rows(like: torch.Tensor, rows: int) -> torch.Tensor:
    """An uninitialized tensor like ``like`` (dtype, device, memory layout) with ``rows`` rows."""
    return torch.empty((rows, *like.shape[1:]), dtype=like.dtype, device=like.device, memory_format=_memory_format(like))


def pool_relevance(layer: Layer, a: torch.Tensor, R: torch.Tensor, mode: str, epsilon, heuristic: str) -> torch.Tensor:
    """Relevance through a max-pooling layer.

    ``mode="avg"`` (Montavon's tutorial): the pool is read as an average pool in the backward pass,
    ``z = avgpool(a)`` with the denominator of the rule at the pool's index (``epsilon``).
    ``mode="max"`` (zennit, the thesis code): winner takes all, the relevance of each output goes
    to the input that attained the maximum.
    """
    opts = layer.options
    if mode == "max":
        _, indices = F.max_pool2d(a, return_indices=True, **opts)
        out = R.new_zeros(R.shape[0], a.shape[1], a.shape[2] * a.shape[3])
        out.scatter_add_(2, indices.flatten(2).expand(R.shape[0], -1, -1), R.flatten(2))
        return out.view(R.shape[0], *a.shape[1:]).contiguous(memory_format=_memory_format(a))
    stride = opts["stride"] if opts["stride"] else opts["kernel_size"]
    z = F.avg_pool2d(a, opts["kernel_size"], stride, opts["padding"], opts["ceil_mode"])
    s = divide(R, denominator(z, epsilon, heuristic), inplace=True)
    kernel, stride, padding = (list(_pair(v)) for v in (opts["kernel_size"], stride, opts["padding"]))
    if kernel == stride and padding == [0, 0]:
        # Non-overlapping windows (VGG's 2x2/2): the transposed average pool spreads s/k² over each
        # window; input rows and columns left over by the floor get none.
        c = F.interpolate(s.mul_(1.0 / (kernel[0] * kernel[1])), scale_factor=tuple(kernel), mode="nearest")
        if c.shape[2:] != a.shape[2:]:  # (F.pad copies even when it pads nothing)
            c = F.pad(c, (0, a.shape[3] - c.shape[3], 0, a.shape[2] - c.shape[2]))
    else:
        c = torch.ops.aten.avg_pool2d_backward(s, a.expand(R.shape[0], *a.shape[1:]), kernel, stride, padding,
                                               opts["ceil_mode"], True, None)
    return c.mul_(a)

