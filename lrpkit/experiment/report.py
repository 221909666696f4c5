"""Summaries of an experiment's results: mean AUC per setting and order, and the best settings.

The thesis reports, per composite and order, the AUC of the batch-mean score curve for every
setting (§4.1); since the trapezoid rule is linear, that is the mean over the images of the
per-image AUCs in the ``auc`` column. The best setting is the one with the lowest mean AUC for MoRF
(the score falls fastest) and the highest for LRF; the random order has no best setting (it does
not depend on the heatmap).
"""
from __future__ import annotations

from typing import List, Optional

__all__ = ["mean_auc", "mean_curves", "best_settings", "BEST", "report_lines", "axes_of", "auc_grid", "log_position", "nearest_setting",
           "relevance_extremes", "experiments_table"]

#: How each order's best setting is chosen: ``"min"``, ``"max"`` or None (no best).
BEST = {"morf": "min", "lrf": "max", "random": None}


def _axes(results) -> List[str]:
    """The two axis columns: they follow ``j`` (:data:`lrpkit.experiment.store.COLUMNS`)."""
    position = list(results.columns).index("j")
    return list(results.columns[position + 1:position + 3])


def mean_auc(results):
    """Mean AUC over the images for every setting and order.

    Parameters
    ----------
    results : pandas.DataFrame
        A results table (:func:`~lrpkit.experiment.store.read_results`).

    Returns
    -------
    pandas.DataFrame
        Columns ``order``, ``setting``, ``i``, ``j``, the two axis columns, ``auc`` (the mean),
        ``auc_std`` (over the images) and ``images``.
    """
    axes = _axes(results)
    keys = ["order", "setting", "i", "j", *axes]
    grouped = results.groupby(keys, sort=True)["auc"]
    table = grouped.agg(auc="mean", auc_std="std", images="count").reset_index()
    order_rank = {o: k for k, o in enumerate(BEST)}
    return table.sort_values(["order", "setting"], key=lambda c: c.map(order_rank) if c.name == "order" else c,
                             ignore_index=True)


def mean_curves(results, order: str):
    """The mean curve (``scores``) over the images of every setting of ``order``, as a grid.

    Returns
    -------
    numpy.ndarray
        ``[n1, n2, steps]``: ``[i, j]`` is the mean over the images of the curves at setting ``(i, j)``.

    Raises
    ------
    ValueError
        The table has no rows of ``order``, or not every setting of the grid.
    """
    import numpy as np

    part = results[results["order"] == order]
    if part.empty:
        raise ValueError(f"the results hold no rows of order {order!r} (they have "
                         f"{sorted(results['order'].unique())})")
    n1, n2 = int(results["i"].max()) + 1, int(results["j"].max()) + 1
    curves = np.full((n1, n2, len(part["scores"].iloc[0])), np.nan)
    for (i, j), rows in part.groupby(["i", "j"]):
        curves[i, j] = np.mean(np.stack(rows["scores"].to_numpy()), axis=0)
    if np.isnan(curves).any():
        raise ValueError(f"order {order!r}: not every setting of the {n1} x {n2} grid has curves")
    return curves


def best_settings(results):
    """The best setting of every order with a direction (MoRF: lowest mean AUC, LRF: highest).

    Returns
    -------
    pandas.DataFrame
        One row per order of :data:`BEST` with a direction: ``order``, ``best`` (``"min"``/``"max"``) and
        the columns of :func:`mean_auc` for the chosen setting.
    """
    import pandas as pd

    means = mean_auc(results)
    rows = []
    for order, direction in BEST.items():
        part = means[means["order"] == order]
        if direction is None or part.empty:
            continue
        chosen = part.loc[part["auc"].idxmin() if direction == "min" else part["auc"].idxmax()]
        rows.append({"order": order, "best": direction, **chosen.drop("order").to_dict()})
    return pd.DataFrame(rows)


