"""The area under a Pixel-Flipping curve (AUC, thesis §2.3) and the area over it (AOPC).

Both reduce the curve of the target's score over the steps of :func:`lrpkit.pf.pixel_flipping` to
one number per row, in float64: :func:`auc` by the trapezoid rule, over the step index (the thesis's
choice) or over the fraction of patches flipped (:data:`AUC_X`); :func:`aopc` as the mean drop from
the unperturbed score (Samek et al. 2017).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from .. import _checks

__all__ = ["auc", "aopc", "AUC_X"]

AUC_X = ("step", "fraction")


def auc(scores: torch.Tensor, x: Union[str, Sequence[float]] = "step",
        fraction_flipped: Optional[Sequence[float]] = None) -> torch.Tensor:
    """Area under perturbation curves by the trapezoid rule.

    Parameters
    ----------
    scores : torch.Tensor
        ``[B, S]`` or ``[S]`` scores.
    x : str or sequence of float
        ``"step"`` (x = 0, 1, …, S-1, the thesis's choice), ``"fraction"`` (x = ``fraction_flipped``)
        or explicit x values.
    fraction_flipped : sequence of float, optional
        Needed for ``x="fraction"``.

    Returns
    -------
    torch.Tensor
        ``[B]`` (or a scalar for 1-D input), float64.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64)
    length = scores.shape[-1]
    if isinstance(x, str):
        if x == "step":
            xs = torch.arange(length, dtype=torch.float64)
        elif x == "fraction":
            if fraction_flipped is None:
                raise ValueError("auc: x='fraction' needs fraction_flipped")
            xs = torch.as_tensor(fraction_flipped, dtype=torch.float64)
        else:
            _checks.choice("x of the AUC", x, AUC_X, alternative="a sequence of floats")
    else:
        xs = torch.as_tensor(x, dtype=torch.float64)
    if xs.shape != (length,):
        raise ValueError(f"auc: {xs.numel()} x values for curves of length {length}")
    return torch.trapezoid(scores, xs, dim=-1)


def aopc(scores: torch.Tensor) -> torch.Tensor:
    """Area over the perturbation curve: ``mean_k (scores[..., 0] - scores[..., k])`` (Samek et al. 2017)."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    return (scores[..., :1] - scores).mean(dim=-1)

