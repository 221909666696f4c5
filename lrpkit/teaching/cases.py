"""Random float64 layers and inputs for the checks, drawn so that no denominator comes near zero."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch.nn import functional as F

from .. import canonical
from .judge import F64

__all__ = ["random_dense", "conditioned", "activations", "dense_layer", "conv_layer", "rule_relevance", "replaced",
           "margin", "DENSE_SHAPES", "CONV_SHAPES", "dense_draws", "conv_draws"]


def conditioned(draw: Callable[[torch.Generator], tuple], ok: Callable[[tuple], bool], seed: int) -> tuple:
    """The first draw (from ``seed`` on) whose denominators stay clear of zero."""
    for attempt in range(200):
        values = draw(torch.Generator().manual_seed(seed * 1000 + attempt))
        if ok(values):
            return values
    raise RuntimeError(f"no well-conditioned random layer for seed {seed}")  # pragma: no cover


def activations(shape, g) -> torch.Tensor:
    """Non-negative activations with some exact zeros, as after a ReLU."""
    a = torch.rand(shape, generator=g, dtype=F64)
    return a * (torch.rand(shape, generator=g, dtype=F64) > 0.25)


def dense_layer(W: torch.Tensor, b: torch.Tensor) -> canonical.Layer:
    return canonical.Layer(0, "dense", "linear", W, b)


def conv_layer(W: torch.Tensor, b: torch.Tensor, stride: int, padding: int) -> canonical.Layer:
    options = dict(stride=(stride, stride), padding=(padding, padding), dilation=(1, 1), groups=1)
    return canonical.Layer(0, "conv", "conv", W, b, options)


def rule_relevance(rule, layer: canonical.Layer, a: torch.Tensor, R: torch.Tensor, heuristic: str = "vanilla",
          z: Optional[torch.Tensor] = None) -> torch.Tensor:
    """lrpkit's rule on one layer (``z``: the denominator's pre-activation, default the layer's output)."""
    with torch.no_grad():
        return rule.relevance(layer, a, layer.forward(a) if z is None else z, R.clone(), heuristic)


def replaced(layer: canonical.Layer, weight=None, bias=None) -> canonical.Layer:
    return canonical.Layer(layer.index, layer.name, layer.kind, layer.weight if weight is None else weight,
                           layer.bias if bias is None else bias, layer.options)


def margin(z: torch.Tensor, *shifts: float) -> bool:
    """Whether every ``z + shift`` keeps 1e-3 away from 0 (a quotient near a pole would amplify rounding)."""
    return all(float((z + s).abs().min()) > 1e-3 for s in shifts)


DENSE_SHAPES = ((1, 4, 3), (3, 5, 2), (2, 4, 4), (1, 7, 6))          # (batch, inputs, outputs)
CONV_SHAPES = (  # (batch, C, H, W, K, kernel, stride, padding); stride 2 with sizes that need output_padding
    (1, 2, 6, 6, 3, 3, 1, 1), (2, 3, 7, 5, 2, 3, 2, 1), (1, 3, 5, 5, 4, 1, 1, 0), (1, 2, 9, 8, 3, 2, 2, 0),
    (1, 2, 6, 8, 3, 3, 2, 1))


def dense_draws(epsilons: Sequence[float]):
    for i, (B, J, K) in enumerate(DENSE_SHAPES):
        def draw(g, B=B, J=J, K=K):
            return (activations((B, J), g), torch.randn(K, J, generator=g, dtype=F64),
                    0.3 * torch.randn(K, generator=g, dtype=F64), torch.randn(B, K, generator=g, dtype=F64))

        def ok(v):
            a, W, b, _ = v
            z = F.linear(a, W, b)
            return margin(z, 0.0, *epsilons, *(-e for e in epsilons)) and bool((z < 0).any())

        a, W, b, R = conditioned(draw, ok, seed=i)
        yield a, W, b, R, dense_layer(W, b), f"a batch of {B} with {J} inputs and {K} outputs", B


def conv_draws(epsilons: Sequence[float], seed: int = 100, gammas: Sequence[float] = ()):
    """Random convolutions whose denominators (z + ε for every ε given, z_γ for every γ) stay clear of 0."""
    for i, (B, C, H, Wd, K, k, stride, pad) in enumerate(CONV_SHAPES):
        def draw(g, B=B, C=C, H=H, Wd=Wd, K=K, k=k):
            a = activations((B, C, H, Wd), g)
            W = torch.randn(K, C, k, k, generator=g, dtype=F64) / k
            b = 0.3 * torch.randn(K, generator=g, dtype=F64)
            return a, W, b

        def ok(v, stride=stride, pad=pad):
            a, W, b = v
            z = F.conv2d(a, W, b, stride=stride, padding=pad)
            boosted = [F.conv2d(a, W + g * W.clamp(min=0), b + g * b.clamp(min=0), stride=stride, padding=pad)
                       for g in gammas]
            return (margin(z, 0.0, *epsilons, *(-e for e in epsilons)) and bool((z < 0).any())
                    and all(margin(zg, 0.0) for zg in boosted))

        a, W, b = conditioned(draw, ok, seed=seed + i)
        layer = conv_layer(W, b, stride, pad)
        g = torch.Generator().manual_seed(seed + 50 + i)
        R = torch.randn(layer.forward(a).shape, generator=g, dtype=F64)
        describe = (f"a batch of {B} {C}×{H}×{Wd} inputs, {K} filters {k}×{k}, stride {stride}, padding {pad}")
        yield a, W, b, R, layer, describe, B, stride, pad


def random_dense(seed: int = 0, batch: int = 2, inputs: int = 5, outputs: int = 3) -> tuple:
    """A random dense layer to try a function on: ``(a, W, b, R)`` in float64, the activations
    ``a`` non-negative with some zeros (as after a ReLU), ``W`` ``[outputs, inputs]``, ``R`` at the
    output ``[batch, outputs]``."""
    g = torch.Generator().manual_seed(seed)
    return (activations((batch, inputs), g), torch.randn(outputs, inputs, generator=g, dtype=F64),
            0.3 * torch.randn(outputs, generator=g, dtype=F64), torch.randn(batch, outputs, generator=g, dtype=F64))
