"""Localisation metrics: does a heatmap put its relevance on the object a mask marks?

Three scores of a heatmap against a ground-truth mask, batched over heatmaps and computed in torch
on the heatmaps' device, each ``float64 [N]``:

:func:`relevance_mass_accuracy`
    The share of the heatmap's relevance that lies inside the mask,
    ``R_within / R_total = Σ_{p ∈ mask} R_p / Σ_p R_p`` (Arras, Osman & Samek 2022, §4.2).
:func:`relevance_rank_accuracy`
    With ``K = |mask|``: the fraction of the ``K`` pixels of highest relevance that lie inside the
    mask (Arras, Osman & Samek 2022, §4.2).
:func:`pointing_game`
    1 if the pixel of maximal relevance lies inside the mask, else 0 (Zhang et al. 2018), in its
    plain form: no tolerance around the mask and no weighting by the mask's size.

Every metric reads one pooled heatmap ``R`` ``[N, H, W]``, made from the relevance as CLEVR-XAI
does before any of its metrics (:func:`pool`): the relevance is summed over the colour channels
(as lrpkit draws heatmaps, :mod:`lrpkit.plotting`), then one of :data:`POOLINGS` is applied,
named as in the CLEVR-XAI code:

``"sum,pos"`` (default)
    the positive part of the channel sum, ``max(Σ_c R_c, 0)``. What is summed for the mass
    accuracy is positive relevance only, so it lies in ``[0, 1]``; negative relevance (which LRP's
    ε and γ rules produce) neither counts against the object nor inflates the total.
``"sum"``
    the raw channel sum, with its sign: what Quantus 0.6 computes with its defaults
    (``abs=False``). The mass accuracy is then unbounded (``R_total`` may be near 0 or negative).
``"sum,abs"``
    the absolute value of the channel sum (Quantus 0.6 with ``abs=True``): negative relevance
    counts as evidence as well.

A 3-D relevance ``[N, H, W]`` is taken as summed over the channels already, as
``MetricInputs.heatmaps`` of :mod:`lrpkit.experiment.metrics` is; a metric of the experiment calls
``relevance_mass_accuracy(inputs.heatmaps, mask)`` with a mask ``[H, W]`` of the image.

Where the definitions are silent, lrpkit's conventions are:

- ties at the ``K``-th place of the rank accuracy share the remaining places in proportion:
  ``(n_above_in + (K - n_above) · n_tied_in / n_tied) / K``, where ``n_above`` pixels have a
  relevance above the ``K``-th highest value and ``n_tied`` equal it (``_in``: of those, the pixels
  inside the mask). This is the mean over all ways of breaking the ties, so the score does not
  depend on where the tied pixels lie (a row-major stable sort would favour masks at the top of
  the image). Without a tie at the ``K``-th place (continuous heatmaps) it is the plain fraction;
- ties at the maximum in the pointing game are a hit if any of the maximal pixels lies inside the
  mask (as Quantus 0.6);
- a pooled heatmap with nothing to localise scores NaN, with a :class:`RuntimeWarning` naming the
  heatmaps, in every metric: one that is all zero (with ``"sum,pos"``: one without positive
  relevance), and for the mass accuracy any whose ``R_total`` is 0. An experiment's grid then keeps
  the image and records the degenerate setting (pandas skips NaN in means), where an error would
  lose all the image's heatmaps for one of them. Quantus gives NaN for the mass accuracy there too,
  but a score for the other two (an all-zero heatmap is a hit of its pointing game);
- the mask is boolean, or 0/1 of any dtype; an empty mask is an error (Quantus 0.6 gives NaN,
  and True in its pointing game); a full mask is allowed (every score is 1, or NaN as above).

Quantus 0.6 (``quantus.RelevanceMassAccuracy``, ``RelevanceRankAccuracy``, ``PointingGame``) computes
the same numbers, to rounding, on the pooled heatmap passed as ``a_batch`` ``[N, 1, H, W]``
(``tests/test_localisation.py``). Its default ``normalise=True`` divides by the largest ``|R|`` of
the batch, which none of the three scores sees. Its ``PointingGame(weighted=True)`` is not offered.

Example
-------
>>> import torch
>>> from lrpkit import localisation
>>> R = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
>>> R[0, :, :2, :2] = torch.tensor([[4.0, 3.0], [2.0, 1.0]])   # heatmap 0: all on the object
>>> R[1, 0, 3, 3], R[1, 0, 3, 2], R[1, 0, 2, 3], R[1, 0, 0, 1] = 3.0, 2.0, 2.0, 1.0  # 1: mostly off it
>>> mask = torch.zeros(4, 4, dtype=torch.bool)
>>> mask[:2, :2] = True                                          # one mask for both heatmaps
>>> localisation.relevance_mass_accuracy(R, mask)
tensor([1.0000, 0.1250], dtype=torch.float64)
>>> localisation.relevance_rank_accuracy(R, mask)
tensor([1.0000, 0.2500], dtype=torch.float64)
>>> localisation.pointing_game(R, mask)
tensor([1., 0.], dtype=torch.float64)

References
----------
L. Arras, A. Osman, W. Samek, *CLEVR-XAI: A benchmark dataset for the ground truth evaluation of
neural network explanations*, Information Fusion 81:14-40 (2022).
J. Zhang, S. A. Bargal, Z. Lin, J. Brandt, X. Shen, S. Sclaroff, *Top-down neural attention by
excitation backprop*, International Journal of Computer Vision 126:1084-1102 (2018).
A. Hedström et al., *Quantus: An explainable AI toolkit for responsible evaluation of neural network
explanations and beyond*, JMLR 24(34):1-11 (2023).
"""
from __future__ import annotations

