"""Heatmaps: relevance to colours with the red/blue map of the thesis.

The thesis (and Montavon et al.'s LRP tutorial it follows) draws a heatmap by summing the relevance
over the colour channels, clipping it to ``[-b, b]`` with ``b = 10 * mean(|R|^3)^(1/3)``, and
colouring it with matplotlib's ``seismic`` map darkened to 85 %: red for positive relevance, blue
for negative, light gray (217) for none.

For Pixel-Flipping (thesis §2.2, §3.3) it draws what the thesis code's plots show: the perturbation
curves with the area under their mean (:func:`pf_curve`), the image comparison of original,
perturbed input, heatmap and perturbed regions (:func:`pf_comparison`), the flips per step
(:func:`flips_per_step`), and damaged pictures (:func:`mask_overlay`); :func:`image_rgb` turns a
normalized input back into pixels.

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

__all__ = ["LRP_CMAP", "relevance_map", "heatmap_bound", "heatmap_rgb", "save_heatmap", "SCALINGS", "scaling_bound",
           "plot_heatmap", "plot_scalings", "image_rgb", "mask_overlay", "outline_mask", "pf_curve",
           "perturbed_regions", "pf_comparison", "flips_per_step", "heatmap_grid", "STABLE_MARK", "UNSTABLE_MARK",
           "UNSTABLE_COLOUR"]


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


#: The colour scalings of :func:`scaling_bound`: the thesis code's ``10 · mean(|R|³)^(1/3)``
#: (:func:`heatmap_bound`), the largest ``|R|``, and a quantile of ``|R|`` (values above it saturate).
SCALINGS = ("cubic", "max", "quantile")


def scaling_bound(relevance, scaling: str = "cubic", quantile: float = 0.99) -> float:
    """The colour limit ``b`` (the map is drawn over ``[-b, b]``) of one of three scalings.

    The same relevance can look very different under each (thesis Fig. 2.3c): where one region
    holds most of ``|R|``, the cubic mean follows it and everything else fades to gray; ``max |R|``
    shows only the largest values; a quantile clip saturates the top ``1 - quantile`` of the pixels
    and shows the rest.

    Parameters
    ----------
    relevance : tensor or array
        ``[H, W]``, ``[C, H, W]`` or ``[1, C, H, W]``; channels are summed.
    scaling : str
        One of :data:`SCALINGS`.
    quantile : float
        For ``"quantile"``: the quantile of ``|R|`` in ``(0, 1]``.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; choose one of {', '.join(map(repr, SCALINGS))}")
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile <= 1:
        raise ValueError(f"quantile must be a number in (0, 1], got {quantile!r}")
    values = relevance_map(relevance)
    if scaling == "cubic":
        return heatmap_bound(values)
    if scaling == "max":
        return float(np.abs(values).max())
    return float(np.quantile(np.abs(values), quantile))


def _scaling_label(scaling: str, quantile: float) -> str:
    return {"cubic": "10 · cubic mean of |R|", "max": "max |R|",
            "quantile": f"{quantile:.4g} quantile of |R|"}[scaling]


def plot_heatmap(ax, relevance, bound: float | None = None, image=None, alpha: float = 0.2, title: str | None = None):
    """Draw a heatmap on a matplotlib axes as the thesis code does (``lrp.plot.heatmap``).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    relevance : tensor or array
        As for :func:`heatmap_rgb`.
    bound : float, optional
        Colour limit; default :func:`heatmap_bound`.
    image : array, optional
        ``[H, W, 3]`` RGB (uint8 or floats in [0, 1]) drawn *over* the heatmap with ``alpha``, as the
        code's later notebooks do (``ax.imshow(image, alpha=0.2)``); None: the heatmap alone.
    alpha : float
        Opacity of the image.
    title : str, optional
    """
    ax.imshow(heatmap_rgb(relevance, bound), interpolation="nearest")
    if image is not None:
        ax.imshow(image, alpha=alpha, interpolation="nearest")
    if title is not None:
        ax.set_title(title)
    ax.set_axis_off()
    return ax


def plot_scalings(relevance, axes, image=None, quantile: float = 0.99, alpha: float = 0.2) -> list:
    """The same relevance under each colour scaling of :data:`SCALINGS`, one axes each (thesis Fig. 2.3c).

    Parameters
    ----------
    relevance : tensor or array
        As for :func:`heatmap_rgb`.
    axes : sequence of three matplotlib axes
    image : array, optional
        Drawn over each heatmap (see :func:`plot_heatmap`).
    quantile : float
        The quantile of the ``"quantile"`` scaling.
    alpha : float
        Opacity of the image.

    Returns
    -------
    list of (str, float)
        Per panel, the scaling's label and its bound ``b``; each panel's title names them.
    """
    axes = list(np.ravel(axes))
    if len(axes) != len(SCALINGS):
        raise ValueError(f"plot_scalings draws {len(SCALINGS)} panels ({', '.join(SCALINGS)}); got {len(axes)} axes")
    drawn = []
    for ax, scaling in zip(axes, SCALINGS):
        bound = scaling_bound(relevance, scaling, quantile)
        label = _scaling_label(scaling, quantile)
        plot_heatmap(ax, relevance, bound, image, alpha, title=f"b = {label}\n= {bound:.3g}")
        drawn.append((label, bound))
    return drawn


