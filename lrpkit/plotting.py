"""Heatmaps: relevance to colours with the red/blue map of the thesis.

The thesis (and Montavon et al.'s LRP tutorial it follows) draws a heatmap by summing the relevance
over the colour channels, clipping it to ``[-b, b]`` with ``b = 10 * mean(|R|^3)^(1/3)``, and
colouring it with matplotlib's ``seismic`` map darkened to 85 %: red for positive relevance, blue
for negative, light gray (217) for none.

References
----------
G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Müller. Layer-Wise Relevance Propagation:
An Overview. In *Explainable AI*, Springer LNCS 11700, 2019.
R. Bermudez Schettino. In-Depth Hyperparameter Selection for Layer-Wise Relevance Propagation.
Master's thesis, TU Berlin, 2022 (heatmap figures).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from PIL import Image

__all__ = ["LRP_CMAP", "relevance_map", "heatmap_bound", "heatmap_rgb", "save_heatmap", "heatmap_grid", "STABLE_MARK",
           "UNSTABLE_MARK", "UNSTABLE_COLOUR"]


def _lrp_cmap() -> ListedColormap:
    seismic = colormaps["seismic"]
    colours = seismic(np.arange(seismic.N))
    colours[:, :3] *= 0.85
    return ListedColormap(colours, name="lrp")


#: The thesis's colour map: seismic with its RGB scaled by 0.85 (blue - gray - red).
LRP_CMAP = _lrp_cmap()


def relevance_map(relevance) -> np.ndarray:
    """Relevance ``[H, W]``, ``[C, H, W]`` or ``[1, C, H, W]`` (tensor or array) summed over the
    channels to a float64 ``[H, W]`` map.

    Raises
    ------
    ValueError
        A batch of more than one heatmap, a shape that is not an image, or NaN/inf values.
    """
    if torch.is_tensor(relevance):
        relevance = relevance.detach().to("cpu", torch.float64).numpy()
    values = np.asarray(relevance, dtype=np.float64)
    if values.ndim == 4:
        if values.shape[0] != 1:
            raise ValueError(f"relevance holds {values.shape[0]} heatmaps; pass one at a time")
        values = values[0]
    if values.ndim == 3:
        values = values.sum(axis=0)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"relevance must have shape [H, W], [C, H, W] or [1, C, H, W], "
                         f"not {list(np.shape(relevance))}")
    if not np.isfinite(values).all():
        raise ValueError("relevance contains NaN or infinite values; no heatmap drawn")
    return values


def heatmap_bound(values: np.ndarray) -> float:
    """The thesis's colour limit ``10 * mean(|R|^3)^(1/3)`` of a ``[H, W]`` map."""
    return float(10.0 * np.mean(np.abs(values) ** 3) ** (1.0 / 3.0))


def heatmap_rgb(relevance, bound: float | None = None, cmap=LRP_CMAP) -> np.ndarray:
    """Colour a relevance map: uint8 RGB ``[H, W, 3]``, one pixel per input pixel.

    Parameters
    ----------
    relevance : tensor or array
        ``[H, W]``, ``[C, H, W]`` or ``[1, C, H, W]``; channels are summed.
    bound : float, optional
        Values are clipped to ``[-bound, bound]``; default :func:`heatmap_bound`. A map of zeros
        is drawn all gray.
    cmap : matplotlib colormap
        Default :data:`LRP_CMAP`.
    """
    values = relevance_map(relevance)
    if bound is None:
        bound = heatmap_bound(values)
    if not np.isfinite(bound) or bound < 0:
        raise ValueError(f"bound must be a finite non-negative number, not {bound}")
    scaled = np.zeros_like(values) if bound == 0 else np.clip(values / bound, -1.0, 1.0)
    return np.ascontiguousarray(cmap((scaled + 1.0) / 2.0, bytes=True)[..., :3])


def save_heatmap(relevance, path: str | os.PathLike | BinaryIO, bound: float | None = None,
                 cmap=LRP_CMAP) -> Path | BinaryIO:
    """Write :func:`heatmap_rgb` of ``relevance`` as a PNG at the input's resolution.

    ``path`` is a ``.png`` file name (its folder is created) or a binary file opened for writing
    (as the command line passes its temporary files); returns ``path``.
    """
    if hasattr(path, "write"):
        Image.fromarray(heatmap_rgb(relevance, bound, cmap), "RGB").save(path, format="PNG")
        return path
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"heatmaps are written as PNG; {path} does not end in .png")
    rgb = heatmap_rgb(relevance, bound, cmap)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, "RGB").save(path)
    return path


