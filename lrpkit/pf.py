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
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torchvision.transforms.functional import rgb_to_grayscale
from tqdm.auto import tqdm

from . import inpainting
from .rules import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "pixel_flipping", "PixelFlippingResult", "count_images", "flip_schedule", "patch_scores", "flip_order",
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
    settings : dict
        The arguments the run used.
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
    settings: dict = field(default_factory=dict)


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
            raise ValueError(f"auc: unknown x {x!r}; expected one of {AUC_X} or a sequence of floats")
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
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES} or a list of "
                             f"cumulative patch counts")
        if schedule == "thesis":
            return [min(k * k, n_patches) for k in range(1, thesis_steps + 1)]
        steps = thesis_steps if n_steps is None else n_steps
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ValueError(f"n_steps must be an int >= 1, got {n_steps!r}")
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
        raise TypeError(f"schedule must be one of {SCHEDULES} or a sequence of ints, got {schedule!r}") from None
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
    flat = scores.detach().cpu().reshape(scores.shape[0], -1)
    batch, n = flat.shape
    if order == "random":
        if shared_permutation:
            generator = torch.Generator().manual_seed(int(seed))
            return torch.randperm(n, generator=generator).expand(batch, n).clone()
        ids = range(batch) if image_ids is None else image_ids
        perms = {i: np.random.default_rng([int(seed), 0, int(i)]).permutation(n) for i in set(ids)}
        return torch.from_numpy(np.stack([perms[i] for i in ids])).long()
    if order not in ("morf", "lrf"):
        raise ValueError(f"unknown order {order!r}; expected one of {ORDERS}")
    return torch.sort(flat, dim=1, descending=(order == "morf"), stable=True).indices


# --------------------------------------------------------------------------------------------------
# checks


