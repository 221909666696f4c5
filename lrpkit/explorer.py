"""The grid explorer: precomputed heatmaps over one or two hyperparameters, browsed with sliders in a static page.

A reader understands a grid of heatmaps by moving through it. :func:`explorer` takes grids computed
beforehand -- a sweep of one hyperparameter, or a composite over two -- with the detector's verdict,
numbers and, where an experiment has them, a Pixel-Flipping curve per setting, and makes one Plotly
figure: a slider per hyperparameter, a menu to pick the grid, the heatmap and the curve of the chosen
setting. Everything is in the page; no kernel runs. The figure is HTML without Plotly's script, which
the site ships once (``book/_ext/lrpkit_plotly.py``); outside the book, :meth:`Explorer.page` writes a
standalone page with the script embedded.

Plotly's sliders each drive one thing; the explorer's two sliders pick one setting together. The
glue that does this is a few lines of JavaScript (:data:`GLUE`): on a slider or menu change it looks
up the precomputed frame of the chosen setting and shows it.

Heatmaps are drawn as the thesis code draws its grids (:func:`lrpkit.plotting.heatmap_rgb`, each
with its own colour limit, the image on top at ``alpha``) and embedded as JPEG. The embedded images
have a byte budget (``max_bytes``): a grid too large for it is shown with every heatmap shrunk by the
same factor until they fit, so that a page of the thesis's 16 × 16 grids stays light.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .plotting import heatmap_rgb

__all__ = ["CSS_CLASS", "MAX_BYTES", "Grid", "Explorer", "explorer"]

#: The default budget of an explorer's embedded heatmaps, in bytes of their data URIs together.
MAX_BYTES = 4_000_000

#: The class of an explorer's element; the site adds Plotly's script to pages that have one.
CSS_CLASS = "lrpkit-explorer"

#: On a slider or menu change: show the chosen setting's precomputed frame (image, curve, title).
GLUE = """
const gd = document.getElementById('{plot_id}');
const E = JSON.parse(document.getElementById('{plot_id}-frames').textContent);
const first = JSON.stringify({data: gd.data, layout: gd.layout});
let grid = 0;
function active(k) { return gd.layout.sliders.length > k ? (gd.layout.sliders[k].active || 0) : 0; }
function show() {
  const f = E.grids[grid].frames[active(0)][active(1)];
  Plotly.restyle(gd, {source: [f.src]}, [0]);
  if (f.curve) { Plotly.restyle(gd, {y: [f.curve]}, [1]); }
  Plotly.relayout(gd, {'title.text': f.title});
  gd.dataset.frame = [grid, active(0), active(1)].join('/');
}
function listen() {
  gd.on('plotly_sliderchange', show);
  gd.on('plotly_buttonclicked', function (e) { setTimeout(function () { choose(e.active); }, 0); });
}
function choose(g) {
  // another grid has other sliders: draw the figure again with them (Plotly cannot swap sliders in place)
  const fig = JSON.parse(first);
  grid = g;
  fig.layout.sliders = E.grids[g].sliders;
  fig.layout.updatemenus[0].active = g;
  Plotly.newPlot(gd, fig.data, fig.layout, {displaylogo: false, responsive: true}).then(function () { listen(); show(); });
}
listen();
gd.dataset.frame = '0/0/0';
"""


@dataclass
class Grid:
    """One grid of the explorer: heatmaps over one or two hyperparameters.

    Parameters
    ----------
    name : str
        What the menu shows, e.g. ``"LRP-Tutorial"`` or ``"zᴮ and LRP-ε"``.
    axes : sequence of (str, sequence of float)
        One or two hyperparameters: a label (``"γ"``) and its values.
    relevance : array or tensor
        ``[n₁, (n₂,) H, W]`` or with channels ``[n₁, (n₂,) C, H, W]`` (summed), one heatmap per setting.
    unstable : array of bool, optional
        The detector's verdict per setting, ``[n₁, (n₂)]``.
    numbers : mapping of str to array, optional
        Numbers shown with each setting, each ``[n₁, (n₂)]`` (e.g. ``{"AUC": ...}``).
    curves : array, optional
        A curve per setting, ``[n₁, (n₂,) steps]`` (e.g. the Pixel-Flipping scores), drawn over ``curve_x``.
    """

    name: str
    axes: Sequence[tuple[str, Sequence[float]]]
    relevance: Any
    unstable: Any = None
    numbers: Mapping[str, Any] = field(default_factory=dict)
    curves: Any = None

    def shape(self) -> tuple[int, int]:
        """(n₁, n₂): the settings per axis (n₂ = 1 for one axis)."""
        sizes = [len(values) for _, values in self.axes]
        return sizes[0], sizes[1] if len(sizes) == 2 else 1

    def check(self) -> None:
        """ValueError naming what does not fit the axes."""
        if len(self.axes) not in (1, 2) or any(len(v) == 0 for _, v in self.axes):
            raise ValueError(f"grid {self.name!r}: give one or two axes, each with values")
        n1, n2 = self.shape()
        lead = (n1,) if len(self.axes) == 1 else (n1, n2)
        relevance = _numpy(self.relevance)
        if relevance.shape[:len(lead)] != lead or relevance.ndim - len(lead) not in (2, 3):
            raise ValueError(f"grid {self.name!r}: relevance must be [{', '.join(map(str, lead))}, (C,) H, W], "
                             f"not {list(relevance.shape)}")
        for label, value in [("unstable", self.unstable), ("curves", self.curves), *self.numbers.items()]:
            if value is not None and _numpy(value).shape[:len(lead)] != lead:
                raise ValueError(f"grid {self.name!r}: {label} must start with the axes' sizes {list(lead)}, "
                                 f"not {list(_numpy(value).shape)}")


@dataclass(repr=False)
class Explorer:
    """An explorer's figure and frames; shows itself in a notebook and on a book page as HTML."""

    figure: Any
    grids: list[dict]
    div_id: str
    side: tuple[int, int] = (0, 0)     # (height, width) of the embedded heatmaps, in pixels
    shrunk: bool = False               # the heatmaps were shrunk to fit the byte budget

    @property
    def image_bytes(self) -> int:
        """Bytes of the embedded heatmaps (their data URIs) together."""
        return sum(len(f["src"]) for g in self.grids for row in g["frames"] for f in row)

    def html(self) -> str:
        """The figure's HTML without Plotly's script (the book's site ships it)."""
        return self._html(include_plotlyjs=False)

    def page(self) -> str:
        """A standalone HTML page, Plotly's script embedded: opens offline in any browser."""
        return self._html(include_plotlyjs=True, full_html=True)

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        settings = sum(len(row) for g in self.grids for row in g["frames"])
        return f"<grid explorer: {len(self.grids)} grid(s), {settings} settings>"

    def frame(self, grid: int, i: int, j: int = 0) -> dict:
        """The precomputed frame of a setting: ``src`` (the heatmap as a data URI), ``title``,
        ``numbers`` and ``curve``."""
        return self.grids[grid]["frames"][i][j]

    def _html(self, **options) -> str:
        frames = json.dumps({"grids": self.grids}, separators=(",", ":")).replace("</", "<\\/")
        plot = self.figure.to_html(div_id=self.div_id, post_script=GLUE, config={"displaylogo": False, "responsive": True},
                                   **{"full_html": False, **options})
        return (f'<div class="{CSS_CLASS}">'
                f'<script type="application/json" id="{self.div_id}-frames">{frames}</script>{plot}</div>')


