"""Summaries of an experiment's results: mean AUC per setting and order, and the best settings.

The thesis reports, per composite and order, the AUC of the batch-mean score curve for every
setting (§4.1); since the trapezoid rule is linear, that is the mean over the images of the
per-image AUCs in the ``auc`` column. The best setting is the one with the lowest mean AUC for MoRF
(the score falls fastest) and the highest for LRF; the random order has no best setting (it does
not depend on the heatmap).
"""
from __future__ import annotations

from typing import List, Optional

__all__ = ["mean_auc", "best_settings", "BEST", "report_lines"]

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
    """A short text report of a results table: per order, the AUC range and the best setting."""
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
    return out
