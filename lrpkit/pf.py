"""Pixel-Flipping (region perturbation) and the area under its curve.

Pixel-Flipping grades a heatmap by destroying the input in the order the heatmap ranks it and
watching the classifier's score fall (thesis §2.2, §3.3; Samek et al. 2017). Here the relevance map
is cut into ``p × p`` patches, each patch is scored by the sum of its relevance, the patches are
ordered (MoRF, LRF or random), and after step ``k`` of a schedule the first ``c_k`` patches of that
order are perturbed — always starting again from the original image, so regions perturbed earlier
are perturbed anew at every step (thesis §3.3). A last step turns the whole image gray. The curve of
the target's score over the steps is reduced to its area (AUC, trapezoid rule; thesis §2.3) and to
the AOPC of Samek et al.

Because step ``k`` is a function of the original image and the cumulative mask of step ``k`` alone,
all steps — of one heatmap and of many — are independent: they are built from the original,
inpainted in worker threads (:mod:`lrpkit.inpainting`) and scored in batched forward passes
without autograd, while the workers go on inpainting. Identical images are scored once: the
unperturbed image and the gray image are shared by all heatmaps of an image, and so is every step
whose mask two heatmaps share (all of them for the random order, which ignores the heatmap).

Where the thesis is silent, or its code has a defect, lrpkit's conventions are:

- inpainting (Telea) works on the input rounded — not truncated — to ``uint8`` and changes only
  the masked pixels; all other pixels keep their exact input values at every step. Masked pixels
  are blanked first, because OpenCV's Telea reads masked pixels on the image's outer ring;
- a step whose mask covers every patch is the gray image: nothing is left to inpaint from;
- gray is 0.5 in pixel units (the middle of [0, 1]) in every channel, unless ``gray_value`` says
  otherwise;
- ``mode="random"`` fills with uniform noise in [0, 1] pixel units, one noise image per distinct
  image, so a region keeps its noise from step to step;
- the random order is one permutation per distinct image, drawn from ``(seed, image index)``;
- ties between patch scores keep the patches' row-major order (stable sort, on the CPU).

``thesis_compat`` reproduces what the thesis code (PyPI ``lrp-pf-auc`` 0.1.6) computes, defects
included, one switch per difference (:data:`THESIS_COMPAT`), so that its numbers can be regenerated
and the effect of every fix shown separately.

Example
-------
>>> from lrpkit import composites, lrp, pf
>>> R = lrp.relevance(model, x, 483, composites.tutorial())          # doctest: +SKIP
>>> res = pf.pixel_flipping(model, x, R, 483, order="morf")           # doctest: +SKIP
>>> res.scores.shape, res.flips_per_step[:4], res.auc                 # doctest: +SKIP
(torch.Size([1, 30]), [0, 1, 3, 5], tensor([...]))

The 16 heatmaps of a hyperparameter grid for one image: ``pf.pixel_flipping(model,
x.expand(16, -1, -1, -1), R16, 483)`` — the image's shared steps are scored once. Several orders in
one call take one order per row: ``order=["morf"] * 16 + ["lrf"] * 16 + ["random"]`` with the
heatmaps repeated to match; a perturbed image that two rows share (the same image and mask, whatever
the order) is then built and scored once, and the random order, which ignores the heatmap, costs one
heatmap's work per image.

References
----------
W. Samek, A. Binder, G. Montavon, S. Lapuschkin, K.-R. Müller, *Evaluating the visualization of
what a deep neural network has learned*, IEEE TNNLS 28(11):2660-2673 (2017).
S. Bach et al., *On pixel-wise explanations for non-linear classifier decisions by layer-wise
relevance propagation*, PLOS ONE 10(7):e0130140 (2015).
A. Telea, *An image inpainting technique based on the fast marching method*, J. Graphics Tools
9(1):23-34 (2004).
R. Bermudez Schettino, *In-Depth Hyperparameter Selection for Layer-Wise Relevance Propagation*,
master's thesis, TU Berlin (2022), §2.2-2.3, §3.3.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torchvision.transforms.functional import rgb_to_grayscale
from tqdm.auto import tqdm

from . import _checks, imagenet, inpainting

__all__ = [
    "pixel_flipping", "PixelFlippingResult", "PixelFlippingOptions", "count_images", "flip_schedule", "patch_scores", "flip_order",
    "auc", "aopc", "ORDERS", "MODES", "SCHEDULES", "SCORES", "AUC_X", "THESIS_COMPAT",
]

ORDERS = ("morf", "lrf", "random")
MODES = ("inpainting", "random", "gray")
SCHEDULES = ("thesis", "log", "linear")
SCORES = ("logit", "softmax")
AUC_X = ("step", "fraction")

#: What ``thesis_compat`` switches on, one name per way the thesis code differs from lrpkit.
THESIS_COMPAT = {
    "grayscale_scores": "patch scores sum the relevance weighted 0.2989 R + 0.587 G + 0.114 B, "
                        "not the plain sum over channels",
    "truncation": "inpainting chains the steps: each step re-inpaints the previous step's output after "
                  "a float round trip truncated to uint8, drifting untouched pixels down",
    "noop_step": "when the mask covers the whole image, inpainting returns its input unchanged "
                 "(step 28 of 224/8 repeats step 27) instead of the gray image",
    "shared_permutation": "random order: one torch.randperm shared by the whole batch",
    "batch_gray": "gray is (min + max) / 2 of the normalized batch, one value for every channel",
    "random_scalar": "random mode: one uniform value per image and step in [min, max] of the "
                     "normalized batch, written only into the patches new in that step",
}

# --------------------------------------------------------------------------------------------------
# result


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
        the steps of every chain), 0 in the other modes.
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


# --------------------------------------------------------------------------------------------------
# pieces that are useful on their own


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


def flip_schedule(n_patches: int, schedule: Union[str, Sequence[int]] = "thesis",
                  n_steps: Optional[int] = None) -> List[int]:
    """Cumulative number of patches perturbed after each perturbation step.

    The final gray step is not included (:func:`pixel_flipping` appends it).

    Parameters
    ----------
    n_patches : int
        Patches in the image (784 for 224×224 and 8×8 patches).
    schedule : str or sequence of int
        ``"thesis"``: ``k²`` patches after step ``k`` (capped at ``n_patches``) until all are
        flipped, i.e. 1, 3, 5, … new patches per step — 28 steps for 784 patches (thesis Fig. 3.8).
        ``"log"``: ``n_steps`` counts log-spaced from 1 to ``n_patches`` (duplicates dropped).
        ``"linear"``: ``n_steps`` evenly spaced counts ending at ``n_patches``.
        A sequence: the cumulative counts themselves, strictly increasing, each in [1, n_patches].
    n_steps : int, optional
        Steps of the log and linear schedules; by default as many as the thesis schedule has.

    Returns
    -------
    list of int
    """
    thesis_steps = math.isqrt(n_patches - 1) + 1 if n_patches > 0 else 0  # ceil(sqrt(n))
    if isinstance(schedule, str):
        _checks.choice("schedule", schedule, SCHEDULES, alternative="a list of cumulative patch counts")
        if schedule == "thesis":
            return [min(k * k, n_patches) for k in range(1, thesis_steps + 1)]
        steps = thesis_steps if n_steps is None else n_steps
        _checks.integer("n_steps", steps, 1)
        if schedule == "linear":
            counts = np.round(np.linspace(0, n_patches, int(steps) + 1)[1:]).astype(int)
        else:
            counts = np.round(np.geomspace(1, n_patches, int(steps))).astype(int)
        return sorted(set(int(c) for c in counts if c >= 1))
    if n_steps is not None:
        raise ValueError("n_steps applies to the 'log' and 'linear' schedules only")
    try:
        given = list(schedule)  # read once: a generator cannot be iterated twice
        if any(not isinstance(c, numbers.Integral) or isinstance(c, bool) for c in given):
            raise TypeError
        counts = [int(c) for c in given]
    except (TypeError, ValueError):
        raise TypeError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))} or a sequence of ints, "
                        f"got {schedule!r}") from None
    if not counts:
        raise ValueError("schedule: the list of cumulative patch counts is empty")
    if counts[0] < 1 or counts[-1] > n_patches or any(b <= a for a, b in zip(counts, counts[1:])):
        raise ValueError(f"schedule must list strictly increasing cumulative patch counts in [1, {n_patches}], "
                         f"got {counts}")
    return counts


def _pixel_map(relevance: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] or [B, H, W] → [B, C', H, W] with C' = C or 1."""
    return relevance.unsqueeze(1) if relevance.dim() == 3 else relevance


