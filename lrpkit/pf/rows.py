"""The rows of a Pixel-Flipping run: which rows show the same image, and each row's flipping order.

A run's input is a batch of rows, each an image with its heatmap; rows may repeat an image (one
image with the heatmaps of a hyperparameter grid). :func:`_rows` numbers the distinct images, so
that the plan (:mod:`lrpkit.pf.plan`) can share their work, and takes each row's order of the
patches from its heatmap (:mod:`lrpkit.pf.patches`). The relevance itself goes no further: only
the order, as each patch's rank, travels on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import numpy as np
import torch

from .options import PixelFlippingOptions
from .patches import flip_order, flip_schedule, patch_scores


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
