"""ROAD — RemOve And Debias (Rong et al. 2022) — and the symmetric relevance gain.

Pixel-Flipping fills the removed patches with something the network never saw (Telea's smooth
strokes, gray, noise), so a falling score may say as much about the fill as about the heatmap, and
its two orders can disagree about which heatmap is better. ROAD fills each removed pixel with the
weighted mean of its neighbours (:mod:`lrpkit.imputation`) plus a little noise, a fill from which
the shape of the removed region is hard to read back, and reports the score after removing a
percentage of the pixels, most relevant first (MoRF) or least relevant first (LeRF, ``"lrf"``
here as in :mod:`lrpkit.pf`).

:func:`road` is :func:`lrpkit.pf.pixel_flipping` with ``mode="road"`` and the schedule given as
percentages of the patches: the same patch grid, orders, scores, batching over heatmaps and images,
and sharing of identical perturbed images (an image that two curves share is imputed and scored
once). :func:`symmetric_relevance_gain` runs both orders in one call and returns LeRF's AUC minus
MoRF's (Blücher et al. 2024): large when the heatmap's most relevant pixels matter and its least
relevant ones do not, whatever the fill.

References
----------
Y. Rong, T. Leemann, V. Borisov, G. Kasneci, E. Kasneci, *A Consistent and Efficient Evaluation
Strategy for Attribution Methods*, ICML 2022.
S. Blücher, J. Vielhaben, N. Strodthoff, *Decoupling Pixel Flipping and Occlusion Strategy for
Consistent XAI Benchmarks*, TMLR 2024.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import List, Sequence

import torch

from . import pf
from .pf.options import _check_data

__all__ = ["PERCENTAGES", "road", "percentage_schedule", "SymmetricGain", "symmetric_relevance_gain", "srg"]

#: ROAD's percentages of removed pixels (Rong et al. 2022: 10 % to 90 % in steps of 10).
PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def percentage_schedule(n_patches: int, percentages: Sequence[float] = PERCENTAGES) -> List[int]:
    """Cumulative patch counts for removing ``percentages`` of ``n_patches`` patches (rounded).

    Raises
    ------
    ValueError
        A percentage outside (0, 100), percentages not strictly increasing, or two that round to
        the same number of patches (the patches are too large for them).
    """
    try:
        given = list(percentages)
    except TypeError:
        raise TypeError(f"percentages must be a sequence of numbers in (0, 100), got {percentages!r}") from None
    if not given:
        raise ValueError("percentages is empty: give at least one percentage in (0, 100)")
    for p in given:
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p < 100:
            raise ValueError(f"percentages must lie in (0, 100) (0 % is the unperturbed image, 100 % the gray one); "
                             f"got {p!r}")
    if any(b <= a for a, b in zip(given, given[1:])):
        raise ValueError(f"percentages must be strictly increasing, got {given}")
    counts = [min(max(1, round(p / 100 * n_patches)), n_patches) for p in given]
    if any(b <= a for a, b in zip(counts, counts[1:])):
        raise ValueError(f"percentages {given} round to the patch counts {counts} of {n_patches} patches: two steps "
                         f"would remove the same patches; use a smaller patch_size or fewer percentages")
    return counts


def road(model: torch.nn.Module, x: torch.Tensor, relevance: torch.Tensor, target, *, order="morf",
         percentages: Sequence[float] = PERCENTAGES, patch_size: int = 8, noise: float = 0.01,
         score: str = "logit", seed: int = 0, auc_x: str = "fraction", **options) -> pf.PixelFlippingResult:
    """ROAD curves of a batch of heatmaps: the target's score after removing each percentage of the
    patches, imputed.

    Parameters
    ----------
    model, x, relevance, target
        As for :func:`lrpkit.pf.pixel_flipping`.
    order : str or sequence of str
        ``"morf"`` (most relevant first), ``"lrf"`` (least relevant first: ROAD's LeRF) or
        ``"random"``, for all rows or one per row.
    percentages : sequence of float
        Percentages of the patches removed after each step, strictly increasing in (0, 100)
        (default ROAD's 10, 20, …, 90); the curve starts at the unperturbed image and ends with a
        gray image (every patch removed: nothing is left to impute from).
    patch_size : int
        Side of the removed squares; 1 removes single pixels, as ROAD does.
    noise : float
        Standard deviation of the Gaussian noise added to the imputed pixels, in the units of the
        normalized input (ROAD's 0.01); 0 for none.
    score : str
        ``"logit"`` or ``"softmax"`` (the class probability).
    auc_x : str
        x of the AUC: ``"fraction"`` of the patches removed (default) or ``"step"``.
    **options
        Further options of :func:`lrpkit.pf.pixel_flipping` (``batch_size``, ``workers``,
        ``device``, ``keep_steps``, ``progress``, ...), except ``mode`` and ``schedule``.

    Returns
    -------
    lrpkit.pf.PixelFlippingResult
        ``n_inpainted`` counts the imputations (sparse solves).
    """
    for name in ("mode", "schedule", "n_steps"):
        if name in options:
            raise TypeError(f"road() sets {name} itself; give percentages instead")
    _check_data(x, relevance)                                # the images and heatmaps first, then the steps
    height, width = x.shape[-2:]
    if isinstance(patch_size, int) and 0 < patch_size <= min(height, width):
        n_patches = -(-height // patch_size) * -(-width // patch_size)
        schedule = percentage_schedule(n_patches, percentages)
    else:
        schedule = "thesis"        # pixel_flipping names what is wrong with x or patch_size
        percentage_schedule(100, percentages)
    return pf.pixel_flipping(model, x, relevance, target, order=order, mode="road", schedule=schedule,
                             patch_size=patch_size, noise=noise, score=score, seed=seed, auc_x=auc_x, **options)


@dataclasses.dataclass
class SymmetricGain:
    """Both orders of one run and their difference.

    Attributes
    ----------
    morf, lrf : lrpkit.pf.PixelFlippingResult
        The curves of the two orders (rows as in the input).
    srg : torch.Tensor
        ``[B]`` float64: LeRF's AUC minus MoRF's.
    """

    morf: pf.PixelFlippingResult
    lrf: pf.PixelFlippingResult
    srg: torch.Tensor


def srg(lrf_auc: torch.Tensor, morf_auc: torch.Tensor) -> torch.Tensor:
    """The symmetric relevance gain of AUCs: ``lrf_auc - morf_auc`` (Blücher et al. 2024), float64."""
    return torch.as_tensor(lrf_auc, dtype=torch.float64) - torch.as_tensor(morf_auc, dtype=torch.float64)


def symmetric_relevance_gain(model: torch.nn.Module, x: torch.Tensor, relevance: torch.Tensor, target, *,
                             grader: str = "road", **options) -> SymmetricGain:
    """MoRF and LeRF of every heatmap in one run, and LeRF's AUC minus MoRF's.

    Parameters
    ----------
    grader : str
        ``"road"`` (:func:`road`; ``options`` as there) or ``"pf"``
        (:func:`lrpkit.pf.pixel_flipping`; ``options`` as there, e.g. ``mode``).
    """
    if "order" in options:
        raise TypeError("symmetric_relevance_gain() runs both orders itself; do not give order")
    grade = {"road": road, "pf": pf.pixel_flipping}
    if grader not in grade:
        raise ValueError(f"unknown grader {grader!r}; choose 'road' or 'pf'")
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        return grade[grader](model, x, relevance, target, **options)        # raises with pf's message
    batch = x.shape[0]
    both = grade[grader](model, torch.cat([x, x]), torch.cat([relevance, relevance]),
                         _twice(target, batch), order=["morf"] * batch + ["lrf"] * batch, **options)
    morf, lrf = _split(both, batch)
    return SymmetricGain(morf=morf, lrf=lrf, srg=srg(lrf.auc, morf.auc))


def _twice(target, batch: int):
    if target is None or isinstance(target, numbers.Integral):
        return target
    values = torch.as_tensor(target).reshape(-1)
    return torch.cat([values, values]) if values.numel() == batch else target


def _split(both: pf.PixelFlippingResult, batch: int):
    halves = []
    for part in (slice(0, batch), slice(batch, 2 * batch)):
        halves.append(dataclasses.replace(
            both, scores=both.scores[part], auc=both.auc[part], aopc=both.aopc[part], order=both.order[part],
            patch_scores=both.patch_scores[part], targets=both.targets[part],
            images={k: v[part] for k, v in both.images.items()},
            masks=None if both.masks is None else both.masks[part]))
    return halves
