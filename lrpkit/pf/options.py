"""The options of a Pixel-Flipping run, checked once, before any work.

:class:`PixelFlippingOptions` holds every argument of :func:`lrpkit.pf.pixel_flipping` after
``target``. :func:`_check_options` checks them against the input (and the model, which resolves the
defaults of ``device``, ``batch_size`` and ``workers``); every error names the option, its value and
what it may be. The closed sets of option values live here or beside their concept: :data:`MODES`,
:data:`SCORES` and :data:`THESIS_COMPAT` here, ``ORDERS`` and ``SCHEDULES`` in
:mod:`lrpkit.pf.patches`, ``AUC_X`` in :mod:`lrpkit.pf.curves`.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from typing import Optional, Tuple, Union

import torch

from .. import _checks, imagenet, inpainting
from .curves import AUC_X
from .patches import ORDERS, SCHEDULES, flip_schedule

__all__ = ["PixelFlippingOptions", "MODES", "JOB_MODES", "SCORES", "THESIS_COMPAT", "cpu_batch_size"]

MODES = ("inpainting", "random", "gray", "road")
#: The modes that fill from the image itself in worker jobs (Telea inpainting, ROAD's linear imputation).
JOB_MODES = ("inpainting", "road")
SCORES = ("logit", "softmax")

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


@dataclass(frozen=True)
class PixelFlippingOptions:
    """The options of a Pixel-Flipping run: every argument of :func:`~lrpkit.pf.pixel_flipping`
    after ``target``.

    :func:`~lrpkit.pf.pixel_flipping` checks them once, before any work, against the input and the
    model, and returns the checked values as :attr:`~lrpkit.pf.PixelFlippingResult.settings`: names
    in lower case, sequences as tuples, ``gray_value`` one value per channel, ``thesis_compat`` the
    sorted names of the features on, and ``batch_size``, ``workers`` and ``device`` resolved (their
    defaults depend on the model's device).
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
    noise: float = 0.01
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
    patch_size = _check_patch_size(given, height, width)
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
    mean, std, gray_value = _check_pixel_units(given, channels)
    if mode == "inpainting" and channels not in (1, 3):
        raise ValueError(f"inpainting needs 1 or 3 channels, x has {channels}")
    radius = float(given.radius)
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    noise = _checks.real("noise", given.noise, 0.0)
    n_scores = len(counts) + 2  # the unperturbed input, the steps, gray
    keep_steps = tuple(sorted({int(s) for s in given.keep_steps}))
    if any(s < 0 or s >= n_scores for s in keep_steps):
        raise ValueError(f"keep_steps must lie in [0, {n_scores - 1}], got {list(keep_steps)}")
    device, batch_size, workers = _resolve_for_device(given, mode, x, model)
    return replace(given, patch_size=patch_size, order=order, mode=mode, schedule=schedule, score=score, seed=seed,
                   strict=bool(given.strict), radius=radius, noise=noise, gray_value=gray_value, mean=mean, std=std, auc_x=auc_x,
                   thesis_compat=tuple(sorted(features)), keep_steps=keep_steps, keep_masks=bool(given.keep_masks),
                   batch_size=batch_size, workers=workers, device=device)


def _check_patch_size(given: PixelFlippingOptions, height: int, width: int) -> int:
    """The patch size, an integer that fits the ``height`` × ``width`` input (and divides it if ``strict``)."""
    patch_size = _checks.integer("patch_size", given.patch_size)
    if patch_size <= 0 or patch_size > min(height, width):
        raise ValueError(f"patch_size must be in [1, {min(height, width)}] for a {height}x{width} input, "
                         f"got {patch_size}")
    if given.strict and (height % patch_size or width % patch_size):
        raise ValueError(f"patch_size {patch_size} does not divide the {height}x{width} input (strict=True)")
    return patch_size


def _check_pixel_units(given: PixelFlippingOptions, channels: int) -> Tuple[Tuple[float, ...], ...]:
    """``(mean, std, gray_value)``: the normalization of the input and the gray, one value per channel."""
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
    return mean, std, gray_value


def cpu_batch_size(height: int, width: int) -> int:
    """Images per forward pass on a CPU by default: as many as hold the pixels of 8 images of 224 px,
    between 8 and 32 (8 at 224 px, 32 at 112 px and below).

    In the channels-last layout the CPU's forward passes use, larger batches of small images run
    faster per image (2 cores: VGG-16 at 112 px 1.2x faster in batches of 32 than of 8; its
    quarter-width layout at 64 px 1.4x; at 224 px the batch does not matter;
    ``bench/forward_layout.py``), and the same pixels per pass keep the memory of the activations
    that of 8 images at 224 px.
    """
    return max(8, min(32, 8 * 224 * 224 // max(1, int(height) * int(width))))


def _resolve_for_device(given: PixelFlippingOptions, mode: str, x: torch.Tensor,
                   model: Optional[torch.nn.Module]) -> Tuple[Optional[str], Optional[int], Optional[int]]:
    """``(device, batch_size, workers)``: checked, and without a model as given; with one, the
    defaults resolved for the model's device (:func:`lrpkit.pf.pixel_flipping` says which)."""
    batch_size = None if given.batch_size is None else _checks.integer("batch_size", given.batch_size, 1)
    workers = None if given.workers is None else _checks.integer("workers", given.workers, 0,
                                                                  hint="0: inpaint in the calling thread")
    device = given.device
    if model is not None:
        where = torch.device(device) if device is not None else _model_device(model, x)
        device = str(where)
        if batch_size is None:
            batch_size = cpu_batch_size(*x.shape[-2:]) if where.type == "cpu" else 64
        if workers is None:
            workers = inpainting.default_workers(accelerated=where.type != "cpu") if mode in JOB_MODES else 0
    return device, batch_size, workers


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