# --------------------------------------------------------------------------------------------------
# Pixel-Flipping: images, masks, perturbation curves (thesis Figures 2.7, 3.4-3.9)


def image_rgb(x, mean=None, std=None) -> np.ndarray:
    """A normalized image ``[C, H, W]`` or ``[1, C, H, W]`` (tensor or array) back to uint8 RGB ``[H, W, C]``.

    The inverse of :func:`lrpkit.data.normalize`: ``x * std + mean`` in pixel units [0, 1], times
    255, rounded and clipped to [0, 255]. ``mean`` and ``std`` default to ImageNet's.
    """
    from .rules import IMAGENET_MEAN, IMAGENET_STD
    values = x.detach().to("cpu", torch.float64).numpy() if torch.is_tensor(x) else np.asarray(x, np.float64)
    if values.ndim == 4 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 3:
        raise ValueError(f"image must have shape [C, H, W] or [1, C, H, W], not {list(np.shape(x))}")
    mean = np.asarray(IMAGENET_MEAN if mean is None else mean, np.float64).reshape(-1, 1, 1)
    std = np.asarray(IMAGENET_STD if std is None else std, np.float64).reshape(-1, 1, 1)
    if len(mean) != values.shape[0] or len(std) != values.shape[0]:
        raise ValueError(f"mean and std have {len(mean)} and {len(std)} values for an image of "
                         f"{values.shape[0]} channels")
    pixels = np.clip(np.round((values * std + mean) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0))