def report_lines(results, metadata: Optional[dict] = None) -> List[str]:
    """A short text report of a results table: per order, the AUC range and the best setting (and
    the same for each localisation column, when the images came with a ground truth)."""
    import numpy as np

    axes = _axes(results)
    means = mean_auc(results)
    out = []
    if metadata:
        weights = metadata.get("weights") or {}
        out.append(f"experiment {metadata.get('experiment')!r}: {results['composite'].iloc[0]} "
                   f"({results['variant'].iloc[0]}), weights {weights.get('source')} "
                   f"(state sha256 {str(weights.get('state_sha256'))[:12]}), lrpkit "
                   f"{(metadata.get('lrpkit') or {}).get('version')}")
    out.append(f"{results['image'].nunique()} images, {results['setting'].nunique()} settings, orders "
               f"{', '.join(results['order'].unique())}")
    best = {row["order"]: row for _, row in best_settings(results).iterrows()}
    for order in results["order"].unique():
        part = means[means["order"] == order]
        line = f"{order}: mean AUC {part['auc'].min():.6g} .. {part['auc'].max():.6g}"
        if order in best:
            row = best[order]
            line += (f"; best ({'lowest' if row['best'] == 'min' else 'highest'}) at setting {int(row['setting'])}: "
                     f"{axes[0]} = {row[axes[0]]:.4g}, {axes[1]} = {row[axes[1]]:.4g}, AUC {row['auc']:.6g}")
        elif BEST.get(order, "x") is None:
            line += "; no best setting (the random order ignores the heatmap)"
        out.append(line)
    for column in ("loc_mass", "loc_rank", "loc_pointing"):     # images with a ground truth (images.synthetic)
        if column in results.columns:
            from .agreement import LOCALISATION_NAMES, optimum, score_grid

            first, second, z = score_grid(results, column)
            line = f"{column} ({LOCALISATION_NAMES[column]}): mean {np.nanmin(z):.4g} .. {np.nanmax(z):.4g}"
            if np.nanmax(z) - np.nanmin(z) > 1e-12:
                best = optimum(first, second, z, "max")
                line += f"; best (highest) at {axes[0]} = {best[0]:.4g}, {axes[1]} = {best[1]:.4g}, {best[2]:.4g}"
            else:
                line += "; the same at every setting"
            out.append(line)
    out += _uncertainty_lines(results)
    return out


def _uncertainty_lines(results) -> List[str]:
    """Per grader, how sure the images make its best setting; per pair of graders, their rank agreement
    (:mod:`lrpkit.experiment.uncertainty`, 1000 resamples, seed 0). A table the bootstrap cannot take
    (a partial one: not every image at every setting) gets a line that says why."""
    import numpy as np

    from .uncertainty import _summary

    out = []
    try:
        sure, pairs = _summary(results, n_boot=1000, level=0.95, seed=0)
        out += [one.text() for one in sure]
        words = {"yes": "agree", "no": "disagree", "undecided": "undecided", "no ranking": "no ranking"}
        for _, row in pairs.iterrows():
            tau = "nan" if np.isnan(row["tau"]) else f"{row['tau']:.2f} [{row['tau_low']:.2f}, {row['tau_high']:.2f}]"
            out.append(f"τ({row['first']}, {row['second']}) = {tau}: {words[row['agrees']]}")
    except ValueError as error:
        out.append(f"no bootstrap of the best settings: {error}")
    return out


# --------------------------------------------------------------------------------------------------
# tables for figures (thesis Figures 3.2, 4.1-4.6, Table 4.1)


def axes_of(results) -> List[str]:
    """The names of the two axis columns of a results table (e.g. ``["gamma", "epsilon"]``)."""
    return _axes(results)


def auc_grid(results, order: str):
    """Mean AUC of ``order`` over the grid, as the matrix a contour plot draws.

    Returns
    -------
    first, second : numpy.ndarray
        The values of the first and second axis (sorted as in the experiment).
    z : numpy.ndarray
        ``z[i, j]``: mean AUC over the images at ``first[i]``, ``second[j]``.

    Raises
    ------
    ValueError
        The table has no rows of ``order``, or not every setting of the grid.
    """
    import numpy as np

    means = mean_auc(results)
    part = means[means["order"] == order]
    if part.empty:
        raise ValueError(f"the results hold no rows of order {order!r} (they have "
                         f"{sorted(results['order'].unique())})")
    a, b = _axes(results)
    first = np.array(sorted(part[a].unique()))
    second = np.array(sorted(part[b].unique()))
    z = np.full((len(first), len(second)), np.nan)
    z[np.searchsorted(first, part[a]), np.searchsorted(second, part[b])] = part["auc"].to_numpy()
    if np.isnan(z).any():
        raise ValueError(f"order {order!r}: {int(np.isnan(z).sum())} of {z.size} settings of the grid have no rows")
    return first, second, z