import warnings
from typing import Any, Tuple

import numpy as np
import torch

from ._checks import check_finite, choice

__all__ = ["POOLINGS", "pool", "relevance_mass_accuracy", "relevance_rank_accuracy", "pointing_game"]

#: How the relevance becomes one value per pixel (:func:`pool`), named as in the CLEVR-XAI code.
POOLINGS = ("sum,pos", "sum", "sum,abs")


def pool(relevance: torch.Tensor, *, pooling: str = "sum,pos") -> torch.Tensor:
    """The pooled heatmap that the localisation metrics read: ``float64 [N, H, W]``.

    Parameters
    ----------
    relevance : torch.Tensor
        ``[N, C, H, W]`` (summed over the channels) or ``[N, H, W]`` (summed already), floating
        point, without NaN or Inf.
    pooling : str
        One of :data:`POOLINGS`: the positive part (``"sum,pos"``), the raw value (``"sum"``) or
        the absolute value (``"sum,abs"``) of the channel sum.

    Raises
    ------
    TypeError
        ``relevance`` is not a floating-point tensor.
    ValueError
        Another shape, no heatmap, NaN or Inf, or an unknown ``pooling``.
    """
    choice("pooling", pooling, POOLINGS)
    if not isinstance(relevance, torch.Tensor):
        raise TypeError(f"relevance must be a torch.Tensor, got {type(relevance).__name__}")
    if relevance.dim() not in (3, 4):
        raise ValueError(f"relevance must be [N, H, W] or [N, C, H, W], got shape {tuple(relevance.shape)}")
    if relevance.shape[0] == 0:
        raise ValueError("relevance holds no heatmap (N = 0)")
    if not relevance.is_floating_point():
        raise TypeError(f"relevance must be a floating-point tensor, got {relevance.dtype}")
    check_finite("relevance", relevance)
    heat = relevance.detach().double()
    if heat.dim() == 4:
        heat = heat.sum(dim=1)
    if pooling == "sum,pos":
        heat = heat.clamp(min=0.0)
    elif pooling == "sum,abs":
        heat = heat.abs()
    return heat


def relevance_mass_accuracy(relevance: torch.Tensor, mask: Any, *, pooling: str = "sum,pos") -> torch.Tensor:
    """The share of each heatmap's relevance inside the mask, ``Σ_{p ∈ mask} R_p / Σ_p R_p``.

    ``R`` is the pooled heatmap (:func:`pool`): by default the positive part of the relevance
    summed over the colour channels, so the score lies in ``[0, 1]``.

    Parameters
    ----------
    relevance : torch.Tensor
        ``[N, C, H, W]`` or ``[N, H, W]`` (summed over the channels already), floating point.
    mask : torch.Tensor or array
        ``[N, H, W]`` (one per heatmap) or ``[H, W]`` (the same for all), boolean or 0/1, each with
        at least one pixel inside; moved to the relevance's device.
    pooling : str
        One of :data:`POOLINGS`.

    Returns
    -------
    torch.Tensor
        ``float64 [N]`` on the relevance's device; NaN (with a RuntimeWarning) where ``Σ_p R_p`` is 0.

    Raises
    ------
    TypeError, ValueError
        As :func:`pool`; a mask of the wrong shape, an empty mask, or one that is not boolean or 0/1.
    """
    heat, inside = _prepare(relevance, mask, pooling)
    total = heat.sum(1)
    scores = (heat * inside).sum(1) / total
    return _nan_where(total == 0, scores, "relevance mass accuracy", pooling, "summing to 0")