def patch_scores(relevance: torch.Tensor, patch_size: int, grayscale: bool = False) -> torch.Tensor:
    """Sum the relevance over every ``patch_size`` × ``patch_size`` patch.

    Parameters
    ----------
    relevance : torch.Tensor
        ``[B, C, H, W]`` or ``[B, H, W]``.
    patch_size : int
        Side of a patch. Edge patches of a size that ``patch_size`` does not divide are smaller.
    grayscale : bool
        Weight the channels 0.2989, 0.587, 0.114 first and sum in float32 (the thesis code);
        otherwise the plain sum over channels and pixels, in float64 on the CPU, so the result and
        the order taken from it do not depend on the device.

    Returns
    -------
    torch.Tensor
        ``[B, mh, mw]`` with ``mh = ceil(H / patch_size)``, ``mw = ceil(W / patch_size)``.
    """
    rel = _pixel_map(relevance.detach().cpu())
    batch, channels, height, width = rel.shape
    mh, mw = -(-height // patch_size), -(-width // patch_size)
    if grayscale:
        rel = rel.float()
        if channels == 3:  # torchvision's rgb_to_grayscale: 0.2989 R + 0.587 G + 0.114 B
            rel = rgb_to_grayscale(rel)
        elif channels != 1:
            raise ValueError(f"grayscale patch scores need 1 or 3 channels, got {channels}")
    else:
        rel = rel.double()
    pad = (0, mw * patch_size - width, 0, mh * patch_size - height)
    if any(pad):
        rel = torch.nn.functional.pad(rel, pad)
    if grayscale:
        # as the thesis code: unfold into patches, flatten each, sum in float32
        patches = rel.unfold(2, patch_size, patch_size).unfold(3, patch_size, patch_size)
        return patches.reshape(batch, mh * mw, patch_size * patch_size).sum(dim=2).reshape(batch, mh, mw)
    return rel.reshape(batch, channels, mh, patch_size, mw, patch_size).sum(dim=(1, 3, 5))


def flip_order(scores: torch.Tensor, order: str = "morf", seed: int = 0,
               image_ids: Optional[Sequence[int]] = None, shared_permutation: bool = False) -> torch.Tensor:
    """Order in which the patches are flipped.

    Parameters
    ----------
    scores : torch.Tensor
        ``[B, mh, mw]`` patch scores (:func:`patch_scores`).
    order : str
        ``"morf"`` (most relevant first, descending), ``"lrf"`` (ascending) or ``"random"``.
        Ties keep the row-major order of the patches (stable sort on the CPU), so the order does
        not depend on the device.
    seed : int
        Seed of the random order.
    image_ids : sequence of int, optional
        Index of each row's image among the distinct images (rows showing the same image share
        it). The random order of image ``i`` is ``numpy.random.default_rng([seed, 0, i])``'s
        permutation, so it ignores the heatmap. Default: every row its own image.
    shared_permutation : bool
        Random order as the thesis code: one ``torch.randperm`` (seeded with ``seed``) for the batch.

    Returns
    -------
    torch.Tensor
        ``[B, mh * mw]`` int64 patch indices.
    """
    _checks.choice("order", order, ORDERS)
    flat = scores.detach().cpu().reshape(scores.shape[0], -1)
    batch, n = flat.shape
    if order == "random":
        if shared_permutation:
            generator = torch.Generator().manual_seed(int(seed))
            return torch.randperm(n, generator=generator).expand(batch, n).clone()
        ids = range(batch) if image_ids is None else image_ids
        perms = {i: np.random.default_rng([int(seed), 0, int(i)]).permutation(n) for i in set(ids)}
        return torch.from_numpy(np.stack([perms[i] for i in ids])).long()
    return torch.sort(flat, dim=1, descending=(order == "morf"), stable=True).indices


# --------------------------------------------------------------------------------------------------
# the main entry point


def pixel_flipping(model: torch.nn.Module, x: torch.Tensor, relevance: torch.Tensor,
                   target: Union[int, Sequence[int], torch.Tensor, None], *, patch_size: int = 8,
                   order: Union[str, Sequence[str]] = "morf", mode: str = "inpainting",
                   schedule: Union[str, Sequence[int]] = "thesis", score: str = "logit", seed: int = 0,
                   n_steps: Optional[int] = None, strict: bool = False, radius: float = 3.0,
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
        range [0, 1], one noise image per distinct image and seed) or ``"gray"`` (``gray_value``).
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
        Images per forward pass (bounds memory). Default: 8 on a CPU, where, in the channels-last
        layout the CPU's forward passes use, VGG-16 runs 1.3x (224 px) to 1.5x (112 px) faster per
        image than in the standard layout and batches of 2 (``bench/forward_layout.py``); 64 on an
        accelerator.
    workers : int, optional
        Inpainting worker threads; 0 inpaints in the calling thread. Default: one per eight cores on a
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
        strict=strict, radius=radius, gray_value=gray_value, mean=mean, std=std, auc_x=auc_x,
        thesis_compat=thesis_compat, keep_steps=keep_steps, keep_masks=keep_masks, batch_size=batch_size,
        workers=workers, device=device, progress=progress), x, model)
    targets = _checks.targets(target, x.shape[0])
    rows = _rows(x, relevance, options)
    plan = _plan(rows.image_ids, rows.rank_grid, rows.counts, options.mode, options.features)
    fills = _Fills(rows.xc, rows.rank_grid, plan, options)
    keep = {row[s] for row in plan.row_keys for s in options.keep_steps}
    values, targets, kept = _score(plan, fills, model, options, targets, x.dtype, keep)

    counts, n_patches = rows.counts, rows.n_patches
    scores = torch.tensor([[values[key, int(targets[b])] for key in row] for b, row in enumerate(plan.row_keys)],
                          dtype=torch.float64)
    flips_per_step = [0] + [b - a for a, b in zip([0] + counts, counts)] + [n_patches]
    fraction_flipped = [0.0] + [c / n_patches for c in counts] + [1.0]
    masks = None
    if options.keep_masks:
        height, width = x.shape[2:]
        all_counts = torch.tensor([0] + counts + [n_patches])
        rank_pixels = torch.from_numpy(inpainting.patch_mask_to_pixels(rows.rank_grid, options.patch_size, height,
                                                                       width))
        masks = rank_pixels[:, None] < all_counts.view(1, -1, 1, 1)
    images = {s: torch.stack([kept[row[s]] for row in plan.row_keys]).to(x.dtype) for s in options.keep_steps}
    return PixelFlippingResult(
        scores=scores, flips_per_step=flips_per_step, fraction_flipped=fraction_flipped,
        auc=auc(scores, options.auc_x, fraction_flipped), aopc=aopc(scores), order=rows.order,
        patch_scores=rows.patch_scores, targets=targets, images=images, masks=masks, n_forward=len(plan.keys),
        n_inpainted=plan.n_inpainted, settings=options)