def log_position(values, zero_gap: float = 1.0):
    """Positions of axis values on a log axis that also shows 0: ``log10(v)`` for ``v > 0``, and 0
    ``zero_gap`` decades below the smallest positive value.

    The thesis's grids are ``{0} ∪`` log-spaced values; a plain log axis cannot show 0 and a linear
    one crowds 11 of its 16 values into the first 4 % of the axis (as the thesis's Figures 4.1 and 4.2 do).
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    if (values < 0).any():
        raise ValueError(f"log_position: values must be >= 0, got {values[values < 0].tolist()}")
    positive = values[values > 0]
    low = np.log10(positive.min()) if positive.size else 0.0
    with np.errstate(divide="ignore"):
        return np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), low - zero_gap)


def nearest_setting(results, first: float, second: float) -> dict:
    """The setting of the table nearest to ``(first, second)`` on the log axes (0 is its own point).

    Used to show the thesis's setting 140 (γ = 0.01, 0.13895 on its 16 × 16 grid) on a coarser grid.

    Returns
    -------
    dict
        ``setting``, ``i``, ``j``, the two axis values and ``exact`` (whether both values are on the grid).
    """
    import numpy as np

    a, b = _axes(results)
    grid = results[["setting", "i", "j", a, b]].drop_duplicates("setting").reset_index(drop=True)
    fa, fb = sorted(grid[a].unique()), sorted(grid[b].unique())
    pa = log_position(np.r_[fa, first])
    pb = log_position(np.r_[fb, second])
    ia = int(np.argmin(np.abs(pa[:-1] - pa[-1])))
    ib = int(np.argmin(np.abs(pb[:-1] - pb[-1])))
    row = grid[(grid[a] == fa[ia]) & (grid[b] == fb[ib])].iloc[0]
    return {"setting": int(row["setting"]), "i": int(row["i"]), "j": int(row["j"]), a: float(row[a]),
            b: float(row[b]), "exact": bool(np.isclose(fa[ia], first, rtol=1e-4) and np.isclose(fb[ib], second, rtol=1e-4))}


def relevance_extremes(results):
    """Minimum and maximum relevance of every heatmap of an experiment (thesis Figure 3.2).

    One row per image and setting (the relevance does not depend on the order): ``composite``,
    ``setting``, ``image``, the axis values, ``relevance_min`` and ``relevance_max``.
    """
    a, b = _axes(results)
    columns = ["composite", "setting", "image", a, b, "relevance_min", "relevance_max"]
    return results[columns].drop_duplicates(["setting", "image"]).sort_values(["setting", "image"], ignore_index=True)


def experiments_table(configs):
    """Thesis Table 4.1 from experiment configs: one row per composite and Pixel-Flipping order.

    Parameters
    ----------
    configs : sequence of Config
        E.g. the configs of the results directories (:func:`lrpkit.experiment.load_config`).

    Returns
    -------
    pandas.DataFrame
        ``LRP composite``, ``PF order``, ``Grid`` (the two axes and their number of values), ``Images``
        (the image set or validation class, and how many), ``Pixel-Flipping`` (patch size, mode, schedule).
    """
    import pandas as pd

    from .grid import FAMILIES

    names = {"morf": "MoRF", "lrf": "LRF", "random": "Random"}
    rows = []
    for config in configs:
        family = FAMILIES[config.family]
        first, second = config.grid
        axes = config.axes
        images = config.data["images"]
        source = (f"image set {images['set']}" if images["set"] is not None
                  else f"ILSVRC-2012 val, class {images['class']}")
        count = f", first {images['count']}" if images["count"] is not None else ""
        p = config.data["pf"]
        for order in config.orders:
            rows.append({
                "LRP composite": family.name + (" (thesis code)" if config.variant == "thesis-code" else ""),
                "PF order": names.get(order, order),
                "Grid": f"{axes[0].label()}: {len(first)} values × {axes[1].label()}: {len(second)} values",
                "Images": f"{source}{count}, {images['size']} px",
                "Pixel-Flipping": f"{p['mode']}, {p['patch_size']}×{p['patch_size']} patches, schedule {p['schedule']}",
            })
    return pd.DataFrame(rows)


def computation(configs) -> str:
    """Which computation the experiments of ``configs`` ran, in words (the figures' visible tag,
    :func:`lrpkit.provenance.computation`): their composites' mathematics and Pixel-Flipping's
    ``thesis_compat``."""
    from ..provenance import computation as words
    from .grid import build_composite

    configs = list(configs)
    found = []
    for config in configs:
        comp, (first, second) = config.data["composite"], config.grid
        found.append(build_composite(comp["family"], comp["variant"], float(first[0]), float(second[0]),
                                     heuristic=comp["heuristic"], maxpool=comp["maxpool"]))
    compat = sorted({_compat(config.data["pf"]["thesis_compat"]) for config in configs}, key=str)
    if len(compat) == 1:
        return words(*found, pixel_flipping=compat[0])
    return words(*found) + "; " + " / ".join(words(pixel_flipping=c) for c in compat)


def _compat(value):
    """A config's ``thesis_compat`` (True, False or a list of defect names) as a hashable value."""
    return value if isinstance(value, bool) else frozenset(value)
