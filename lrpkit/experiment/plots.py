"""Figures of an experiment's results: contour plots over the grid, AUC distributions, relevance
extremes and score curves (thesis Figures 3.2, 4.1, 4.2, 4.6, B.2), and contours of the ground-truth scores beside them.

The thesis drew its contour plots with ``tricontourf`` on linear axes, default levels, and no
mark at the optimum (its Figures 4.1 and 4.2). Here both axes are logarithmic with the value 0
shown one decade below the smallest positive value (the grids are ``{0} ∪`` log-spaced values), the
measured settings are dotted, the best setting is starred, and the title says which way is better.
:func:`grader_contours` draws one such plot per grader (:mod:`~lrpkit.experiment.uncertainty`) and
outlines the settings that the images do not tell apart from the starred one.

Every function draws into matplotlib axes it is given (or a new figure) and returns what it marked,
so that a notebook can state and check the numbers it shows.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .agreement import DIRECTION, LOCALISATION_NAMES, optimum, score_grid
from .grid import FAMILIES
from .report import BEST, auc_grid, axes_of, best_settings, log_position, mean_auc, relevance_extremes

__all__ = ["contour", "grader_contours", "auc_distributions", "relevance_extremes_plot", "score_curves", "axis_label", "ORDER_NAMES"]

#: How the figures name the orders.
ORDER_NAMES = {"morf": "MoRF", "lrf": "LRF", "random": "Random"}
_DIRECTION = {"min": "lower is better", "max": "higher is better", None: "no best: the order ignores the heatmap"}


def axis_label(results, which: int) -> str:
    """``"γ (layers 1-16)"`` etc. for axis 0 or 1 of a results table, from its family and variant."""
    family = FAMILIES[results["composite"].iloc[0]]
    return family.axes[results["variant"].iloc[0]][which].label()


def _log_ticks(values: np.ndarray, positions: np.ndarray) -> Tuple[list, list]:
    ticks, labels = [], []
    if (values == 0).any():
        ticks.append(float(positions[values == 0][0]))
        labels.append("0")
    positive = positions[values > 0]
    if positive.size:
        for k in range(int(np.ceil(positive.min() - 1e-9)), int(np.floor(positive.max() + 1e-9)) + 1):
            ticks.append(float(k))
            labels.append("1" if k == 0 else f"$10^{{{k}}}$")
        if len(ticks) - (values == 0).any() < 2:      # a narrow range: label its ends
            for p in (positive.min(), positive.max()):
                if not any(abs(p - t) < 0.05 for t in ticks):
                    ticks.append(float(p))
                    labels.append(f"{10 ** p:.2g}")
    return ticks, labels


def contour(results, order: Optional[str] = None, *, column: str = "auc", ax=None, title: Optional[str] = None,
            levels: int = 12, cmap: str = "viridis",
            region: Optional[Tuple[Tuple[float, float], Tuple[float, float]]] = None,
            region_label: str = "thesis's optimum", zero_gap: float = 1.0,
            better_region: Optional[np.ndarray] = None,
            better_region_label: str = "not significantly worse than the best (95 %)") -> Dict[str, Any]:
    """Filled contours of the mean AUC of ``order`` over the grid (thesis Figures 4.1, 4.2), of
    the mean of a localisation column (``loc_mass``, ``loc_rank``, ``loc_pointing``), or of another
    grader's column (``srg``, ``road_auc`` with its order, ``road_srg``:
    :data:`lrpkit.experiment.uncertainty.GRADERS`).

    Parameters
    ----------
    results : pandas.DataFrame
        A results table (:func:`~lrpkit.experiment.store.read_results`).
    order : str
        ``"morf"``, ``"lrf"`` or ``"random"`` (for ``column="auc"``).
    column : str
        ``"auc"``, or a localisation column of :data:`lrpkit.experiment.agreement.LOCALISATION`
        (higher is better; ``order`` is not needed: the value is the heatmap's), or the column of a
        grader of :data:`~lrpkit.experiment.uncertainty.GRADERS` (``road_auc`` needs ``order``; its
        title, colour bar and better end are the grader's).
    ax : matplotlib axes, optional
    title : str, optional
        Default: the order's name and which way is better.
    levels : int
        Number of contour levels.
    region : ((x0, x1), (y0, y1)), optional
        A rectangle to outline (dashed), e.g. the optimum the thesis reports.
    zero_gap : float
        Decades between the position of 0 and the smallest positive value on each axis.
    better_region : numpy.ndarray, optional
        A bool grid shaped like the mean's (``[first axis, second axis]``), e.g.
        :attr:`OptimumUncertainty.region <lrpkit.experiment.uncertainty.OptimumUncertainty>`: its
        settings are outlined (a dashed black line on white, half way to the next setting).
    better_region_label : str
        The outline's legend entry.

    Returns
    -------
    dict
        ``best`` (the starred setting's row of :func:`~lrpkit.experiment.report.best_settings`, or
        None for the random order; for another column ``{axis: value, ..., column: mean}``),
        ``constant`` (whether the grid's mean is the same everywhere), ``min`` and ``max`` of the
        mean, and ``ax``; with ``better_region`` also ``better_region`` (how many settings it outlines).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.2))
    if column == "auc":
        first, second, z = auc_grid(results, order)
        direction, bar_label = BEST.get(order), "mean AUC (logit × step)"
        name = ORDER_NAMES.get(order, order)
    elif column in DIRECTION:
        first, second, z = score_grid(results, column)
        direction, bar_label = DIRECTION[column], f"mean {LOCALISATION_NAMES[column]}"
        name = LOCALISATION_NAMES[column]
    else:
        scorer = _grader_of(column, order)
        first, second, z = score_grid(results, column, scorer.order)
        direction, bar_label, name = scorer.best, f"mean {scorer.label}", scorer.label
    if better_region is not None:
        better_region = np.asarray(better_region, dtype=bool)
        if better_region.shape != z.shape:
            raise ValueError(f"better_region has shape {list(better_region.shape)}, but the grid of {column!r} is "
                             f"{list(z.shape)}")
    px, py = log_position(first, zero_gap), log_position(second, zero_gap)
    zmin, zmax = float(np.nanmin(z)), float(np.nanmax(z))
    constant = bool(zmax - zmin <= 1e-9 * max(abs(zmax), 1.0))
    if constant:   # one band (contourf finds no level inside a constant field)
        half = max(abs(zmax) * 1e-6, 1e-9)
        filled = ax.contourf(px, py, z.T, levels=[zmin - half, zmax + half], cmap=cmap)
    else:
        filled = ax.contourf(px, py, z.T, levels=levels, cmap=cmap)
    colorbar = ax.figure.colorbar(filled, ax=ax)
    colorbar.set_label(bar_label)
    if constant:
        colorbar.set_ticks([zmin])
        colorbar.set_ticklabels([f"{zmin:.4g}"])
    gx, gy = np.meshgrid(px, py, indexing="ij")
    ax.plot(gx.ravel(), gy.ravel(), ".", color="white", markeredgecolor="0.3", markeredgewidth=0.4, markersize=4,
            label="settings measured")
    best = None
    if direction is not None and not constant:
        a, b = axes_of(results)
        if column == "auc":
            rows = best_settings(results)
            best = rows[rows["order"] == order].iloc[0].to_dict()
        else:
            found = optimum(first, second, z, direction)
            best = {a: found[0], b: found[1], column: found[2]}
        bx = log_position(np.r_[first, best[a]], zero_gap)[-1]
        by = log_position(np.r_[second, best[b]], zero_gap)[-1]
        ax.plot([bx], [by], marker="*", markersize=16, color="white", markeredgecolor="black",
                linestyle="none", label=f"best: {best[a]:.3g}, {best[b]:.3g}")
    if better_region is not None and better_region.any():
        _outline(ax, px, py, better_region, better_region_label)
    if region is not None:
        (x0, x1), (y0, y1) = region
        rx = log_position(np.r_[first, x0, x1], zero_gap)[-2:]
        ry = log_position(np.r_[second, y0, y1], zero_gap)[-2:]
        ax.add_patch(Rectangle((rx[0], ry[0]), rx[1] - rx[0], ry[1] - ry[0], fill=False, linestyle="--",
                               edgecolor="red", linewidth=1.5, label=region_label))
    pad = 0.25   # decades around the grid, so that a star on its edge is whole
    xs, ys = [px.min(), px.max()], [py.min(), py.max()]
    if region is not None:
        xs += list(rx)
        ys += list(ry)
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_ylim(min(ys) - pad, max(ys) + pad)
    xt, xl = _log_ticks(first, px)
    yt, yl = _log_ticks(second, py)
    ax.set_xticks(xt, xl)
    ax.set_yticks(yt, yl)
    ax.set_xlabel(axis_label(results, 0))
    ax.set_ylabel(axis_label(results, 1))
    ax.set_title(title if title is not None else f"{name}: {_DIRECTION[direction]}"
                 + (" (constant)" if constant and direction is None else ""), fontsize=10)
    # below the plot, off the data (a star or a dot under the legend would be hidden)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=7, frameon=False)
    marked = {"best": best, "constant": constant, "min": zmin, "max": zmax, "ax": ax}
    if better_region is not None:
        marked["better_region"] = int(better_region.sum())
    return marked


def grader_contours(results, graders: Optional[Sequence[Any]] = None, *, n_boot: int = 1000, level: float = 0.95,
                    seed: int = 0, axes=None) -> Dict[str, Tuple[Dict[str, Any], Any]]:
    """One contour per grader, side by side (at most 3 a row), each with its best setting starred and
    the settings not significantly worse than it outlined (:func:`~lrpkit.experiment.uncertainty.optimum_uncertainty`).

    Parameters
    ----------
    results : pandas.DataFrame
    graders : sequence of Grader or str, optional
        Default: :func:`~lrpkit.experiment.uncertainty.graders_in` ``(results)``.
    n_boot, level, seed
        As :func:`~lrpkit.experiment.uncertainty.optimum_uncertainty`.
    axes : sequence of matplotlib axes, optional
        One per grader (default: a new figure).

    Returns
    -------
    dict
        Grader name -> (what :func:`contour` marked, its
        :class:`~lrpkit.experiment.uncertainty.OptimumUncertainty`).

    Raises
    ------
    ValueError
        No grader, fewer ``axes`` than graders, or what :func:`~lrpkit.experiment.uncertainty.optimum_uncertainty` raises.
    """
    import matplotlib.pyplot as plt

    from .uncertainty import _find, graders_in, optimum_uncertainty

    chosen = graders_in(results) if graders is None else tuple(map(_find, graders))
    if not chosen:
        raise ValueError(f"the results hold no grader's column; they have {', '.join(map(str, results.columns))}")
    if axes is None:
        columns = min(3, len(chosen))
        rows = -(-len(chosen) // columns)
        fig, grid = plt.subplots(rows, columns, figsize=(6.2 * columns, 5.6 * rows), squeeze=False,
                                 layout="constrained")
        axes = list(grid.ravel())
        for extra in axes[len(chosen):]:
            extra.set_visible(False)
    else:
        axes = list(np.ravel(axes))
        if len(axes) < len(chosen):
            raise ValueError(f"{len(chosen)} graders ({', '.join(g.name for g in chosen)}) need as many axes, "
                             f"got {len(axes)}")
    out = {}
    for g, ax in zip(chosen, axes):
        sure = optimum_uncertainty(results, g, n_boot=n_boot, level=level, seed=seed)
        title = f"{g.label}: {_DIRECTION[g.best]}"
        if not sure.constant:
            title += (f"\nbest in {100 * sure.best_share:.0f} % of {n_boot} resamples; "
                      f"{sure.n_region} of {sure.n_settings} within")
        marked = contour(results, g.order, column=g.column, ax=ax, title=title, better_region=sure.region,
                         better_region_label=f"not significantly worse than the best ({100 * level:g} %)")
        star = marked["best"]
        a, b = sure.first_axis, sure.second_axis
        if (star is None) != sure.constant or (star is not None and (star[a], star[b]) != (sure.best_first,
                                                                                           sure.best_second)):
            raise RuntimeError(f"grader {g.name!r}: the contour stars {None if star is None else (star[a], star[b])} "
                               f"but the best setting is {(sure.best_first, sure.best_second)}")
        out[g.name] = (marked, sure)
    return out


def _grader_of(column: str, order: Optional[str]):
    """The grader of :data:`~lrpkit.experiment.uncertainty.GRADERS` that scores ``column`` (in ``order``)."""
    from .uncertainty import GRADERS

    mine = [g for g in GRADERS if g.column == column]
    if not mine:
        known = sorted({"auc", *DIRECTION, *(g.column for g in GRADERS)})
        raise ValueError(f"contour cannot draw column {column!r}; choose one of {', '.join(known)}")
    if mine[0].order is None:
        return mine[0]
    for g in mine:
        if g.order == order:
            return g
    raise ValueError(f"column {column!r} differs between orders: give the order "
                     f"({' or '.join(g.order for g in mine)}), got {order!r}")


def _outline(ax, px: np.ndarray, py: np.ndarray, inside: np.ndarray, label: str) -> None:
    """Outline the settings where ``inside`` (``[len(px), len(py)]`` bool) is True: the 0.5 contour of
    the grid padded with False settings, so that the line closes around settings on the edge."""
    import matplotlib.patheffects as effects

    def padded(p):
        step = 0.4     # decades beyond the edge: the line passes 0.2 outside the edge settings, within the 0.25 margin
        return np.r_[p[0] - step, p, p[-1] + step]

    grid = np.zeros((len(px) + 2, len(py) + 2))
    grid[1:-1, 1:-1] = inside
    for color, width, style in (("white", 3.0, "-"), ("black", 1.4, "--")):     # dashed black on white: seen on any colour
        ax.contour(padded(px), padded(py), grid.T, levels=[0.5], colors=color, linewidths=width, linestyles=style)
    handle = ax.plot([], [], color="black", linewidth=1.4, linestyle="--", label=label)[0]   # the legend's entry
    handle.set_path_effects([effects.withStroke(linewidth=3.0, foreground="white")])


def auc_distributions(tables: Mapping[str, Any], *, orders: Sequence[str] = ("morf", "lrf", "random")):
    """Distribution of the mean AUC over the grid's settings, per composite and order (Figure 4.6).

    Parameters
    ----------
    tables : mapping
        Composite name -> results table.

    Returns
    -------
    (figure, pandas.DataFrame)
        The figure (one panel per order: each panel has its own AUC scale) and the plotted data
        (``composite``, ``order``, ``setting``, ``auc``).
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    frames = []
    for name, results in tables.items():
        means = mean_auc(results)
        frames.append(means.assign(composite=name)[["composite", "order", "setting", "auc"]])
    data = pd.concat(frames, ignore_index=True)
    orders = [o for o in orders if o in set(data["order"])]
    fig, axes = plt.subplots(1, len(orders), figsize=(3.6 * len(orders), 3.6), squeeze=False)
    for ax, order in zip(axes[0], orders):
        part = data[data["order"] == order]
        sns.boxplot(data=part, x="composite", y="auc", ax=ax, color="0.9", fliersize=0)
        sns.stripplot(data=part, x="composite", y="auc", hue="composite", ax=ax, size=3, jitter=0.25,
                      legend=False)
        direction = BEST.get(order)
        ax.set_title(f"{ORDER_NAMES.get(order, order)}: {_DIRECTION[direction].split(':')[0]}", fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("mean AUC of a setting (logit × step)")
        ax.ticklabel_format(axis="y", useOffset=False)   # no offset: a 6e-9 spread must not look large
        low, high = part["auc"].min(), part["auc"].max()
        if high - low <= 1e-6 * max(abs(high), 1e-30):   # a flat panel (the random order): show its value
            ax.set_ylim(low - 0.05 * abs(low) - 1e-12, high + 0.05 * abs(high) + 1e-12)
    fig.tight_layout()
    return fig, data


def relevance_extremes_plot(tables: Mapping[str, Any]):
    """Minimum and maximum relevance of every heatmap against the setting number (Figure 3.2).

    One panel per composite; each dot is one heatmap (one image at one setting); the y axis is
    symmetric-logarithmic (linear near 0, within the decade below the 5th percentile of the magnitudes).

    Returns
    -------
    (figure, pandas.DataFrame)
        The figure and the plotted rows (:func:`~lrpkit.experiment.report.relevance_extremes`).
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    frames = []
    fig, axes = plt.subplots(1, len(tables), figsize=(5.0 * len(tables), 3.6), squeeze=False)
    for ax, (name, results) in zip(axes[0], tables.items()):
        rows = relevance_extremes(results).assign(name=name)
        frames.append(rows)
        ax.plot(rows["setting"], rows["relevance_max"], ".", color="tab:red", markersize=4, label="maximum")
        ax.plot(rows["setting"], rows["relevance_min"], ".", color="tab:blue", markersize=4, label="minimum")
        ax.axhline(0, color="0.5", linewidth=0.8)
        magnitudes = np.abs(rows[["relevance_min", "relevance_max"]].to_numpy()).ravel()
        magnitudes = magnitudes[magnitudes > 0]
        linthresh = 10.0 ** np.floor(np.log10(np.percentile(magnitudes, 5))) if magnitudes.size else 1.0
        ax.set_yscale("symlog", linthresh=linthresh)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("setting number (first-axis index × second-axis size + second-axis index)")
        ax.set_ylabel("relevance of one pixel")
        top = float(np.abs(rows[["relevance_min", "relevance_max"]].to_numpy()).max()) if len(rows) else 1.0
        ax.set_ylim(-2 * top, 2 * top)    # room above the highest and below the lowest point
        ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    return fig, pd.concat(frames, ignore_index=True)


def score_curves(scores, *, ax=None, auc: Optional[float] = None, title: Optional[str] = None):
    """Score curves of several images and their mean, with the AUC of the mean (thesis Figure B.2c).

    Parameters
    ----------
    scores : array-like
        ``[images, steps]``: the target's score after every step (first unperturbed, last gray).
    auc : float, optional
        Shown in the legend; default the trapezoid area under the mean curve with x in steps.

    Returns
    -------
    float
        The AUC shown.
    """
    import matplotlib.pyplot as plt

    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be [images, steps] with at least 2 steps, got shape {list(scores.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    steps = np.arange(scores.shape[1])
    mean = scores.mean(axis=0)
    if auc is None:
        auc = float(np.sum((mean[1:] + mean[:-1]) / 2))
    for curve in scores:
        ax.plot(steps, curve, color="lightgrey", linewidth=1)
    ax.plot(steps, mean, color="black", linewidth=3, alpha=0.9, label="mean")
    ax.fill_between(steps, mean, color="wheat", alpha=0.4, label=f"AUC = {auc:.4g}")
    ax.set_xlabel("perturbation step (0: unperturbed, last: gray)")
    ax.set_ylabel("score of the explained class (logit)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    return auc