def _choice(name: str, value, options: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in options:
        raise ValueError(f"unknown {name} {value!r}; expected one of {options}")
    return value.lower()


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
    unknown = features - set(THESIS_COMPAT)
    if unknown:
        raise ValueError(f"unknown thesis_compat feature(s) {sorted(unknown)}; expected names from "
                         f"{sorted(THESIS_COMPAT)}")
    return features


def _check_finite(name: str, tensor: torch.Tensor) -> None:
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or Inf")


def _model_device(model: torch.nn.Module, x: torch.Tensor) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    return x.device


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
# the main entry point


def pixel_flipping(model: torch.nn.Module, x: torch.Tensor, relevance: torch.Tensor,
                   target: Union[int, Sequence[int], torch.Tensor, None], patch_size: int = 8,
                   order: Union[str, Sequence[str]] = "morf", mode: str = "inpainting",
                   schedule: Union[str, Sequence[int]] = "thesis", score: str = "logit", seed: int = 0, *, n_steps: Optional[int] = None, strict: bool = False,
                   radius: float = 3.0, gray_value: Union[float, Sequence[float]] = 0.5,
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                   auc_x: str = "step", thesis_compat: Union[bool, Iterable[str]] = False,
                   keep_steps: Iterable[int] = (), keep_masks: bool = False, batch_size: Optional[int] = None,
                   workers: Optional[int] = None, device: Union[str, torch.device, None] = None,
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
        Normalization of ``x`` (ImageNet by default), used to get back to pixels.
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
        Images per forward pass (bounds memory). Default: 2 on a CPU, where larger batches of VGG-16
        run slower per image (its activations leave the caches), 64 on an accelerator.
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
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("model is in training mode (dropout would make the scores random); call model.eval()")
    score = _choice("score", score, SCORES)
    auc_x = _choice("auc_x", auc_x, AUC_X)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 0):
        raise ValueError(f"workers must be an int >= 0 (0: inpaint in this process), got {workers!r}")
    plan = _plan(x, relevance, patch_size=patch_size, order=order, mode=mode, schedule=schedule, seed=seed,
                 n_steps=n_steps, strict=strict, radius=radius, gray_value=gray_value, mean=mean, std=std,
                 thesis_compat=thesis_compat)
    batch, channels, height, width = x.shape
    run, features = plan.run, plan.features
    device = torch.device(device) if device is not None else _model_device(model, x)
    if batch_size is None:
        batch_size = 2 if device.type == "cpu" else 64
    if workers is None:
        workers = inpainting.default_workers(accelerated=device.type != "cpu") if plan.mode == "inpainting" else 0
    workers = int(workers)
    counts, n_patches = plan.counts, plan.n_patches
    n_scores = len(counts) + 2  # the unperturbed input, the steps, gray
    keep_steps = sorted({int(s) for s in keep_steps})
    if any(s < 0 or s >= n_scores for s in keep_steps):
        raise ValueError(f"keep_steps must lie in [0, {n_scores - 1}], got {keep_steps}")
    targets = _targets(target, batch)

    values, targets = run.score(model, device, x.dtype, targets, score, batch_size, workers, progress,
                                keep={run.row_keys[b][s] for b in range(batch) for s in keep_steps})

    scores = torch.tensor([[values[run.row_keys[b][s], int(targets[b])] for s in range(n_scores)]
                           for b in range(batch)], dtype=torch.float64)
    flips_per_step = [0] + [b - a for a, b in zip([0] + counts, counts)] + [n_patches]
    fraction_flipped = [0.0] + [c / n_patches for c in counts] + [1.0]
    masks = None
    if keep_masks:
        all_counts = torch.tensor([0] + counts + [n_patches])
        rank_pixels = torch.from_numpy(inpainting.patch_mask_to_pixels(plan.rank_grid, plan.patch_size, height, width))
        masks = rank_pixels[:, None] < all_counts.view(1, -1, 1, 1)
    images = {s: torch.stack([run.kept[run.row_keys[b][s]] for b in range(batch)]).to(x.dtype) for s in keep_steps}
    settings = dict(patch_size=plan.patch_size, order=plan.order_setting, mode=plan.mode, schedule=plan.schedule,
                    score=score, seed=int(seed), n_steps=n_steps, strict=strict, radius=run.radius,
                    gray_value=tuple(plan.gray_pixels), mean=run.mean, std=run.std, auc_x=auc_x,
                    thesis_compat=sorted(features), batch_size=int(batch_size), workers=workers, device=str(device))
    return PixelFlippingResult(
        scores=scores, flips_per_step=flips_per_step, fraction_flipped=fraction_flipped,
        auc=auc(scores, auc_x, fraction_flipped), aopc=aopc(scores), order=plan.flip_order, patch_scores=plan.pscores,
        targets=targets, images=images, masks=masks, n_forward=len(run.keys), n_inpainted=run.n_inpainted,
        settings=settings)


def count_images(x: torch.Tensor, relevance: torch.Tensor, *, patch_size: int = 8,
                 order: Union[str, Sequence[str]] = "morf", mode: str = "inpainting",
                 schedule: Union[str, Sequence[int]] = "thesis", seed: int = 0, n_steps: Optional[int] = None,
                 strict: bool = False, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 thesis_compat: Union[bool, Iterable[str]] = False) -> Tuple[int, int]:
    """How many distinct images :func:`pixel_flipping` would score and inpaint, without a model.

    Which perturbed images a run needs, and which rows share them, depends only on the images,
    the heatmaps and the options, so it can be counted before any forward pass. The arguments mean
    what they mean for :func:`pixel_flipping`.

    Returns
    -------
    (int, int)
        ``(n_forward, n_inpainted)``, as :attr:`PixelFlippingResult.n_forward` and ``n_inpainted``.
    """
    plan = _plan(x, relevance, patch_size=patch_size, order=order, mode=mode, schedule=schedule, seed=seed,
                 n_steps=n_steps, strict=strict, radius=3.0, gray_value=0.5, mean=mean, std=std,
                 thesis_compat=thesis_compat)
    return len(plan.run.keys), plan.run.n_inpainted


@dataclass
class _Plan:
    """The checked options of a run and its :class:`_Run` (what is built and scored)."""

    run: "_Run"
    features: frozenset
    mode: str
    schedule: Union[str, List[int]]
    order_setting: Union[str, List[str]]
    patch_size: int
    counts: List[int]
    n_patches: int
    gray_pixels: List[float]
    pscores: torch.Tensor
    flip_order: torch.Tensor
    rank_grid: np.ndarray


def _plan(x, relevance, *, patch_size, order, mode, schedule, seed, n_steps, strict, radius, gray_value, mean,
          std, thesis_compat) -> _Plan:
    """Check the data and the options that shape the perturbed images; plan the images."""
    if not isinstance(x, torch.Tensor) or not isinstance(relevance, torch.Tensor):
        raise TypeError("x and relevance must be torch tensors")
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor [B, C, H, W], got shape {tuple(x.shape)} and dtype {x.dtype}")
    batch, channels, height, width = x.shape
    if batch == 0:
        raise ValueError("x is an empty batch")
    if tuple(relevance.shape) not in (tuple(x.shape), (batch, 1, height, width), (batch, height, width)):
        raise ValueError(f"relevance shape {tuple(relevance.shape)} does not match x {tuple(x.shape)} "
                         f"(expected {tuple(x.shape)}, {(batch, 1, height, width)} or {(batch, height, width)})")
    _check_finite("x", x)
    _check_finite("relevance", relevance)
    if isinstance(patch_size, bool) or not isinstance(patch_size, numbers.Integral):
        raise TypeError(f"patch_size must be an int, got {patch_size!r}")
    patch_size = int(patch_size)
    if patch_size <= 0 or patch_size > min(height, width):
        raise ValueError(f"patch_size must be in [1, {min(height, width)}] for a {height}x{width} input, "
                         f"got {patch_size}")
    if strict and (height % patch_size or width % patch_size):
        raise ValueError(f"patch_size {patch_size} does not divide the {height}x{width} input (strict=True)")
    orders = _orders(order, batch)
    mode = _choice("mode", mode, MODES)
    if isinstance(schedule, str):
        schedule = _choice("schedule", schedule, SCHEDULES)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    features = _compat_features(thesis_compat)
    mean = tuple(float(v) for v in mean)
    std = tuple(float(v) for v in std)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need {channels} values (one per channel of x), got {len(mean)} and {len(std)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {std}")
    if isinstance(gray_value, numbers.Real):
        gray_pixels = [float(gray_value)] * channels
    else:
        gray_pixels = [float(v) for v in gray_value]
    if len(gray_pixels) != channels or not all(0.0 <= v <= 1.0 for v in gray_pixels):
        raise ValueError(f"gray_value must be one value or {channels} values in [0, 1], got {gray_value!r}")
    if mode == "inpainting" and channels not in (1, 3):
        raise ValueError(f"inpainting needs 1 or 3 channels, x has {channels}")
    radius = float(radius)
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")

    # the images are built on the CPU, in float64 for float64 input, else float32
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    grid = (-(-height // patch_size), -(-width // patch_size))
    n_patches = grid[0] * grid[1]
    counts = flip_schedule(n_patches, schedule, n_steps)

    # rows showing the same image share its work: number the distinct images
    if batch > 1 and x.stride(0) == 0:  # one image expanded over the rows (a grid): keep it one image
        xc = x[:1].detach().to("cpu", work).contiguous().expand(batch, -1, -1, -1)
        image_ids = [0] * batch
    else:
        xc = x.detach().to("cpu", work).contiguous()
        index: Dict[bytes, int] = {}
        image_ids = [index.setdefault(xc[b].numpy().tobytes(), len(index)) for b in range(batch)]
    pscores = patch_scores(relevance, patch_size, grayscale="grayscale_scores" in features)
    order_ = torch.empty(batch, n_patches, dtype=torch.long)
    for name in dict.fromkeys(orders):        # each order for its rows, in order of appearance
        rows = [b for b in range(batch) if orders[b] == name]
        order_[rows] = flip_order(pscores[rows], name, seed, [image_ids[b] for b in rows],
                                  shared_permutation="shared_permutation" in features)
    rank = order_.argsort(dim=1)  # each patch's place in the flipping order (the inverse permutation)
    rank_grid = rank.reshape(batch, *grid).numpy()

    run = _Run(xc=xc, image_ids=image_ids, rank_grid=rank_grid, counts=counts, patch_size=patch_size, mode=mode,
               features=features, mean=mean, std=std, gray_pixels=gray_pixels, radius=radius, seed=int(seed))
    order_setting = orders[0] if isinstance(order, str) else list(orders)
    return _Plan(run=run, features=features, mode=mode, schedule=schedule, order_setting=order_setting,
                 patch_size=patch_size, counts=counts, n_patches=n_patches, gray_pixels=gray_pixels, pscores=pscores,
                 flip_order=order_, rank_grid=rank_grid)


def _orders(order, batch: int) -> List[str]:
    """One order name per row, from one name for all rows or a sequence of one per row."""
    if isinstance(order, str):
        return [_choice("order", order, ORDERS)] * batch
    try:
        given = list(order)
    except TypeError:
        raise TypeError(f"order must be one of {ORDERS} or a sequence of them (one per row), got {order!r}") from None
    if len(given) != batch:
        raise ValueError(f"order has {len(given)} entries for a batch of {batch}; give one order for all rows "
                         f"or one per row")
    return [_choice("order", o, ORDERS) for o in given]


def _targets(target, batch: int) -> Optional[torch.Tensor]:
    """Target as a [B] int64 tensor (range checked once the number of classes is known), or None."""
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("target must be an int, a sequence of ints, a tensor or None, got a bool")
    if isinstance(target, numbers.Integral):
        return torch.full((batch,), int(target), dtype=torch.long)
    try:
        resolved = torch.as_tensor(target).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"target must be an int, a sequence of ints, a tensor or None, got {target!r}") from None
    if resolved.is_floating_point() or resolved.is_complex() or resolved.dtype == torch.bool:
        raise TypeError(f"target must hold ints, got dtype {resolved.dtype}")
    if resolved.numel() == 1:
        resolved = resolved.expand(batch)
    if resolved.numel() != batch:
        raise ValueError(f"target has {resolved.numel()} entries for a batch of {batch}")
    return resolved.long().cpu().clone()


class _Run:
    """The distinct images of a Pixel-Flipping run, how to build each, and their scoring.

    Every score of row ``b`` and step ``s`` refers to a *key* (``row_keys[b][s]``); equal keys are
    equal images, built and scored once. A key's *recipe* says how to build it from the original:
    ``original``, ``gray``, ``inpainting`` (mask of row b, step k, filled by a worker), ``chain`` (the
    thesis code's sequential inpainting), ``noise``, ``constant`` or ``scalar`` (thesis random mode).
    """

    def __init__(self, *, xc, image_ids, rank_grid, counts, patch_size, mode, features, mean, std, gray_pixels,
                 radius, seed):
        self.xc, self.image_ids, self.mode, self.features = xc, image_ids, mode, features
        self.patch_size, self.radius, self.seed = patch_size, radius, seed
        self.mean, self.std = mean, std
        batch, channels, self.height, self.width = xc.shape
        work = xc.dtype
        self.counts = np.asarray(counts)
        self.rank_grid = rank_grid
        self.patch_masks = rank_grid[:, None] < self.counts.reshape(1, -1, 1, 1)   # [B, steps, mh, mw]
        full = self.counts == rank_grid[0].size
        self.mean_t = torch.tensor(mean, dtype=work).view(-1, 1, 1)
        self.std_t = torch.tensor(std, dtype=work).view(-1, 1, 1)
        if "batch_gray" in features:
            midpoint = (float(xc.min()) + float(xc.max())) / 2
            self.gray = torch.full((channels, self.height, self.width), midpoint, dtype=work)
        else:
            gray = (torch.tensor(gray_pixels, dtype=work).view(-1, 1, 1) - self.mean_t) / self.std_t
            self.gray = gray.expand(channels, self.height, self.width).contiguous()

        self.keys: List[tuple] = []
        self.recipe: Dict[tuple, tuple] = {}
        n_scores = len(counts) + 2
        self.row_keys = [[None] * n_scores for _ in range(batch)]
        first_row = {}
        for b in range(batch):
            first_row.setdefault(image_ids[b], b)
            self.row_keys[b][0] = self._add(("original", image_ids[b]), ("original", first_row[image_ids[b]]))
        gray_key = self._add(("gray",), ("gray",))
        chained = mode == "inpainting" and "truncation" in features
        kind = {"inpainting": "chain" if chained else "inpainting", "gray": "constant",
                "random": "scalar" if "random_scalar" in features else "noise"}[mode]
        for b in range(batch):
            self.row_keys[b][-1] = gray_key
            chain = ("chain", image_ids[b], rank_grid[b].tobytes())
            for k in range(len(counts)):
                if full[k] and mode == "gray":
                    key = gray_key
                elif full[k] and mode == "inpainting" and "noop_step" not in features:
                    key = gray_key            # nothing left to inpaint from: the image is gone
                elif full[k] and mode == "inpainting" and not chained:
                    key = self.row_keys[b][k]  # the thesis code's no-op: the previous step again
                elif kind == "chain":
                    key = self._add(chain + (k,), (kind, b, k))
                elif kind == "scalar":
                    key = self._add((kind, b, k), (kind, b, k))
                else:
                    key = self._add((kind, image_ids[b], np.packbits(self.patch_masks[b, k]).tobytes()), (kind, b, k))
                self.row_keys[b][k + 1] = key

        # what the recipes need
        self.tasks: List[Tuple[tuple, List[tuple]]] = []       # (inpainting job, keys it produces)
        self.task_of_key: Dict[tuple, Tuple[int, int]] = {}
        if kind == "inpainting":
            self._plan_inpainting(first_row)
        elif kind == "chain":
            self._plan_chains()
        elif kind == "noise":
            self.noise = {}
            for img, b in first_row.items():
                pixels = np.random.default_rng([seed, 1, img]).random((channels, self.height, self.width))
                self.noise[img] = (torch.from_numpy(pixels).to(work) - self.mean_t) / self.std_t
        elif kind == "scalar":
            rng = np.random.default_rng(seed)
            low, high = float(xc.min()), float(xc.max())
            # one value per step and row, drawn step by step as the thesis code does
            values = np.array([[rng.uniform(low, high) for _ in range(batch)] for _ in range(len(counts))])
            step_of_patch = np.searchsorted(self.counts, rank_grid, side="right")          # [B, mh, mw]
            self.scalar_fill = [torch.from_numpy(inpainting.patch_mask_to_pixels(
                values[step_of_patch[b], b], patch_size, self.height, self.width)).to(work) for b in range(batch)]
        self.kept: Dict[tuple, torch.Tensor] = {}
        self.n_inpainted = sum(1 for key in self.keys if self.recipe[key][0] in ("inpainting", "chain"))

    def _add(self, key: tuple, how: tuple) -> tuple:
        if key not in self.recipe:
            self.recipe[key] = how
            self.keys.append(key)
        return key

    def _u8(self, b: int) -> np.ndarray:
        """Row b's image as uint8 HWC pixels, rounded (not truncated) from the normalized input."""
        pixels = (self.xc[b] * self.std_t + self.mean_t).double() * 255
        return pixels.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()

    def _plan_inpainting(self, first_row: Dict[int, int], task_size: int = 4) -> None:
        """Group the masks of one image into jobs of a few, each inpainted from the original image."""
        u8 = {img: self._u8(b) for img, b in first_row.items()}
        group: List[tuple] = []
        for key in self.keys + [None]:
            if key is not None and self.recipe[key][0] != "inpainting":
                continue
            img = None if key is None else self.image_ids[self.recipe[key][1]]
            if group and (key is None or len(group) == task_size or self.image_ids[self.recipe[group[0]][1]] != img):
                masks = np.stack([self.patch_masks[self.recipe[g][1], self.recipe[g][2]] for g in group])
                for i, g in enumerate(group):
                    self.task_of_key[g] = (len(self.tasks), i)
                first = self.image_ids[self.recipe[group[0]][1]]
                job = (inpainting.inpaint_patch_masks, u8[first], masks, self.patch_size, self.radius)
                self.tasks.append((job, group))
                group = []
            if key is not None:
                group.append(key)

    def _plan_chains(self) -> None:
        """One job per distinct (image, order): the thesis code's steps, one after the other."""
        lut = _truncation_lut(self.mean, self.std)
        chains: Dict[tuple, List[tuple]] = {}
        for key in self.keys:
            if self.recipe[key][0] == "chain":
                chains.setdefault(key[:3], []).append(key)
        for produced in chains.values():
            b = self.recipe[produced[0]][1]
            start = _truncating_unnormalize(self.xc[b], self.mean, self.std)
            job = (inpainting.inpaint_chain_thesis, start.permute(1, 2, 0).contiguous().numpy(), self.patch_masks[b],
                   self.patch_size, lut, self.radius)
            for key in produced:
                self.task_of_key[key] = (len(self.tasks), self.recipe[key][2])
            self.tasks.append((job, produced))

    def _build(self, key: tuple, futures: dict) -> torch.Tensor:
        how = self.recipe[key]
        kind = how[0]
        if kind == "original":
            return self.xc[how[1]]
        if kind == "gray":
            return self.gray
        b, k = how[1], how[2]
        if kind in ("chain", "inpainting"):
            task, i = self.task_of_key[key]
            out = torch.from_numpy(futures[task].result()[i]).permute(2, 0, 1)
            if kind == "chain":  # the thesis code's arithmetic, float32
                return _normalize_u8(out, self.mean_t.float(), self.std_t.float()).to(self.xc.dtype)
            fill = _normalize_u8(out, self.mean_t, self.std_t)
        elif kind == "noise":
            fill = self.noise[self.image_ids[b]]
        elif kind == "constant":
            fill = self.gray
        else:  # "scalar"
            fill = self.scalar_fill[b]
        mask = torch.from_numpy(inpainting.patch_mask_to_pixels(self.patch_masks[b, k], self.patch_size, self.height,
                                                                self.width))
        return torch.where(mask, fill, self.xc[b])

    def score(self, model, device, dtype, targets, score, batch_size, workers, progress, keep):
        """Score every key in batched forward passes; returns ``{(key, class): value}`` and the targets.

        The originals and the gray image go first (they also resolve ``target=None``), then the rest
        in fixed chunks of ``batch_size``, so that the numbers do not depend on timing. Inpainting
        jobs are handed to the workers a few chunks ahead of the forward passes.
        """
        head = [k for k in self.keys if k[0] in ("original", "gray")]
        rest = [k for k in self.keys if k[0] not in ("original", "gray")]
        chunks = [head[i:i + batch_size] for i in range(0, len(head), batch_size)] + \
                 [rest[i:i + batch_size] for i in range(0, len(rest), batch_size)]
        position = {key: i for i, key in enumerate(head + rest)}
        task_start = [min(position[key] for key in produced) for _, produced in self.tasks]
        uses_left = [len(produced) for _, produced in self.tasks]
        lookahead = 2 * batch_size + 8 * max(workers, 1)
        inpainter = inpainting.Inpainter(workers) if self.tasks else None
        futures: Dict[int, object] = {}
        needed: Dict[tuple, set] = {}
        head_out: Dict[tuple, torch.Tensor] = {}   # full outputs, until the targets are known
        values: Dict[tuple, float] = {}
        built = submitted = 0
        bar = tqdm(total=len(self.keys), unit="img", desc="pixel flipping", leave=False,
                   disable=None if progress is None else not progress)

        def collect(chunk: List[tuple], out: torch.Tensor) -> None:
            nonlocal targets
            if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(chunk):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"model must return [N, classes] scores, got {shape}")
            out = out.detach().to("cpu", torch.float64)
            if score == "softmax":
                out = torch.softmax(out, dim=1)
            for i, key in enumerate(chunk):
                if needed:
                    for cls in needed[key]:
                        values[key, cls] = float(out[i, cls])
                else:
                    head_out[key] = out[i]
            bar.update(len(chunk))
            if not needed and len(head_out) == len(head):   # the originals are scored: fix the targets
                targets = self._resolve_targets(targets, head_out)
                for b, row in enumerate(self.row_keys):
                    for key in row:
                        needed.setdefault(key, set()).add(int(targets[b]))
                for key, row_out in head_out.items():
                    for cls in needed[key]:
                        values[key, cls] = float(row_out[cls])

        pending = None
        try:
            with torch.inference_mode():
                for chunk in chunks:
                    while submitted < len(self.tasks) and task_start[submitted] < built + len(chunk) + lookahead:
                        futures[submitted] = inpainter.submit(*self.tasks[submitted][0])
                        submitted += 1
                    images = []
                    for key in chunk:
                        image = self._build(key, futures)
                        if key in keep:
                            self.kept[key] = image.clone()
                        images.append(image)
                        if key in self.task_of_key:                       # free finished jobs' results
                            task = self.task_of_key[key][0]
                            uses_left[task] -= 1
                            if uses_left[task] == 0:
                                del futures[task]
                    built += len(chunk)
                    # the previous chunk's scores are fetched only now: on an accelerator, its forward
                    # pass (launched asynchronously) overlaps the building of this chunk
                    if pending is not None:
                        collect(*pending)
                    pending = (chunk, model(torch.stack(images).to(device, dtype)))
                if pending is not None:
                    collect(*pending)
        finally:
            bar.close()
            for future in futures.values():
                future.cancel()
        return values, targets

    def _resolve_targets(self, targets, head_out):
        n_classes = next(iter(head_out.values())).shape[0]
        if targets is None:  # the class predicted for the unperturbed input
            return torch.tensor([int(head_out[row[0]].argmax()) for row in self.row_keys], dtype=torch.long)
        if (targets < 0).any() or (targets >= n_classes).any():
            shown = targets.tolist() if len(targets) <= 16 else f"with values {targets.min()}..{targets.max()}"
            raise ValueError(f"target {shown} out of range for a model with {n_classes} classes")
        return targets