def relevance_rank_accuracy(relevance: torch.Tensor, mask: Any, *, pooling: str = "sum,pos") -> torch.Tensor:
    """The fraction of each heatmap's ``K = |mask|`` most relevant pixels that lie inside the mask.

    Ties at the ``K``-th place share the remaining places in proportion (the mean over all ways of
    breaking the ties; see the module's conventions). Parameters as
    :func:`relevance_mass_accuracy`.

    Returns
    -------
    torch.Tensor
        ``float64 [N]`` in ``[0, 1]`` on the relevance's device; NaN (with a RuntimeWarning) for
        an all-zero pooled heatmap.
    """
    heat, inside = _prepare(relevance, mask, pooling)
    k = inside.sum(1)                                                       # [N] int64, >= 1
    ordered = heat.sort(dim=1, descending=True).values
    kth = ordered.gather(1, (k - 1).unsqueeze(1))                          # [N, 1]: the K-th highest value
    above, tied = heat > kth, heat == kth
    n_above, n_tied = above.sum(1), tied.sum(1)
    n_above_in, n_tied_in = (above & inside).sum(1), (tied & inside).sum(1)
    hits = n_above_in.double() + (k - n_above).double() * n_tied_in.double() / n_tied.double()
    scores = hits / k.double()
    return _nan_where((heat == 0).all(1), scores, "relevance rank accuracy", pooling, "all zero")


def pointing_game(relevance: torch.Tensor, mask: Any, *, pooling: str = "sum,pos") -> torch.Tensor:
    """1 where the pixel of maximal relevance lies inside the mask, else 0.

    The plain pointing game: no tolerance around the mask, no weighting by its size (Quantus 0.6's
    default, ``weighted=False``). Where several pixels share the maximum, it is a hit if any of them
    lies inside the mask (as Quantus). Parameters as :func:`relevance_mass_accuracy`.

    Returns
    -------
    torch.Tensor
        ``float64 [N]`` of 0 and 1 on the relevance's device; NaN (with a RuntimeWarning) for an
        all-zero pooled heatmap.
    """
    heat, inside = _prepare(relevance, mask, pooling)
    peak = heat == heat.amax(1, keepdim=True)
    scores = (peak & inside).any(1).double()
    return _nan_where((heat == 0).all(1), scores, "pointing game", pooling, "all zero")


def _prepare(relevance: torch.Tensor, mask: Any, pooling: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """The pooled heatmaps and the masks, both flattened to ``[N, H*W]`` (float64 and bool)."""
    heat = pool(relevance, pooling=pooling)
    inside = _check_mask(mask, heat.shape).to(heat.device)
    n = heat.shape[0]
    return heat.reshape(n, -1), inside.expand(heat.shape).reshape(n, -1)


def _check_mask(mask: Any, shape: torch.Size) -> torch.Tensor:
    """``mask`` as a bool tensor ``[H, W]`` or ``[N, H, W]`` that fits heatmaps of ``shape`` ``[N, H, W]``."""
    try:
        mask = torch.as_tensor(np.ascontiguousarray(mask) if isinstance(mask, np.ndarray) else mask)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"mask must be a tensor or array of booleans, got {type(mask).__name__}") from None
    n, h, w = shape
    if tuple(mask.shape) not in ((h, w), (n, h, w)):
        raise ValueError(f"mask must be [H, W] = [{h}, {w}] or [N, H, W] = [{n}, {h}, {w}] to fit the "
                         f"relevance, got shape {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if mask.is_complex() or not bool(((mask == 0) | (mask == 1)).all()):
            odd = mask[(mask != 0) & (mask != 1)].flatten()
            shown = f" such as {odd[0].item():.6g}" if odd.numel() else ""
            raise ValueError(f"mask must be boolean or hold only 0 and 1, got {mask.dtype} values{shown}; "
                             "threshold it first (mask > 0.5)")
        mask = mask != 0
    empty = ~mask.flatten(-2).any(-1)
    if bool(empty.any()):
        which = "mask is empty" if mask.dim() == 2 else f"mask of heatmap {int(empty.nonzero()[0])} is empty"
        raise ValueError(f"{which} (no pixel inside); a localisation metric needs at least one pixel to localise")
    return mask


def _nan_where(degenerate: torch.Tensor, scores: torch.Tensor, metric: str, pooling: str, why: str) -> torch.Tensor:
    """``scores`` with NaN where ``degenerate``, and a RuntimeWarning that names those heatmaps."""
    if bool(degenerate.any()):
        which = degenerate.nonzero().flatten().tolist()
        shown = ", ".join(str(i) for i in which[:10]) + (", ..." if len(which) > 10 else "")
        warnings.warn(f"{metric} is NaN for {len(which)} of {len(scores)} heatmaps (heatmap {shown}): their pooled "
                      f"relevance ({pooling!r}) is {why}", RuntimeWarning, stacklevel=3)
        scores = scores.masked_fill(degenerate, float("nan"))
    return scores
