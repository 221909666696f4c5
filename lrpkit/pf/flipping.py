"""The Pixel-Flipping run: :func:`pixel_flipping`, its result, and :func:`count_images`.

One call checks the options (:mod:`lrpkit.pf.options`), numbers the rows' distinct images and takes
their orders (:mod:`lrpkit.pf.rows`), plans the distinct perturbed images (:mod:`lrpkit.pf.plan`),
builds them with the plan's fill (:mod:`lrpkit.pf.fills`), scores them (:mod:`lrpkit.pf.scoring`)
and reduces every row's curve to its AUC and AOPC (:mod:`lrpkit.pf.curves`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import _checks, imagenet, inpainting
from .curves import aopc, auc
from .fills import _fill
from .options import PixelFlippingOptions, _check_data, _check_options
from .plan import _plan
from .rows import _rows
from .scoring import _score

__all__ = ["pixel_flipping", "PixelFlippingResult", "count_images"]


@dataclass
class PixelFlippingResult:
    """Scores of a Pixel-Flipping run and what they were computed from.

    Attributes
    ----------
    scores : torch.Tensor
        ``[B, S]`` float64: the target's score after every step; column 0 is the unperturbed input,
        the last column the gray image.
    flips_per_step : list of int
        Patches newly perturbed in every step, e.g. ``[0, 1, 3, ..., 55, 784]``; the gray step
        counts every patch, as in the thesis.
    fraction_flipped : list of float
        Fraction of the patches perturbed after every step (0 for step 0, 1 for the gray step).
    auc : torch.Tensor
        ``[B]`` float64: area under every row of ``scores`` by the trapezoid rule (x as ``auc_x``).
        The thesis reports the AUC of the batch-mean curve, which is ``auc.mean()``.
    aopc : torch.Tensor
        ``[B]`` float64: ``mean_k (scores[:, 0] - scores[:, k])`` over all steps (Samek et al.).
    order : torch.Tensor
        ``[B, n]`` int64: patch indices (row-major on the patch grid) in the order they are flipped.
    patch_scores : torch.Tensor
        ``[B, mh, mw]``: the relevance of every patch the order was taken from.
    targets : torch.Tensor
        ``[B]`` int64: the class whose score was recorded.
    images : dict
        ``{step: tensor [B, C, H, W]}``, normalized like ``x``, for the steps in ``keep_steps``.
    masks : torch.Tensor or None
        ``[B, S, H, W]`` bool: the pixels perturbed at every step, if ``keep_masks``.
    n_forward : int
        Number of distinct images the model scored (after sharing).
    n_inpainted : int
        Number of distinct images inpainted (Telea calls; in the thesis code's chained inpainting,
        the steps of every chain) or imputed (``mode="road"``: one sparse solve each), 0 in the
        other modes.
    settings : PixelFlippingOptions
        The options the run used, checked and resolved.
    """

    scores: torch.Tensor
    flips_per_step: List[int]
    fraction_flipped: List[float]
    auc: torch.Tensor
    aopc: torch.Tensor
    order: torch.Tensor
    patch_scores: torch.Tensor
    targets: torch.Tensor
    images: Dict[int, torch.Tensor] = field(default_factory=dict)
    masks: Optional[torch.Tensor] = None
    n_forward: int = 0
    n_inpainted: int = 0
    settings: Optional["PixelFlippingOptions"] = None


def pixel_flipping(model: torch.nn.Module, x: torch.Tensor, relevance: torch.Tensor,
                   target: Union[int, Sequence[int], torch.Tensor, None], *, patch_size: int = 8,
                   order: Union[str, Sequence[str]] = "morf", mode: str = "inpainting",
                   schedule: Union[str, Sequence[int]] = "thesis", score: str = "logit", seed: int = 0,
                   n_steps: Optional[int] = None, strict: bool = False, radius: float = 3.0, noise: float = 0.01,
                   gray_value: Union[float, Sequence[float]] = 0.5, mean: Sequence[float] = imagenet.MEAN,
                   std: Sequence[float] = imagenet.STD, auc_x: str = "step",
                   thesis_compat: Union[bool, Iterable[str]] = False, keep_steps: Iterable[int] = (),
                   keep_masks: bool = False, batch_size: Optional[int] = None, workers: Optional[int] = None,
                   device: Union[str, torch.device, None] = None,
                   progress: Optional[bool] = None) -> PixelFlippingResult:
    """Pixel-Flipping / region perturbation of a batch of heatmaps, and the AUC of every curve.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier in eval mode taking normalized input ``[N, C, H, W]`` and returning ``[N, classes]``.
    x : torch.Tensor
        ``[B, C, H, W]`` normalized inputs. Rows may repeat an image (e.g. one image with the B
        heatmaps of a hyperparameter grid): work on an image is then done once.
    relevance : torch.Tensor
        ``[B, C, H, W]`` like ``x``, or one map per row ``[B, H, W]`` / ``[B, 1, H, W]``.
    target : int, sequence of int, tensor or None
        Class whose score is recorded, for all rows or per row; None takes the class the model
        predicts for the unperturbed input.

    Every other argument is keyword-only; together they are the run's
    :class:`PixelFlippingOptions`, checked before any work (and returned as ``result.settings``).

    patch_size : int
        Side ``p`` of the square patches. If ``p`` does not divide the image, the last row and
        column of patches are smaller (or, with ``strict=True``, a ValueError).
    order : str or sequence of str
        ``"morf"``, ``"lrf"`` or ``"random"`` (:func:`flip_order`) for every row, or one of them per
        row (several orders in one call share every perturbed image they have in common).
    mode : str
        How flipped regions are perturbed: ``"inpainting"`` (Telea on the un-normalized image,
        rounded to uint8; only masked pixels change), ``"random"`` (uniform noise in the valid pixel
        range [0, 1], one noise image per distinct image and seed), ``"gray"`` (``gray_value``) or
        ``"road"`` (ROAD's noisy linear imputation, Rong et al. 2022: each flipped pixel the
        weighted mean of its eight neighbours, one sparse solve per mask from the original image,
        plus Gaussian noise; :mod:`lrpkit.road` wraps it with ROAD's percentages).
    schedule : str or sequence of int
        Cumulative patches perturbed after each step (:func:`flip_schedule`); a final step that
        turns the whole image gray is always appended.
    score : str
        ``"logit"`` (the thesis) or ``"softmax"`` probability of the target.
    seed : int
        Seed of the random order and the random mode.
    n_steps : int, optional
        Steps of the ``"log"`` and ``"linear"`` schedules.
    strict : bool
        Refuse image sizes that ``patch_size`` does not divide.
    radius : float
        Telea inpainting radius (the thesis uses 3).
    noise : float
        ``mode="road"``: standard deviation of the Gaussian noise added to the imputed pixels, in
        the units of the normalized input ``x`` (ROAD and Quantus use 0.01); one noise image per
        distinct image, drawn from ``seed``. 0 imputes without noise.
    gray_value : float or sequence of float
        Gray in pixel units [0, 1] (per channel or one for all), for the gray step and mode.
    mean, std : sequence of float
        Normalization of ``x`` (ImageNet's by default, :data:`lrpkit.imagenet.MEAN`), used to get
        back to pixels.
    auc_x : str
        x of the AUC: ``"step"`` (index, the thesis) or ``"fraction"`` of patches flipped.
    thesis_compat : bool or collection of str
        True reproduces the thesis code (``lrp-pf-auc`` 0.1.6): every feature of
        :data:`THESIS_COMPAT`. A collection of names switches on only those.
    keep_steps : iterable of int
        Steps whose perturbed images are returned in ``result.images``.
    keep_masks : bool
        Return the perturbed-pixel masks of every step in ``result.masks``.
    batch_size : int, optional
        Images per forward pass (bounds memory). Default on a CPU: 8 at 224 px, more for smaller
        images, at most 32 (:func:`lrpkit.pf.options.cpu_batch_size`): in the channels-last layout
        the CPU's forward passes use, VGG-16 runs 1.2x (224 px) to 1.4x (112 px) faster per image
        than in the standard layout and batches of 2 (``bench/forward_layout.py``). 64 on an
        accelerator.
    workers : int, optional
        Inpainting (or imputation) worker threads; 0 works in the calling thread. Default: one per eight cores on a
        CPU model, all cores but one on an accelerator.
    device : str or torch.device, optional
        Where the model runs; default the device of its parameters.
    progress : bool, optional
        Show a progress bar (default: on a terminal only).

    Returns
    -------
    PixelFlippingResult
    """
    _checks.check_eval(model)
    _check_data(x, relevance)
    options = _check_options(PixelFlippingOptions(
        patch_size=patch_size, order=order, mode=mode, schedule=schedule, score=score, seed=seed, n_steps=n_steps,
        strict=strict, radius=radius, noise=noise, gray_value=gray_value, mean=mean, std=std, auc_x=auc_x,
        thesis_compat=thesis_compat, keep_steps=keep_steps, keep_masks=keep_masks, batch_size=batch_size,
        workers=workers, device=device, progress=progress), x, model)
    targets = _checks.targets(target, x.shape[0])
    rows = _rows(x, relevance, options)
    plan = _plan(rows.image_ids, rows.rank_grid, rows.counts, options.mode, options.features)
    fill = _fill(rows.xc, rows.rank_grid, plan, options)
    keep = {row[s] for row in plan.row_keys for s in options.keep_steps}
    values, targets, kept = _score(plan, fill, model, options, targets, x.dtype, keep)

    counts, n_patches = rows.counts, rows.n_patches
    scores = torch.tensor([[values[key, int(targets[b])] for key in row] for b, row in enumerate(plan.row_keys)],
                          dtype=torch.float64)
    flips_per_step = [0] + [b - a for a, b in zip([0] + counts, counts)] + [n_patches]
    fraction_flipped = [0.0] + [c / n_patches for c in counts] + [1.0]
    masks = None
    if options.keep_masks:
        masks = _step_masks(rows.rank_grid, counts, n_patches, options.patch_size, x.shape[2:])
    images = {s: torch.stack([kept[row[s]] for row in plan.row_keys]).to(x.dtype) for s in options.keep_steps}
    return PixelFlippingResult(
        scores=scores, flips_per_step=flips_per_step, fraction_flipped=fraction_flipped,
        auc=auc(scores, options.auc_x, fraction_flipped), aopc=aopc(scores), order=rows.order,
        patch_scores=rows.patch_scores, targets=targets, images=images, masks=masks, n_forward=len(plan.keys),
        n_inpainted=plan.n_inpainted, settings=options)


def _step_masks(rank_grid: np.ndarray, counts: List[int], n_patches: int, patch_size: int,
                size: Sequence[int]) -> torch.Tensor:
    """``[B, S, H, W]`` bool: the pixels perturbed at every step, from step 0 (none) to gray (all)."""
    height, width = size
    all_counts = torch.tensor([0] + counts + [n_patches])
    rank_pixels = torch.from_numpy(inpainting.patch_mask_to_pixels(rank_grid, patch_size, height, width))
    return rank_pixels[:, None] < all_counts.view(1, -1, 1, 1)


def count_images(x: torch.Tensor, relevance: torch.Tensor, *, patch_size: int = 8,
                 order: Union[str, Sequence[str]] = "morf", mode: str = "inpainting",
                 schedule: Union[str, Sequence[int]] = "thesis", seed: int = 0, n_steps: Optional[int] = None,
                 strict: bool = False, mean: Sequence[float] = imagenet.MEAN, std: Sequence[float] = imagenet.STD,
                 thesis_compat: Union[bool, Iterable[str]] = False) -> Tuple[int, int]:
    """How many distinct images :func:`pixel_flipping` would score and inpaint, without a model.

    Which perturbed images a run needs, and which rows share them, depends only on the images,
    the heatmaps and the options (:func:`lrpkit.pf.plan._plan`), so it can be counted before any
    forward pass. The arguments mean what they mean for :func:`pixel_flipping`.

    Returns
    -------
    (int, int)
        ``(n_forward, n_inpainted)``, as :attr:`PixelFlippingResult.n_forward` and ``n_inpainted``.
    """
    _check_data(x, relevance)
    options = _check_options(PixelFlippingOptions(
        patch_size=patch_size, order=order, mode=mode, schedule=schedule, seed=seed, n_steps=n_steps, strict=strict,
        mean=mean, std=std, thesis_compat=thesis_compat), x)
    rows = _rows(x, relevance, options)
    plan = _plan(rows.image_ids, rows.rank_grid, rows.counts, options.mode, options.features)
    return len(plan.keys), plan.n_inpainted