def count_images(x: torch.Tensor, relevance: torch.Tensor, *, patch_size: int = 8,
                 order: Union[str, Sequence[str]] = "morf", mode: str = "inpainting",
                 schedule: Union[str, Sequence[int]] = "thesis", seed: int = 0, n_steps: Optional[int] = None,
                 strict: bool = False, mean: Sequence[float] = imagenet.MEAN, std: Sequence[float] = imagenet.STD,
                 thesis_compat: Union[bool, Iterable[str]] = False) -> Tuple[int, int]:
    """How many distinct images :func:`pixel_flipping` would score and inpaint, without a model.

    Which perturbed images a run needs, and which rows share them, depends only on the images,
    the heatmaps and the options (:func:`_plan`), so it can be counted before any forward pass. The
    arguments mean what they mean for :func:`pixel_flipping`.

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


# --------------------------------------------------------------------------------------------------
# options, checked once


@dataclass(frozen=True)
class PixelFlippingOptions:
    """The options of a Pixel-Flipping run: every argument of :func:`pixel_flipping` after ``target``.

    :func:`pixel_flipping` checks them once, before any work, against the input and the model,
    and returns the checked values as :attr:`PixelFlippingResult.settings`: names in lower case,
    sequences as tuples, ``gray_value`` one value per channel, ``thesis_compat`` the sorted names of
    the features on, and ``batch_size``, ``workers`` and ``device`` resolved (their defaults
    depend on the model's device).
    """

    patch_size: int = 8
    order: Union[str, Tuple[str, ...]] = "morf"
    mode: str = "inpainting"
    schedule: Union[str, Tuple[int, ...]] = "thesis"
    score: str = "logit"
    seed: int = 0
    n_steps: Optional[int] = None
    strict: bool = False
    radius: float = 3.0
    gray_value: Union[float, Tuple[float, ...]] = 0.5
    mean: Tuple[float, ...] = imagenet.MEAN
    std: Tuple[float, ...] = imagenet.STD
    auc_x: str = "step"
    thesis_compat: Union[bool, Tuple[str, ...]] = False
    keep_steps: Tuple[int, ...] = ()
    keep_masks: bool = False
    batch_size: Optional[int] = None
    workers: Optional[int] = None
    device: Optional[str] = None
    progress: Optional[bool] = None

    @property
    def features(self) -> frozenset:
        """The :data:`THESIS_COMPAT` features switched on (of checked options)."""
        return frozenset(self.thesis_compat)


def _check_data(x, relevance) -> None:
    """The input images and one relevance map per row."""
    _checks.check_images(x)
    if not isinstance(relevance, torch.Tensor):
        raise TypeError(f"relevance must be a torch.Tensor, got {type(relevance).__name__}")
    batch, _, height, width = x.shape
    if tuple(relevance.shape) not in (tuple(x.shape), (batch, 1, height, width), (batch, height, width)):
        raise ValueError(f"relevance shape {tuple(relevance.shape)} does not match x {tuple(x.shape)} "
                         f"(expected {tuple(x.shape)}, {(batch, 1, height, width)} or {(batch, height, width)})")
    _checks.check_finite("relevance", relevance)


def _check_options(given: PixelFlippingOptions, x: torch.Tensor,
                   model: Optional[torch.nn.Module] = None) -> PixelFlippingOptions:
    """``given`` checked against the input ``x`` (and the model, which resolves the defaults of
    ``device``, ``batch_size`` and ``workers``); every error names the option and what it may be."""
    batch, channels, height, width = x.shape
    patch_size = _checks.integer("patch_size", given.patch_size)
    if patch_size <= 0 or patch_size > min(height, width):
        raise ValueError(f"patch_size must be in [1, {min(height, width)}] for a {height}x{width} input, "
                         f"got {patch_size}")
    if given.strict and (height % patch_size or width % patch_size):
        raise ValueError(f"patch_size {patch_size} does not divide the {height}x{width} input (strict=True)")
    order = _orders(given.order, batch)
    mode = _checks.choice("mode", given.mode, MODES, fold_case=True)
    schedule = given.schedule
    if isinstance(schedule, str):
        schedule = _checks.choice("schedule", schedule, SCHEDULES, fold_case=True,
                                  alternative="a list of cumulative patch counts")
    n_patches = -(-height // patch_size) * -(-width // patch_size)
    counts = flip_schedule(n_patches, schedule, given.n_steps)       # checks the schedule and n_steps
    if not isinstance(schedule, str):
        schedule = tuple(counts)
    score = _checks.choice("score", given.score, SCORES, fold_case=True)
    auc_x = _checks.choice("auc_x", given.auc_x, AUC_X, fold_case=True)
    seed = _checks.integer("seed", given.seed, 0)
    features = _compat_features(given.thesis_compat)
    mean = tuple(float(v) for v in given.mean)
    std = tuple(float(v) for v in given.std)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need {channels} values (one per channel of x), got {len(mean)} and {len(std)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {std}")
    gray = given.gray_value
    gray_value = (float(gray),) * channels if isinstance(gray, numbers.Real) else tuple(float(v) for v in gray)
    if len(gray_value) != channels or not all(0.0 <= v <= 1.0 for v in gray_value):
        raise ValueError(f"gray_value must be one value or {channels} values in [0, 1], got {gray!r}")
    if mode == "inpainting" and channels not in (1, 3):
        raise ValueError(f"inpainting needs 1 or 3 channels, x has {channels}")
    radius = float(given.radius)
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    n_scores = len(counts) + 2  # the unperturbed input, the steps, gray
    keep_steps = tuple(sorted({int(s) for s in given.keep_steps}))
    if any(s < 0 or s >= n_scores for s in keep_steps):
        raise ValueError(f"keep_steps must lie in [0, {n_scores - 1}], got {list(keep_steps)}")
    batch_size = None if given.batch_size is None else _checks.integer("batch_size", given.batch_size, 1)
    workers = None if given.workers is None else _checks.integer("workers", given.workers, 0,
                                                                  hint="0: inpaint in the calling thread")
    device = given.device
    if model is not None:
        where = torch.device(device) if device is not None else _model_device(model, x)
        device = str(where)
        if batch_size is None:
            batch_size = 8 if where.type == "cpu" else 64
        if workers is None:
            workers = inpainting.default_workers(accelerated=where.type != "cpu") if mode == "inpainting" else 0
    return replace(given, patch_size=patch_size, order=order, mode=mode, schedule=schedule, score=score, seed=seed,
                   strict=bool(given.strict), radius=radius, gray_value=gray_value, mean=mean, std=std, auc_x=auc_x,
                   thesis_compat=tuple(sorted(features)), keep_steps=keep_steps, keep_masks=bool(given.keep_masks),
                   batch_size=batch_size, workers=workers, device=device)


def _orders(order, batch: int) -> Union[str, Tuple[str, ...]]:
    """One order name for all rows, or a tuple of one per row."""
    if isinstance(order, str):
        return _checks.choice("order", order, ORDERS, fold_case=True)
    try:
        given = list(order)
    except TypeError:
        raise TypeError(f"order must be one of {', '.join(map(repr, ORDERS))} or a sequence of them (one per row), "
                        f"got {order!r}") from None
    if len(given) != batch:
        raise ValueError(f"order has {len(given)} entries for a batch of {batch}; give one order for all rows "
                         f"or one per row")
    return tuple(_checks.choice("order", o, ORDERS, fold_case=True) for o in given)


def _compat_features(thesis_compat) -> frozenset:
    if thesis_compat is True:
        return frozenset(THESIS_COMPAT)
    if thesis_compat is False or thesis_compat is None:
        return frozenset()
    if isinstance(thesis_compat, str):
        thesis_compat = [thesis_compat]
    try:
        features = frozenset(thesis_compat)
    except TypeError:
        raise TypeError(f"thesis_compat must be a bool or a collection of names from {sorted(THESIS_COMPAT)}, "
                        f"got {thesis_compat!r}") from None
    for name in sorted(features, key=str):
        _checks.choice("thesis_compat feature", name, tuple(THESIS_COMPAT))
    return features


def _model_device(model: torch.nn.Module, x: torch.Tensor) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    return x.device


# --------------------------------------------------------------------------------------------------
# the rows: distinct images and flipping orders


@dataclass
class _Rows:
    """The rows of a run: their images on the CPU, which of them are the same, and their orders."""

    xc: torch.Tensor             # [B, C, H, W]: float64 for float64 input, else float32
    image_ids: List[int]         # each row's index among the distinct images
    patch_scores: torch.Tensor   # [B, mh, mw]
    order: torch.Tensor          # [B, mh * mw] int64: the patches in flipping order
    rank_grid: np.ndarray        # [B, mh, mw]: each patch's place in that order
    counts: List[int]            # the schedule: cumulative patches flipped after each step
    n_patches: int


def _rows(x: torch.Tensor, relevance: torch.Tensor, options: PixelFlippingOptions) -> _Rows:
    """Number the distinct images of ``x`` and take each row's flipping order from its heatmap."""
    batch, _, height, width = x.shape
    patch_size, features = options.patch_size, options.features
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    grid = (-(-height // patch_size), -(-width // patch_size))
    n_patches = grid[0] * grid[1]
    if batch > 1 and x.stride(0) == 0:  # one image expanded over the rows (a grid): keep it one image
        xc = x[:1].detach().to("cpu", work).contiguous().expand(batch, -1, -1, -1)
        image_ids = [0] * batch
    else:
        xc = x.detach().to("cpu", work).contiguous()
        index: Dict[bytes, int] = {}
        image_ids = [index.setdefault(xc[b].numpy().tobytes(), len(index)) for b in range(batch)]
    pscores = patch_scores(relevance, patch_size, grayscale="grayscale_scores" in features)
    orders = [options.order] * batch if isinstance(options.order, str) else list(options.order)
    order = torch.empty(batch, n_patches, dtype=torch.long)
    for name in dict.fromkeys(orders):        # each order for its rows, in order of appearance
        rows = [b for b in range(batch) if orders[b] == name]
        order[rows] = flip_order(pscores[rows], name, options.seed, [image_ids[b] for b in rows],
                                 shared_permutation="shared_permutation" in features)
    rank = order.argsort(dim=1)  # each patch's place in the flipping order (the inverse permutation)
    return _Rows(xc=xc, image_ids=image_ids, patch_scores=pscores, order=order,
                 rank_grid=rank.reshape(batch, *grid).numpy(),
                 counts=flip_schedule(n_patches, options.schedule, options.n_steps), n_patches=n_patches)


# --------------------------------------------------------------------------------------------------
# the plan: which images a run builds, and which rows share them


@dataclass
class _Plan:
    """The distinct images of a run and how each is built: a function of the rows alone.

    Every score of row ``b`` and step ``s`` refers to a *key* (``row_keys[b][s]``); equal keys are
    equal images, built and scored once. A key's *recipe* (``recipe[key]``: kind, row, step) says
    how to build it from the original: ``original``, ``gray``, ``inpainting`` (mask of row b, step
    k, filled by a worker), ``chain`` (the thesis code's sequential inpainting), ``noise``,
    ``constant`` or ``scalar`` (thesis random mode). ``jobs`` lists the keys each inpainting job
    produces; ``job_of_key[key]`` is ``(job, index of the key's image in the job's output)``.
    """

    kind: str                                   # the recipe of the perturbed steps
    image_ids: List[int]                        # each row's index among the distinct images
    counts: np.ndarray                          # cumulative patches flipped after each step
    keys: List[tuple]
    recipe: Dict[tuple, tuple]
    row_keys: List[List[tuple]]
    first_row: Dict[int, int]                   # distinct image -> first row showing it
    patch_masks: np.ndarray                     # [B, steps, mh, mw] bool: patches flipped after each step
    jobs: List[List[tuple]] = field(default_factory=list)
    job_of_key: Dict[tuple, Tuple[int, int]] = field(default_factory=dict)

    @property
    def n_inpainted(self) -> int:
        """Images inpainted (Telea calls; in the thesis code's chains, every step of every chain)."""
        return sum(1 for key in self.keys if self.recipe[key][0] in ("inpainting", "chain"))


def _plan(image_ids: Sequence[int], rank_grid: np.ndarray, counts: Sequence[int], mode: str, features: frozenset,
          job_size: int = 4) -> _Plan:
    """Plan the distinct images of a run: keys, recipes, and which rows share them.

    Rows of one image share its original and, with the gray image, every step whose mask they
    share (the random order, which ignores the heatmap, shares all). A step whose mask covers
    every patch is the gray image (the thesis code's ``noop_step``: the step before it again). The
    inpainting masks of one image go to the workers in jobs of ``job_size``; the thesis code's
    chains (``truncation``) in one job per image and order.

    Parameters
    ----------
    image_ids : sequence of int
        Each row's index among the distinct images.
    rank_grid : numpy.ndarray
        ``[B, mh, mw]``: each patch's place in the row's flipping order.
    counts : sequence of int
        Cumulative patches flipped after each step (:func:`flip_schedule`).
    mode : str
        One of :data:`MODES`.
    features : frozenset
        The :data:`THESIS_COMPAT` features on.
    """
    batch = len(image_ids)
    counts = np.asarray(counts)
    patch_masks = rank_grid[:, None] < counts.reshape(1, -1, 1, 1)   # [B, steps, mh, mw]
    full = counts == rank_grid[0].size
    chained = mode == "inpainting" and "truncation" in features
    kind = {"inpainting": "chain" if chained else "inpainting", "gray": "constant",
            "random": "scalar" if "random_scalar" in features else "noise"}[mode]
    keys: List[tuple] = []
    recipe: Dict[tuple, tuple] = {}

    def add(key: tuple, how: tuple) -> tuple:
        if key not in recipe:
            recipe[key] = how
            keys.append(key)
        return key

    row_keys = [[None] * (len(counts) + 2) for _ in range(batch)]
    first_row: Dict[int, int] = {}
    for b in range(batch):
        first_row.setdefault(image_ids[b], b)
        row_keys[b][0] = add(("original", image_ids[b]), ("original", first_row[image_ids[b]]))
    gray_key = add(("gray",), ("gray",))
    for b in range(batch):
        row_keys[b][-1] = gray_key
        chain = ("chain", image_ids[b], rank_grid[b].tobytes())
        for k in range(len(counts)):
            if full[k] and mode == "gray":
                key = gray_key
            elif full[k] and mode == "inpainting" and "noop_step" not in features:
                key = gray_key            # nothing left to inpaint from: the image is gone
            elif full[k] and mode == "inpainting" and not chained:
                key = row_keys[b][k]      # the thesis code's no-op: the previous step again
            elif kind == "chain":
                key = add(chain + (k,), (kind, b, k))
            elif kind == "scalar":
                key = add((kind, b, k), (kind, b, k))
            else:
                key = add((kind, image_ids[b], np.packbits(patch_masks[b, k]).tobytes()), (kind, b, k))
            row_keys[b][k + 1] = key
    plan = _Plan(kind=kind, image_ids=list(image_ids), counts=counts, keys=keys, recipe=recipe, row_keys=row_keys,
                 first_row=first_row, patch_masks=patch_masks)
    if kind == "inpainting":
        _group_masks(plan, job_size)
    elif kind == "chain":
        _group_chains(plan)
    return plan


def _group_masks(plan: _Plan, job_size: int) -> None:
    """Jobs of up to ``job_size`` masks of one image, each inpainted from the original image."""
    image_ids = plan.image_ids
    group: List[tuple] = []
    for key in plan.keys + [None]:
        if key is not None and plan.recipe[key][0] != "inpainting":
            continue
        image = None if key is None else image_ids[plan.recipe[key][1]]
        if group and (key is None or len(group) == job_size or image_ids[plan.recipe[group[0]][1]] != image):
            for i, member in enumerate(group):
                plan.job_of_key[member] = (len(plan.jobs), i)
            plan.jobs.append(group)
            group = []
        if key is not None:
            group.append(key)


def _group_chains(plan: _Plan) -> None:
    """One job per distinct (image, order): the thesis code's steps, one after the other."""
    chains: Dict[tuple, List[tuple]] = {}
    for key in plan.keys:
        if plan.recipe[key][0] == "chain":
            chains.setdefault(key[:3], []).append(key)
    for produced in chains.values():
        for key in produced:
            plan.job_of_key[key] = (len(plan.jobs), plan.recipe[key][2])
        plan.jobs.append(produced)


# --------------------------------------------------------------------------------------------------
# the fills: what the perturbed regions are filled with


class _Fills:
    """How the images of a plan are built: the gray image, one noise image per distinct image, the
    thesis code's random scalars, and the arguments of every inpainting job."""

    def __init__(self, xc: torch.Tensor, rank_grid: np.ndarray, plan: _Plan, options: PixelFlippingOptions):
        self.xc, self.plan = xc, plan
        self.patch_size, self.radius = options.patch_size, options.radius
        self.mean, self.std = options.mean, options.std
        batch, channels, self.height, self.width = xc.shape
        work = xc.dtype
        self.mean_t = torch.tensor(options.mean, dtype=work).view(-1, 1, 1)
        self.std_t = torch.tensor(options.std, dtype=work).view(-1, 1, 1)
        if "batch_gray" in options.features:
            midpoint = (float(xc.min()) + float(xc.max())) / 2
            self.gray = torch.full((channels, self.height, self.width), midpoint, dtype=work)
        else:
            gray = (torch.tensor(options.gray_value, dtype=work).view(-1, 1, 1) - self.mean_t) / self.std_t
            self.gray = gray.expand(channels, self.height, self.width).contiguous()
        self._pixels: Dict[int, np.ndarray] = {}        # uint8 pixels of each distinct image, once
        if plan.kind == "chain":
            self.lut = _truncation_lut(self.mean, self.std)
        elif plan.kind == "noise":
            self.noise = {}
            for image in plan.first_row:
                pixels = np.random.default_rng([options.seed, 1, image]).random((channels, self.height, self.width))
                self.noise[image] = (torch.from_numpy(pixels).to(work) - self.mean_t) / self.std_t
        elif plan.kind == "scalar":
            rng = np.random.default_rng(options.seed)
            low, high = float(xc.min()), float(xc.max())
            # one value per step and row, drawn step by step as the thesis code does
            values = np.array([[rng.uniform(low, high) for _ in range(batch)] for _ in range(len(plan.counts))])
            step_of_patch = np.searchsorted(plan.counts, rank_grid, side="right")           # [B, mh, mw]
            self.scalar_fill = [torch.from_numpy(inpainting.patch_mask_to_pixels(
                values[step_of_patch[b], b], self.patch_size, self.height, self.width)).to(work) for b in range(batch)]

    def job(self, index: int) -> tuple:
        """``(function, *arguments)`` of the plan's inpainting job ``index``, for the workers."""
        produced = self.plan.jobs[index]
        recipe = self.plan.recipe
        if self.plan.kind == "chain":
            b = recipe[produced[0]][1]
            start = _truncating_unnormalize(self.xc[b], self.mean, self.std)
            return (inpainting.inpaint_chain_thesis, start.permute(1, 2, 0).contiguous().numpy(),
                    self.plan.patch_masks[b], self.patch_size, self.lut, self.radius)
        masks = np.stack([self.plan.patch_masks[recipe[key][1], recipe[key][2]] for key in produced])
        return inpainting.inpaint_patch_masks, self._u8(self._image(produced[0])), masks, self.patch_size, self.radius

    def _image(self, key: tuple) -> int:
        return self.plan.image_ids[self.plan.recipe[key][1]]

    def _u8(self, image: int) -> np.ndarray:
        """The image as uint8 HWC pixels, rounded (not truncated) from the normalized input."""
        if image not in self._pixels:
            pixels = (self.xc[self.plan.first_row[image]] * self.std_t + self.mean_t).double() * 255
            self._pixels[image] = pixels.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        return self._pixels[image]

    def build(self, key: tuple, result: Callable[[int], np.ndarray]) -> torch.Tensor:
        """The image of ``key``; ``result(job)`` is the output of an inpainting job."""
        how = self.plan.recipe[key]
        kind = how[0]
        if kind == "original":
            return self.xc[how[1]]
        if kind == "gray":
            return self.gray
        b, k = how[1], how[2]
        if kind in ("chain", "inpainting"):
            job, i = self.plan.job_of_key[key]
            out = torch.from_numpy(result(job)[i]).permute(2, 0, 1)
            if kind == "chain":  # the thesis code's arithmetic, float32
                return _normalize_u8(out, self.mean_t.float(), self.std_t.float()).to(self.xc.dtype)
            fill = _normalize_u8(out, self.mean_t, self.std_t)
        elif kind == "noise":
            fill = self.noise[self._image(key)]
        elif kind == "constant":
            fill = self.gray
        else:  # "scalar"
            fill = self.scalar_fill[b]
        mask = torch.from_numpy(inpainting.patch_mask_to_pixels(self.plan.patch_masks[b, k], self.patch_size,
                                                                self.height, self.width))
        return torch.where(mask, fill, self.xc[b])


# --------------------------------------------------------------------------------------------------
# the thesis code's arithmetic (thesis_compat)


def _normalize_u8(images_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [..., C, H, W] → normalized, as ``(u / 255 - mean) / std`` in the dtype of ``mean``."""
    return (images_u8.to(mean.dtype) / 255.0 - mean) / std


def _truncating_unnormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The thesis code's way back to uint8: float32 inverse normalization, × 255, truncation."""
    inv_mean = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32).view(-1, 1, 1)
    inv_std = torch.tensor([1 / s for s in std], dtype=torch.float32).view(-1, 1, 1)
    values = (x.float() - inv_mean) / inv_std * 255.0
    return values.clamp(0, 255).to(torch.uint8)  # float → integer casts truncate


def _truncation_lut(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """[C, 256] uint8: where the thesis code's round trip uint8 → normalized → uint8 sends each value."""
    channels = len(mean)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 256).expand(channels, 1, 256)
    back = _truncating_unnormalize(_normalize_u8(values, m, s), mean, std)
    return back.reshape(channels, 256).numpy().copy()


# --------------------------------------------------------------------------------------------------
# scoring


class _Builder:
    """Builds the images of a plan chunk by chunk, handing inpainting jobs to the workers a few
    chunks ahead of the forward passes and dropping a job's output once its images are built."""

    def __init__(self, plan: _Plan, fills: _Fills, order: Sequence[tuple], workers: int, lookahead: int,
                 keep: set):
        position = {key: i for i, key in enumerate(order)}
        self.plan, self.fills, self.keep, self.lookahead = plan, fills, keep, lookahead
        self.job_start = [min(position[key] for key in produced) for produced in plan.jobs]
        self.uses_left = [len(produced) for produced in plan.jobs]
        self.inpainter = inpainting.Inpainter(workers) if plan.jobs else None
        self.futures: Dict[int, object] = {}
        self.kept: Dict[tuple, torch.Tensor] = {}
        self.built = self.submitted = 0

    def images(self, chunk: Sequence[tuple]) -> List[torch.Tensor]:
        while (self.submitted < len(self.plan.jobs)
               and self.job_start[self.submitted] < self.built + len(chunk) + self.lookahead):
            self.futures[self.submitted] = self.inpainter.submit(*self.fills.job(self.submitted))
            self.submitted += 1
        images = []
        for key in chunk:
            image = self.fills.build(key, lambda job: self.futures[job].result())
            if key in self.keep:
                self.kept[key] = image.clone()
            images.append(image)
            if key in self.plan.job_of_key:                       # free finished jobs' results
                job = self.plan.job_of_key[key][0]
                self.uses_left[job] -= 1
                if self.uses_left[job] == 0:
                    del self.futures[job]
        self.built += len(chunk)
        return images

    def close(self) -> None:
        for future in self.futures.values():
            future.cancel()


def _score(plan: _Plan, fills: _Fills, model: torch.nn.Module, options: PixelFlippingOptions,
           targets: Optional[torch.Tensor], dtype: torch.dtype, keep: set):
    """Score every key of the plan in batched forward passes.

    The originals and the gray image come first, in chunks of their own: their whole outputs
    resolve ``target=None`` (the predicted class) and check the targets' range. The other keys
    follow in fixed chunks of ``batch_size``, so that the numbers do not depend on timing, and only
    the targets' scores are kept.

    Returns
    -------
    ``({(key, class): score}, targets [B] int64, {key: image} of the keys in keep)``
    """
    batch_size, device = options.batch_size, torch.device(options.device)
    head = [k for k in plan.keys if k[0] in ("original", "gray")]
    rest = [k for k in plan.keys if k[0] not in ("original", "gray")]
    builder = _Builder(plan, fills, head + rest, options.workers, 2 * batch_size + 8 * max(options.workers, 1), keep)
    bar = tqdm(total=len(plan.keys), unit="img", desc="pixel flipping", leave=False,
               disable=None if options.progress is None else not options.progress)

    forward = _Forward(model, device)

    def passes(keys):
        for chunk, out in _forward_passes(forward, _chunks(keys, batch_size), builder.images, device, dtype):
            bar.update(len(chunk))
            yield chunk, _scores(out, len(chunk), options.score)

    try:
        with torch.inference_mode():
            outputs = {key: row for chunk, out in passes(head) for key, row in zip(chunk, out)}
            targets = _resolve_targets(targets, outputs, plan.row_keys)
            needed: Dict[tuple, set] = {}
            for b, row in enumerate(plan.row_keys):
                for key in row:
                    needed.setdefault(key, set()).add(int(targets[b]))
            values = {(key, cls): float(outputs[key][cls]) for key in head for cls in needed[key]}
            for chunk, out in passes(rest):
                for i, key in enumerate(chunk):
                    for cls in needed[key]:
                        values[key, cls] = float(out[i, cls])
    finally:
        bar.close()
        builder.close()
    return values, targets, builder.kept


def _chunks(keys: Sequence[tuple], size: int) -> List[Sequence[tuple]]:
    return [keys[i:i + size] for i in range(0, len(keys), size)]


class _Forward:
    """The model's forward pass on a batch of images, channels-last on the CPU.

    oneDNN's convolutions run faster on a channels-last input (VGG-16, 2 cores, batches of 8: 1.3x
    per image at 224 and 112 px; ``bench/forward_layout.py``), with the same outputs up to float
    rounding (about 1e-6 of the largest). A model that cannot take that layout (a ``view`` of its
    input) raises on the first batch; it then gets the standard layout for the whole run, so that
    every score of a run is computed the same way. An error after a first batch that went through
    is the model's own and is raised.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model = model
        self.channels_last = device.type == "cpu"
        self.worked = False

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.channels_last and batch.dim() == 4:
            try:
                out = self.model(batch.contiguous(memory_format=torch.channels_last))
            except RuntimeError:
                if self.worked:
                    raise
                self.channels_last = False
            else:
                self.worked = True
                return out
        return self.model(batch)


def _forward_passes(forward: _Forward, chunks, images_of, device, dtype):
    """``(chunk, model output)`` of every chunk. Each output is fetched only after the next chunk is
    built: on an accelerator its forward pass, launched asynchronously, overlaps the building."""
    pending = None
    for chunk in chunks:
        images = images_of(chunk)
        if pending is not None:
            yield pending
        pending = (chunk, forward(torch.stack(images).to(device, dtype)))
    if pending is not None:
        yield pending


def _scores(out, n: int, score: str) -> torch.Tensor:
    """A chunk's model output as ``[n, classes]`` float64 scores on the CPU (softmax if asked)."""
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != n:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must return [N, classes] scores, got {shape}")
    out = out.detach().to("cpu", torch.float64)
    return torch.softmax(out, dim=1) if score == "softmax" else out


def _resolve_targets(targets: Optional[torch.Tensor], outputs: Dict[tuple, torch.Tensor],
                     row_keys: List[List[tuple]]) -> torch.Tensor:
    """The targets, or for None the class predicted for each row's original; range checked."""
    if targets is None:
        return torch.tensor([int(outputs[row[0]].argmax()) for row in row_keys], dtype=torch.long)
    _checks.check_class_range(targets, next(iter(outputs.values())).shape[0])
    return targets
