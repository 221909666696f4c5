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

__all__ = ["LRP_CMAP", "relevance_map", "heatmap_bound", "heatmap_rgb", "save_heatmap", "SCALINGS", "scaling_bound",
           "plot_heatmap", "plot_scalings"]


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
