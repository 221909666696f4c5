"""The three denominator heuristics of thesis §2.1.5.

Every LRP rule divides the relevance of a neuron by its (modified) pre-activation ``z``. How that
denominator is stabilized is an implementation choice that changes the heatmap:

``"vanilla"``
    ``z + ε`` with no floor at all (``ε = 0`` for LRP-0 and LRP-γ). This is what produces the
    numerical-instability "patches" of thesis Figures 2.3-2.5 (with trained weights).
``"zennit"``
    ``z + ((z == 0) + sign(z)) · ε``, the stabilizer of zennit, with ``ε = 1e-6`` where the rule has
    no ε of its own (zennit's default).
``"tutorial"``
    ``z + 1e-9 + ε · sqrt(mean(z²))``, Montavon's LRP tutorial: ε scaled by the root mean square of
    the layer's output (per sample), ``ε = 0`` where the rule has none.

A denominator that is exactly zero (a neuron all of whose inputs are zero) gets the quotient 0: no
activation, no relevance (:func:`divide`).

The thesis code (PyPI ``lrp-pf-auc``) stabilizes elsewhere: in the *forward* pass, where each rule
replaces a layer's output by ``z · (output / stabilize(z))`` (see ``forward`` of
:class:`lrpkit.composites.Composite`). Its two ``stabilize`` functions are :data:`STABILIZERS`
(:func:`stabilize`): ``"zennit"`` (from 2022-03-21 on, every grid and Pixel-Flipping figure) and
``"shift"``, the unsigned ``z + 1e-6`` of its early "vanilla" (thesis Figures 2.3-2.5 and B.1).

References
----------
A. Anders et al., *Software for dataset-wide XAI: from local explanations to global insights with
Zennit, CoRelAy, and ViRelAy*, arXiv:2106.13200 (2021).
G. Montavon, *LRP tutorial* (2021).
R. Bermudez Schettino, thesis (2022), §2.1.5.
"""
from __future__ import annotations

from typing import Union

import torch

from ._checks import choice

__all__ = ["HEURISTICS", "STABILIZERS", "ZENNIT_DEFAULT_EPSILON", "TUTORIAL_FLOOR", "check_heuristic",
           "check_stabilizer", "denominator", "divide", "per_sample", "stabilize"]

HEURISTICS = ("vanilla", "zennit", "tutorial")
#: The thesis code's stabilizers of its rule-modified forward pass (:func:`stabilize`).
STABILIZERS = ("zennit", "shift")
ZENNIT_DEFAULT_EPSILON = 1e-6
TUTORIAL_FLOOR = 1e-9

Epsilon = Union[None, float, torch.Tensor]


def check_heuristic(heuristic: str) -> str:
    """Return ``heuristic`` if it is one of :data:`HEURISTICS`, else raise a ValueError naming it."""
    return choice("heuristic", heuristic, HEURISTICS)


def check_stabilizer(stabilizer: str) -> str:
    """Return ``stabilizer`` if it is one of :data:`STABILIZERS`, else raise a ValueError naming it."""
    return choice("stabilizer", stabilizer, STABILIZERS)


def stabilize(z: torch.Tensor, stabilizer: str) -> torch.Tensor:
    """The thesis code's ``lrp.zennit.core.stabilize`` (``lrp-pf-auc`` 0.1.6, ε = 1e-6).

    ``"zennit"``: ``z + ((z == 0) + sign(z)) · 1e-6``, the code from 2022-03-21 on (commit
    ``2ef3a94``). ``"shift"``: ``z + 1e-6``, its form before that date: unsigned, so that for
    ``-1e-6 < z < 0`` the result changes sign.
    """
    if check_stabilizer(stabilizer) == "shift":
        return z + ZENNIT_DEFAULT_EPSILON
    return z + ((z == 0).to(z) + z.sign()) * ZENNIT_DEFAULT_EPSILON


def per_sample(value: Union[float, torch.Tensor], like: torch.Tensor) -> Union[float, torch.Tensor]:
    """A float as is; a 1-D per-sample tensor reshaped to broadcast over ``like``'s non-batch dims."""
    if isinstance(value, torch.Tensor):
        return value.to(like).view(-1, *([1] * (like.dim() - 1)))
    return value


def denominator(z: torch.Tensor, epsilon: Epsilon, heuristic: str, inplace: bool = False) -> torch.Tensor:
    """The stabilized denominator of a rule.

    Parameters
    ----------
    z : torch.Tensor
        The (rule-modified) pre-activations, ``[B, ...]``.
    epsilon : None, float or torch.Tensor
        The rule's ε (a float or a 1-D tensor of length B), or None for rules without one
        (LRP-0, LRP-γ, zᴮ and pooling outside an ε block).
    heuristic : str
        ``"vanilla"``, ``"zennit"`` or ``"tutorial"``.
    inplace : bool
        Overwrite ``z`` (a temporary of the caller's) instead of allocating, where shapes allow.
    """
    def add(t, other):
        return t.add_(other) if inplace and t.shape == torch.broadcast_shapes(t.shape, _shape(other)) else t + other

    if heuristic == "vanilla":
        return z if epsilon is None else add(z, per_sample(epsilon, z))
    if heuristic == "zennit":
        eps = ZENNIT_DEFAULT_EPSILON if epsilon is None else per_sample(epsilon, z)
        return add(z, ((z == 0).to(z) + z.sign()) * eps)
    if heuristic == "tutorial":
        if epsilon is None:
            return add(z, TUTORIAL_FLOOR)
        rms = z.pow(2).mean(dim=tuple(range(1, z.dim())), keepdim=True).sqrt()
        return add(add(z, TUTORIAL_FLOOR), per_sample(epsilon, z) * rms)
    raise ValueError(f"unknown heuristic {heuristic!r}")


def _shape(value) -> torch.Size:
    return value.shape if isinstance(value, torch.Tensor) else torch.Size()


def divide(numerator: torch.Tensor, denominator: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``numerator / denominator`` with the quotient taken as 0 where the denominator is exactly 0.

    Division by zero gives ±inf or NaN (0/0), which are set to 0 in place: one pass over the
    quotient instead of a mask. (A finite quotient beyond the floating-point range would also
    read 0; it has no meaningful value either.) With ``inplace=True`` the quotient overwrites
    ``numerator`` (a temporary of the caller's) when the shapes allow: large fresh buffers cost
    as much as a pass over them on a CPU.
    """
    if inplace and numerator.shape == torch.broadcast_shapes(numerator.shape, denominator.shape):
        quotient = numerator.div_(denominator)
    else:
        quotient = numerator / denominator
    return quotient.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