#: Tile marks of :func:`heatmap_grid` for the detector's verdict (:mod:`lrpkit.diagnostics`).
STABLE_MARK, UNSTABLE_MARK, UNSTABLE_COLOUR = "✓", "✗", "#d62728"


def heatmap_grid(relevance, image=None, titles=None, *, ncols: int = 5, alpha: float = 0.2, unstable=None,
                 title: str | None = None, tile_inches: float = 2.0):
    """Heatmaps as a grid of tiles, each over the image, as the thesis code draws its grid searches.

    The thesis code's ``grid`` plot (Figures 2.5, 3.3, B.1): every tile is :func:`heatmap_rgb` of one
    heatmap (its own colour limit, ``10 * mean(|R|^3)^(1/3)``), with the image drawn on top at
    ``alpha`` 0.2, axes off, titled by its setting; 20 tiles make its 4 x 5 grid.

    Parameters
    ----------
    relevance : tensor or array
        ``[N, C, H, W]`` or ``[N, H, W]``, one heatmap per tile (channels are summed).
    image : array, optional
        uint8 RGB ``[H, W, 3]`` drawn over every tile at ``alpha``; None draws the heatmaps alone.
    titles : sequence of str, optional
        One per tile.
    ncols : int
        Tiles per row (the thesis: 5); the rows follow from N.
    alpha : float
        Opacity of the image over the heatmap, in [0, 1] (the thesis: 0.2).
    unstable : sequence of bool, optional
        The detector's verdict per tile (:attr:`lrpkit.diagnostics.InstabilityReport.unstable`):
        flagged tiles get :data:`UNSTABLE_MARK` before their title and a frame, both in
        :data:`UNSTABLE_COLOUR`, the others :data:`STABLE_MARK`; a legend under the grid says so.
    title : str, optional
        The figure's title.
    tile_inches : float
        Width of a tile (the thesis: 2 inches, a 10 x 10 inch figure for 4 x 5 tiles).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    values = relevance.detach().cpu() if torch.is_tensor(relevance) else np.asarray(relevance)
    if values.ndim not in (3, 4) or values.shape[0] == 0:
        raise ValueError(f"relevance must hold one heatmap per tile, [N, C, H, W] or [N, H, W], "
                         f"not shape {list(values.shape)}")
    count, size = values.shape[0], tuple(values.shape[-2:])
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    if image is not None:
        image = np.asarray(image)
        if image.shape != (*size, 3):
            raise ValueError(f"image must be RGB [H, W, 3] of the heatmaps' size {list(size)}, "
                             f"not shape {list(image.shape)}")
    if titles is not None and len(titles) != count:
        raise ValueError(f"titles has {len(titles)} entries for {count} heatmaps; give one per tile")
    if unstable is not None:
        unstable = [bool(u) for u in (unstable.tolist() if torch.is_tensor(unstable) else unstable)]
        if len(unstable) != count:
            raise ValueError(f"unstable has {len(unstable)} entries for {count} heatmaps; give one per tile")
    cols = min(ncols, count)
    rows = -(-count // cols)
    legend = 0.35 if unstable is not None else 0.0
    head = 0.5 if title else 0.0
    fig, axes = plt.subplots(rows, cols, squeeze=False,
                             figsize=(cols * tile_inches, rows * (tile_inches + 0.3) + legend + head))
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= count:
            continue
        ax.imshow(heatmap_rgb(values[i]), interpolation="nearest")
        if image is not None:
            ax.imshow(image, alpha=alpha, interpolation="nearest")
        text = titles[i] if titles is not None else ""
        if unstable is None:
            ax.set_title(text, fontsize=10)
        elif unstable[i]:
            ax.set_title(f"{UNSTABLE_MARK} {text}", fontsize=10, color=UNSTABLE_COLOUR, fontweight="bold")
            ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor=UNSTABLE_COLOUR,
                                   linewidth=3, clip_on=False))
        else:
            ax.set_title(f"{STABLE_MARK} {text}", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=14)
    if unstable is not None:
        fig.text(0.5, 0.01, f"{UNSTABLE_MARK} and red frame: flagged as numerically unstable by "
                 f"lrpkit.diagnostics.instability;  {STABLE_MARK}: not flagged", ha="center", va="bottom", fontsize=9,
                 wrap=True)
    fig.tight_layout(rect=(0, legend / fig.get_figheight(), 1, 1))
    return fig
