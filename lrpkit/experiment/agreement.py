"""Does the grader agree with the truth? Two scores of a grid's settings, ranked against each other.

The thesis grades each LRP setting by the area under its Pixel-Flipping curve (MoRF: lower is
better, LRF: higher is better). Where the images come with the pixels that decide their class
(``images.synthetic``), the same settings also have a ground-truth score: how much of the positive
relevance falls on the deciding object (``loc_mass``, relevance mass accuracy), how many of the
most relevant pixels do (``loc_rank``), whether the most relevant pixel does (``loc_pointing``),
all higher-is-better (Arras et al. 2022).

Two questions are answered per Pixel-Flipping order and localisation metric:

- **where the optima lie** (:func:`optimum`): the setting with the best mean over the images of each
  score; and
- **whether the two rankings agree** (:func:`rank_agreement`): Kendall's τ-b between the settings'
  mean AUC and their mean localisation score, with a percentile bootstrap interval over the images
  (images drawn with replacement, the means and τ recomputed each time). For LRF, agreement is a
  positive τ; for MoRF, whose better AUC is the lower one, a negative τ.

Example
-------
>>> from lrpkit.experiment import agreement, store            # doctest: +SKIP
>>> results = store.read_results("results")                    # doctest: +SKIP
>>> agreement.agreement_table(results)                         # doctest: +SKIP

References
----------
M. G. Kendall, *The treatment of ties in ranking problems*, Biometrika 33 (1945) (τ-b).
B. Efron, R. Tibshirani, *An Introduction to the Bootstrap*, Chapman & Hall (1993) (percentile
intervals). L. Arras, A. Osman, W. Samek, *CLEVR-XAI*, Information Fusion 81 (2022).
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence, Tuple

import numpy as np

from .._checks import choice
from .report import BEST, axes_of

__all__ = ["LOCALISATION", "DIRECTION", "LOCALISATION_NAMES", "VERDICTS", "TauInterval", "per_image", "score_grid", "optimum", "kendall_tau",
           "rank_agreement", "agreement_table"]

#: The localisation columns of a results table (:class:`lrpkit.experiment.metrics.Localisation`).
LOCALISATION = ("loc_mass", "loc_rank", "loc_pointing")
#: Which end of each localisation score is better.
DIRECTION = {name: "max" for name in LOCALISATION}
#: How a page words :func:`agreement_table`'s ``agrees``: "the two rankings ..."
VERDICTS = {"yes": "agree", "no": "disagree", "undecided": "are not told apart from unrelated rankings by these images",
            "no ranking": "cannot be compared: one of the scores is the same at every setting"}
#: How the figures name them.
LOCALISATION_NAMES = {"loc_mass": "relevance mass accuracy", "loc_rank": "relevance rank accuracy",
                      "loc_pointing": "pointing game"}


@dataclasses.dataclass(frozen=True)
class TauInterval:
    """Kendall's τ-b of two scores over the settings, with its bootstrap interval over the images.

    Attributes
    ----------
    tau : float
        τ-b between the settings' means over all images.
    low, high : float
        The percentile bootstrap interval at ``level``.
    level : float
    n_boot : int
        Bootstrap resamples (of the images, with replacement).
    n_images, n_settings : int
        Images and settings the means were taken over (settings whose mean is NaN are left out).
    """

    tau: float
    low: float
    high: float
    level: float
    n_boot: int
    n_images: int
    n_settings: int

    def text(self, digits: int = 2) -> str:
        """``"τ = -0.61 [-0.72, -0.48]"``."""
        return f"τ = {self.tau:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _rows(results, column: str, order: str | None):
    if column not in results.columns:
        raise ValueError(f"the results have no column {column!r} (localisation columns come with images.synthetic); "
                         f"they have {', '.join(results.columns)}")
    orders = list(results["order"].unique())
    if order is None:            # a per-heatmap column holds the same value in every order's rows
        order = orders[0]
    elif order not in orders:
        raise ValueError(f"the results hold no rows of order {order!r} (they have {sorted(orders)})")
    return results[results["order"] == order]


def per_image(results, column: str, order: str | None = None) -> Tuple[np.ndarray, np.ndarray]:
    """One score of every image at every setting.

    Parameters
    ----------
    results : pandas.DataFrame
        A results table (:func:`lrpkit.experiment.store.read_results`).
    column : str
        ``auc`` (then ``order`` is required), or a per-heatmap column such as ``loc_mass``.
    order : str, optional
        The Pixel-Flipping order of the rows (default: the first; a per-heatmap column is the same in all).

    Returns
    -------
    settings : numpy.ndarray
        ``[S]`` the setting numbers, ascending.
    values : numpy.ndarray
        ``[I, S]`` float64, image by image (ascending ``image``).

    Raises
    ------
    ValueError
        An unknown column or order, or an image without a row for every setting.
    """
    if column == "auc" and order is None:
        raise ValueError("column 'auc' differs between orders: give the order (morf, lrf or random)")
    part = _rows(results, column, order)
    if part.groupby("image")["setting"].nunique().min() < part["setting"].nunique():
        raise ValueError(f"column {column!r}: not every image has a row for every setting")
    table = part.pivot_table(index="image", columns="setting", values=column, aggfunc="first", dropna=False)
    return table.columns.to_numpy(), table.to_numpy(dtype=np.float64)


def score_grid(results, column: str, order: str | None = None):
    """The mean over the images of one score at every setting, as the matrix a contour plot draws.

    Returns
    -------
    first, second : numpy.ndarray
        The values of the two axes, ascending.
    z : numpy.ndarray
        ``z[i, j]``: the mean (NaN ignored) at ``first[i]``, ``second[j]``.
    """
    part = _rows(results, column, order)
    a, b = axes_of(results)
    means = part.groupby([a, b])[column].mean().reset_index()
    first = np.array(sorted(means[a].unique()))
    second = np.array(sorted(means[b].unique()))
    z = np.full((len(first), len(second)), np.nan)
    z[np.searchsorted(first, means[a]), np.searchsorted(second, means[b])] = means[column].to_numpy()
    return first, second, z


def optimum(first: np.ndarray, second: np.ndarray, z: np.ndarray, best: str) -> Tuple[float, float, float]:
    """The setting with the best mean: ``(first value, second value, mean)``; ``best`` is ``"min"`` or ``"max"``.

    Raises
    ------
    ValueError
        ``best`` not min or max, or every mean NaN.
    """
    choice("best", best, ("min", "max"))
    if np.isnan(z).all():
        raise ValueError("every setting's mean is NaN: no optimum")
    flat = np.nanargmin(z) if best == "min" else np.nanargmax(z)
    i, j = np.unravel_index(flat, z.shape)
    return float(first[i]), float(second[j]), float(z[i, j])


def _tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """τ-b of the rows of ``x`` and ``y`` (``[B, S]`` each), over the pairs of columns."""
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, :, None] - y[:, None, :])
    numerator = (sx * sy).sum(axis=(1, 2))
    denominator = np.sqrt((sx * sx).sum(axis=(1, 2)) * (sy * sy).sum(axis=(1, 2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of two equally long sequences (ties counted as τ-b does; pairs with a NaN left
    out). NaN when either is constant or fewer than two pairs remain."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"kendall_tau needs two 1-d sequences of the same length, got shapes {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    if keep.sum() < 2:
        return float("nan")
    return float(_tau_b(x[keep][None], y[keep][None])[0])


def rank_agreement(first: np.ndarray, second: np.ndarray, *, n_boot: int = 1000, level: float = 0.95,
                   seed: int = 0) -> TauInterval:
    """Kendall's τ-b between the settings' mean of two scores, with a bootstrap interval over the images.

    Parameters
    ----------
    first, second : numpy.ndarray
        ``[I, S]``: each image's score at each setting (:func:`per_image`), the same images and settings.
    n_boot : int
        Resamples of the images (with replacement).
    level : float
        Coverage of the percentile interval, in (0, 1).
    seed : int
        Seed of the resampling (the same seed gives the same interval).
    """
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"rank_agreement needs two [images, settings] arrays of the same shape, got {first.shape} "
                         f"and {second.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)  # all-NaN setting
        a, b = np.nanmean(first, axis=0), np.nanmean(second, axis=0)
        keep = ~(np.isnan(a) | np.isnan(b))
        tau = kendall_tau(a[keep], b[keep])
        rng = np.random.default_rng(seed)
        n_images = first.shape[0]
        taus = []
        for start in range(0, n_boot, 100):      # bounded memory: [100, S, S] per step
            draw = rng.integers(0, n_images, size=(min(100, n_boot - start), n_images))
            taus.append(_tau_b(np.nanmean(first[:, keep][draw], axis=1), np.nanmean(second[:, keep][draw], axis=1)))
    taus = np.concatenate(taus)
    low, high = np.nanquantile(taus, [(1 - level) / 2, (1 + level) / 2]) if np.isfinite(taus).any() else (np.nan,) * 2
    return TauInterval(tau=tau, low=float(low), high=float(high), level=level, n_boot=int(n_boot), n_images=n_images,
                       n_settings=int(keep.sum()))


def agreement_table(results, *, orders: Sequence[str] = ("morf", "lrf"), metrics: Sequence[str] = LOCALISATION,
                    n_boot: int = 1000, level: float = 0.95, seed: int = 0):
    """For each Pixel-Flipping order and localisation metric: both optima and the rank agreement.

    Returns
    -------
    pandas.DataFrame
        One row per (order, metric): ``order``, ``metric``, the AUC optimum (``auc_<axis>`` for both
        axes, ``auc``), the metric's optimum (``loc_<axis>`` for both axes, NaN where the metric
        is the same at every setting, and ``loc``),
        ``same_optimum`` (bool), ``tau``, ``tau_low``, ``tau_high``, ``agrees`` (``"yes"`` when the
        interval excludes 0 on the side of agreement, ``"no"`` when it excludes 0 on the other side,
        ``"undecided"`` otherwise, ``"no ranking"`` when either score is the same at every setting:
        τ is NaN), ``images`` and ``settings``. :data:`VERDICTS` words them.
    """
    import pandas as pd

    a, b = axes_of(results)
    for order in orders:
        if BEST.get(order) is None:
            raise ValueError(f"order {order!r} has no better end of its AUC; use morf or lrf")
    truth = {}                       # each localisation score once: it is the same in every order
    for metric in metrics:
        m_settings, values = per_image(results, metric)
        g1, g2, zloc = score_grid(results, metric)
        if np.nanmax(zloc) - np.nanmin(zloc) <= 1e-12:      # the same everywhere: no optimum
            loc_opt = (float("nan"), float("nan"), float(np.nanmax(zloc)))
        else:
            loc_opt = optimum(g1, g2, zloc, DIRECTION[metric])
        truth[metric] = (m_settings, values, loc_opt)
    rows = []
    for order in orders:
        best = BEST[order]
        settings, auc = per_image(results, "auc", order)
        f1, f2, zauc = score_grid(results, "auc", order)
        auc_opt = optimum(f1, f2, zauc, best)
        for metric in metrics:
            m_settings, values, loc_opt = truth[metric]
            if not np.array_equal(settings, m_settings):
                raise ValueError(f"order {order!r} and column {metric!r} cover different settings")
            interval = rank_agreement(auc, values, n_boot=n_boot, level=level, seed=seed)
            sign = -1.0 if best == "min" else 1.0     # MoRF: a lower AUC is better, so agreement is τ < 0
            low, high = sorted((sign * interval.low, sign * interval.high))
            if np.isnan(interval.tau):
                agrees = "no ranking"
            else:
                agrees = "yes" if low > 0 else "no" if high < 0 else "undecided"
            rows.append({"order": order, "metric": metric, f"auc_{a}": auc_opt[0], f"auc_{b}": auc_opt[1],
                         "auc": auc_opt[2], f"loc_{a}": loc_opt[0], f"loc_{b}": loc_opt[1], "loc": loc_opt[2],
                         "same_optimum": auc_opt[:2] == loc_opt[:2], "tau": interval.tau, "tau_low": interval.low,
                         "tau_high": interval.high, "agrees": agrees, "images": interval.n_images,
                         "settings": interval.n_settings})
    return pd.DataFrame(rows)
