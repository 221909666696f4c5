"""Which patches Pixel-Flipping flips, and when: the schedule, the patch scores and the order.

The relevance map is cut into ``p × p`` patches and each patch is scored by the sum of its
relevance (:func:`patch_scores`); the patches are ordered by that score, most relevant first
(MoRF), least relevant first (LRF), or at random (:func:`flip_order`, :data:`ORDERS`); after step
``k`` the first ``c_k`` patches of that order are flipped (:func:`flip_schedule`,
:data:`SCHEDULES`; thesis §3.3). Each of these is useful on its own.
"""
from __future__ import annotations

import math
import numbers
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from torchvision.transforms.functional import rgb_to_grayscale

from .. import _checks

__all__ = ["flip_schedule", "patch_scores", "flip_order", "ORDERS", "SCHEDULES"]

ORDERS = ("morf", "lrf", "random")
SCHEDULES = ("thesis", "log", "linear")


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