def explorer(grids: Sequence[Grid], *, image: Any = None, alpha: float = 0.2, curve_x: Any = None,
             curve_axes: tuple[str, str] = ("", ""), title: str = "", quality: int = 85,
             max_bytes: int | None = MAX_BYTES, height: int = 500) -> Explorer:
    """An interactive figure of precomputed heatmaps: sliders pick the setting, a menu the grid.

    Parameters
    ----------
    grids : sequence of Grid
        The grids; a menu chooses between them when there are several.
    image : array, optional
        uint8 RGB ``[H, W, 3]`` drawn over every heatmap at ``alpha`` (as the thesis code's grids).
    curve_x : array, optional
        The x values of the grids' curves (e.g. the fraction of the image perturbed).
    curve_axes : (str, str)
        The curve panel's axis titles.
    title : str
        Shown before each setting's description (its values, the verdict, the numbers) in the title.
    quality : int
        JPEG quality of the embedded heatmaps.
    max_bytes : int, optional
        Budget of the embedded heatmaps (their data URIs together; default :data:`MAX_BYTES`). If
        they exceed it at full size, every heatmap is shrunk by the same factor (Lanczos) until they
        fit; ``explorer.side`` and ``explorer.shrunk`` say what was embedded. None: full size.
    height : int
        The figure's height in pixels; its width follows the page's.

    Raises
    ------
    ValueError
        No grids; a grid whose arrays do not fit its axes; curves without ``curve_x``; heatmaps that
        do not fit ``max_bytes`` even at 16 pixels.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not grids:
        raise ValueError("explorer() needs at least one grid")
    for grid in grids:
        grid.check()
        if grid.curves is not None and curve_x is None:
            raise ValueError(f"grid {grid.name!r} has curves: pass curve_x")
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
        raise ValueError(f"max_bytes must be a positive integer or None, not {max_bytes!r}")
    if image is not None:
        image = np.asarray(image, dtype=np.float64)
    frames = [_grid_frames(grid, image, alpha, title) for grid in grids]
    side, shrunk = _embed(frames, quality, max_bytes)
    curves = any(grid.curves is not None for grid in grids)
    first = frames[0]["frames"][0][0]
    figure = make_subplots(rows=1, cols=2 if curves else 1, column_widths=[0.5, 0.5] if curves else None,
                           horizontal_spacing=0.1)
    figure.add_trace(go.Image(source=first["src"], hoverinfo="skip"), row=1, col=1)
    if curves:
        figure.add_trace(go.Scatter(x=np.asarray(curve_x, dtype=float).tolist(), y=first["curve"], mode="lines",
                                    line={"color": "black"}, showlegend=False), row=1, col=2)
        figure.update_xaxes(title_text=curve_axes[0], row=1, col=2)
        figure.update_yaxes(title_text=curve_axes[1], row=1, col=2)
    figure.update_xaxes(visible=False, row=1, col=1)
    figure.update_yaxes(visible=False, row=1, col=1)
    menu = len(grids) > 1
    top, bottom = 100 if menu else 60, 20 + 80 * max(len(f["sliders"]) for f in frames)
    layout = {"title": {"text": first["title"], "font": {"size": 13}, "x": 0.02, "xanchor": "left",
                        "y": 1 - (top - 45) / height, "yref": "container", "yanchor": "middle"},
              "height": height, "autosize": True, "margin": {"t": top, "b": bottom, "l": 20, "r": 20},
              "sliders": frames[0]["sliders"]}
    if menu:   # above the title, in the top margin (in the plot area's coordinates)
        layout["updatemenus"] = [{"type": "dropdown", "active": 0, "x": 0, "xanchor": "left", "yanchor": "top",
                                  "y": 1 + (top - 8) / (height - top - bottom),
                                  "buttons": [{"label": g.name, "method": "skip", "args": []} for g in grids]}]
    figure.update_layout(**layout)
    # the element's id follows from the frames: the same grids give the same page
    digest = hashlib.sha256(json.dumps(frames, sort_keys=True).encode()).hexdigest()[:12]
    return Explorer(figure, frames, f"explorer-{digest}", side, shrunk)


def _embed(grids: list[dict], quality: int, max_bytes: int | None) -> tuple[tuple[int, int], bool]:
    """Replace every frame's ``rgb`` by ``src``, its JPEG data URI: at full size, or all shrunk by
    one factor until they fit ``max_bytes`` (a JPEG's size follows its pixels, so each try scales
    the side by the square root of budget / size, less 5 %). Returns (side, shrunk)."""
    frames = [f for g in grids for row in g["frames"] for f in row]
    smallest = min(min(f["rgb"].shape[:2]) for f in frames)
    scale = 1.0
    while True:
        sources = [_jpeg(f["rgb"], quality, scale) for f in frames]
        total = sum(map(len, sources))
        if max_bytes is None or total <= max_bytes:
            break
        scale *= 0.95 * math.sqrt(max_bytes / total)
        if smallest * scale < 16:
            raise ValueError(f"explorer: {len(frames)} heatmaps take {total:,} bytes and do not fit "
                             f"max_bytes={max_bytes:,} even at 16 px; raise max_bytes or show fewer settings")
    side = _scaled(frames[0]["rgb"].shape[:2], scale)
    for frame, source in zip(frames, sources):
        del frame["rgb"]
        frame["src"] = source
    return side, scale < 1.0


def _grid_frames(grid: Grid, image, alpha: float, title: str) -> dict:
    """A grid's sliders and its frames ``[n₁][n₂]`` of ready-to-show values (``rgb``: the heatmap
    drawn, uint8, until :func:`_embed` encodes it)."""
    n1, n2 = grid.shape()
    relevance = _numpy(grid.relevance).reshape(n1, n2, *_numpy(grid.relevance).shape[len(grid.axes):])
    unstable = None if grid.unstable is None else _numpy(grid.unstable).reshape(n1, n2)
    numbers = {k: _numpy(v).reshape(n1, n2) for k, v in grid.numbers.items()}
    curves = None if grid.curves is None else _numpy(grid.curves).reshape(n1, n2, -1)
    rows = []
    for i in range(n1):
        row = []
        for j in range(n2):
            setting = [f"{label} = {_value(values[k])}" for (label, values), k in zip(grid.axes, (i, j))]
            said = {k: float(v[i, j]) for k, v in numbers.items()}
            parts = [", ".join(setting)]
            if unstable is not None:
                parts.append("detector: " + ("unstable" if unstable[i, j] else "stable"))
            parts += [f"{k} = {v:.4g}" for k, v in said.items()]
            row.append({"rgb": _rgb(relevance[i, j], image, alpha),
                        "title": title + " · ".join(parts),
                        "numbers": said, "unstable": None if unstable is None else bool(unstable[i, j]),
                        "curve": None if curves is None else [float(c) for c in curves[i, j]]})
        rows.append(row)
    sliders = [{"active": 0, "currentvalue": {"prefix": f"{label} = "}, "pad": {"t": 30 + 80 * k},
                "steps": [{"label": _value(v), "method": "skip", "args": []} for v in values]}
               for k, (label, values) in enumerate(grid.axes)]
    return {"name": grid.name, "axes": [label for label, _ in grid.axes], "sliders": sliders, "frames": rows}


def _rgb(relevance, image, alpha: float) -> np.ndarray:
    """The heatmap as the thesis code colours it, the image on top at ``alpha``: uint8 ``[H, W, 3]``."""
    rgb = heatmap_rgb(relevance).astype(np.float64)
    if image is not None:
        if image.shape != rgb.shape:
            raise ValueError(f"image must be RGB {list(rgb.shape)} like the heatmaps, not {list(image.shape)}")
        rgb = (1 - alpha) * rgb + alpha * image
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _scaled(shape, scale: float) -> tuple[int, int]:
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _jpeg(rgb: np.ndarray, quality: int, scale: float = 1.0) -> str:
    """``rgb`` as a JPEG data URI, its sides multiplied by ``scale`` (Lanczos) if below 1."""
    from PIL import Image

    picture = Image.fromarray(rgb, "RGB")
    side = _scaled(rgb.shape[:2], scale)
    if side != rgb.shape[:2]:
        picture = picture.resize((side[1], side[0]), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _value(v) -> str:
    return f"{float(v):.3g}"


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