def mask_overlay(rgb, mask, color=(255, 0, 0)) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` with the pixels where ``mask`` is non-zero painted ``color`` (red).

    Shows a damaged picture as the thesis's Figure 2.7(a) does: the region to be inpainted in red.
    """
    rgb = np.asarray(rgb)
    mask = np.asarray(mask).astype(bool)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 [H, W, 3], not {rgb.dtype} {list(rgb.shape)}")
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask has shape {list(mask.shape)} but the image is {list(rgb.shape[:2])}")
    out = rgb.copy()
    out[mask] = np.asarray(color, dtype=np.uint8)
    return out


def outline_mask(ax, mask, *, color="yellow", halo="black", linewidth: float = 1.0) -> None:
    """Outline the pixels of a mask on a matplotlib axes: a ``color`` line on a wider ``halo`` line.

    The outline :func:`lrpkit.synthetic.sample_figure` draws around the deciding object, for any
    panel (an image, a heatmap): the contour at 0.5 of the mask as floats, which follows the edges
    of its pixels, drawn in the axes' pixel coordinates (after an ``imshow`` of the same size).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    mask : tensor or array
        ``[H, W]``, bool or 0/1; an empty mask draws nothing.
    color, halo : colour
        The line and the wider line under it (None: no halo).
    linewidth : float
        Width of the line in points; the halo is 2.2 times as wide.
    """
    mask = np.asarray(mask.detach().cpu() if torch.is_tensor(mask) else mask).astype(np.float32)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape [H, W], not {list(mask.shape)}")
    if not mask.any():
        return
    if halo is not None:
        ax.contour(mask, levels=[0.5], colors=halo, linewidths=2.2 * linewidth)
    ax.contour(mask, levels=[0.5], colors=color, linewidths=linewidth)


def pf_curve(ax, scores, *, label: str = "Mean", color: str = "black", per_image: bool = True,
             fill: str | None = "wheat", alpha: float = 0.2, linewidth: float = 3.0) -> float:
    """Draw Pixel-Flipping curves as the thesis code does, and return the AUC that the legend shows.

    One light-gray line per image (``per_image``), the batch mean as a thick line in ``color``, and
    the area under the mean filled in ``fill`` (None: no fill). The legend reads
    ``"<label>, AUC=<value>"``; the AUC is the trapezoid area under the mean curve with x = step index
    (thesis §3.3, equal to the mean of the per-image AUCs of :func:`lrpkit.pf.auc`).

    Parameters
    ----------
    ax : matplotlib Axes
    scores : tensor or array
        ``[B, S]`` (or ``[S]``) scores, column 0 the unperturbed input (``PixelFlippingResult.scores``).
    label, color : str
        Legend label and colour of the mean curve.
    per_image : bool
        Draw every row in light gray under the mean (only for more than one row).
    fill : str or None
        Colour of the area under the mean.
    alpha, linewidth : float
        Transparency of the fill, width of the mean line.

    Returns
    -------
    float
        The AUC of the mean curve.
    """
    values = scores.detach().to("cpu", torch.float64).numpy() if torch.is_tensor(scores) else np.asarray(scores, np.float64)
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(f"scores must have shape [B, S] with S >= 2 steps, not {list(np.shape(scores))}")
    if not np.isfinite(values).all():
        raise ValueError("scores contain NaN or infinite values; no curve drawn")
    steps = np.arange(values.shape[1])
    mean = values.mean(axis=0)
    area = float(np.sum((mean[1:] + mean[:-1]) / 2.0))
    if per_image and values.shape[0] > 1:
        for row in values:
            ax.plot(steps, row, color="lightgrey", linewidth=1.0, zorder=1)
    ax.plot(steps, mean, color=color, linewidth=linewidth, alpha=0.9, zorder=3, label=f"{label}, AUC={area:.4g}")
    if fill is not None:
        ax.fill_between(steps, mean, color=fill, alpha=alpha, zorder=2)
    ax.set_xlabel("perturbation step")
    ax.set_ylabel("score (logit)")
    ax.set_xlim(0, values.shape[1] - 1)
    ax.legend(loc="best", fontsize="small")  # where it covers the fewest points: LRF curves peak late
    return area


#: Colour of perturbed pixels in :func:`perturbed_regions`: a light red of :data:`LRP_CMAP` (the thesis
#: code draws the boolean mask as a heatmap, which makes it a pale red).
PERTURBED_RGB = tuple(int(c) for c in LRP_CMAP(0.5 + 0.5 * 0.2, bytes=True)[:3])


def perturbed_regions(ax, mask, patch_size: int) -> None:
    """Draw the perturbed pixels in light red (:data:`PERTURBED_RGB`) on white with a white grid line every
    ``patch_size`` pixels.

    The fourth panel of the thesis code's image comparison (thesis Fig. 3.5a, "Perturbed Regions").
    """
    mask = np.asarray(mask.detach().cpu() if torch.is_tensor(mask) else mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape [H, W], not {list(mask.shape)}")
    shown = np.full(mask.shape + (3,), 255, dtype=np.uint8)
    shown[mask] = PERTURBED_RGB
    ax.imshow(shown, interpolation="nearest")
    height, width = mask.shape
    for edge in range(patch_size, max(height, width), patch_size):
        if edge < height:
            ax.axhline(edge - 0.5, color="white", linewidth=0.5)
        if edge < width:
            ax.axvline(edge - 0.5, color="white", linewidth=0.5)
    ax.set_xticks([])
    ax.set_yticks([])


def pf_comparison(rgb, perturbed_rgb, relevance, mask, patch_size: int, *, titles=None, size: float = 2.6):
    """The thesis code's Pixel-Flipping image comparison as one row of four panels.

    Original input; the perturbed input (e.g. the penultimate step); the heatmap
    (:func:`heatmap_rgb`); the perturbed regions (:func:`perturbed_regions`). Returns the Figure.
    """
    import matplotlib.pyplot as plt

    titles = titles or ("original input", "perturbed input\n(penultimate step)", "relevance", "perturbed regions")
    if len(titles) != 4:
        raise ValueError(f"titles must name the 4 panels, got {len(titles)}")
    fig, axes = plt.subplots(1, 4, figsize=(4 * size, size + 0.5))
    axes[0].imshow(rgb)
    axes[1].imshow(perturbed_rgb)
    axes[2].imshow(heatmap_rgb(relevance))
    perturbed_regions(axes[3], mask, patch_size)
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def flips_per_step(ax, flips) -> None:
    """Patches flipped in every step, one marker per step annotated with its count (thesis Fig. 3.8).

    ``flips`` is ``PixelFlippingResult.flips_per_step`` (or built from :func:`lrpkit.pf.flip_schedule`):
    0 for the unperturbed input, then the new patches of every step, then all patches for the gray step.
    """
    flips = [int(f) for f in flips]
    if not flips or any(f < 0 for f in flips):
        raise ValueError(f"flips must be a non-empty list of counts >= 0, got {flips!r}")
    steps = np.arange(len(flips))
    ax.plot(steps, flips, ".", markersize=8)
    for step, count in zip(steps, flips):
        ax.annotate(str(count), (step, count), textcoords="offset points", xytext=(0, 5), ha="center",
                    fontsize=7)
    ax.set_xticks(steps)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("perturbation step")
    ax.set_ylabel("patches flipped in the step")
    ax.set_title(f"total number of flips: {sum(flips)}")


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
