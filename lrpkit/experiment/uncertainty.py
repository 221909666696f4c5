"""How far to trust the star: the uncertainty of a grid's best setting, and whether its graders agree.

A contour plot stars the setting with the best mean score over the images (:mod:`~lrpkit.experiment.plots`).
With a few dozen images and a flat optimum, another draw of images may well star another setting.
For each grader of the settings (:data:`GRADERS`: Pixel-Flipping's MoRF and LRF AUC and their
symmetric relevance gain, and the same three of ROAD; :data:`TRUTH`: the ground-truth localisation
scores), two questions are answered by resampling the images with replacement:

- **how often each setting is the best** (:func:`optimum_uncertainty`, ``share``), and which settings
  are **not significantly worse than the best** at a level (``region``): a setting is left out of the
  region when the one-sided paired bootstrap interval of its mean's distance from the best setting's
  mean lies wholly on the worse side; and
- **whether two graders rank the settings alike** (:func:`grader_agreement`): Kendall's τ-b between
  their settings' means, both oriented so that higher is better, with its percentile bootstrap
  interval (:func:`lrpkit.experiment.agreement.rank_agreement`). τ > 0 is agreement for every pair.

Example
-------
>>> from lrpkit.experiment import store, uncertainty            # doctest: +SKIP
>>> results = store.read_results("results")                      # doctest: +SKIP
>>> for g in uncertainty.graders_in(results):                    # doctest: +SKIP
...     print(uncertainty.optimum_uncertainty(results, g).text())
>>> uncertainty.grader_agreement(results)                        # doctest: +SKIP

References
----------
B. Efron, R. Tibshirani, *An Introduction to the Bootstrap*, Chapman & Hall (1993) (paired
resampling, percentile intervals). S. Blücher, J. Vielhaben, N. Strodthoff, *Decoupling pixel flipping
and occlusion strategy for consistent XAI benchmarks*, TMLR (2024) (symmetric relevance gain).
Y. Rong et al., *A consistent and efficient evaluation strategy for attribution methods*, ICML (2022) (ROAD).
"""
from __future__ import annotations

import dataclasses
import itertools
import warnings
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .agreement import LOCALISATION_NAMES, TauInterval, _tau_b, kendall_tau, optimum, per_image, score_grid
from .report import axes_of

__all__ = ["Grader", "GRADERS", "TRUTH", "graders_in", "grader", "OptimumUncertainty", "optimum_uncertainty",
           "AGREEMENT_COLUMNS", "grader_agreement"]


@dataclasses.dataclass(frozen=True)
class Grader:
    """A score of the settings and which end of it is better.

    Attributes
    ----------
    name : str
        Short name, e.g. ``"pf-morf"``.
    label : str
        How the figures name it, e.g. ``"Pixel-Flipping MoRF AUC"``.
    column : str
        The results table's column.
    order : str or None
        The rows' order for a per-curve column (``auc``, ``road_auc``); None for a per-heatmap column
        (the same value in every order's rows).
    best : str
        ``"min"`` or ``"max"``.
    """

    name: str
    label: str
    column: str
    order: Optional[str]
    best: str


#: The graders of an experiment's settings, in the order the reports list them.
GRADERS: Tuple[Grader, ...] = (
    Grader("pf-morf", "Pixel-Flipping MoRF AUC", "auc", "morf", "min"),
    Grader("pf-lrf", "Pixel-Flipping LRF AUC", "auc", "lrf", "max"),
    Grader("pf-srg", "Pixel-Flipping SRG (LRF − MoRF AUC)", "srg", None, "max"),
    Grader("road-morf", "ROAD MoRF AUC", "road_auc", "morf", "min"),
    Grader("road-lrf", "ROAD LeRF AUC", "road_auc", "lrf", "max"),
    Grader("road-srg", "ROAD SRG (LeRF − MoRF AUC)", "road_srg", None, "max"),
)
#: The ground-truth localisation scores (``images.synthetic``) as graders, higher is better.
TRUTH: Tuple[Grader, ...] = tuple(Grader(column.replace("_", "-"), LOCALISATION_NAMES[column], column, None, "max")
                                  for column in ("loc_mass", "loc_rank", "loc_pointing"))

GraderLike = Union[Grader, str]


def grader(name: GraderLike) -> Grader:
    """The grader of :data:`GRADERS` or :data:`TRUTH` called ``name`` (a :class:`Grader` is returned as is)."""
    return _find(name)


def _find(name: GraderLike) -> Grader:
    if isinstance(name, Grader):
        return name
    known = {g.name: g for g in GRADERS + TRUTH}
    if name not in known:
        raise ValueError(f"unknown grader {name!r}; choose one of {', '.join(known)}")
    return known[name]


def graders_in(results, graders: Sequence[GraderLike] = GRADERS) -> Tuple[Grader, ...]:
    """The graders of ``graders`` that ``results`` can score: their column exists (and is not all
    NaN) and, for a per-curve column, the table has rows of their order."""
    orders = set(results["order"].unique())
    found = []
    for g in map(_find, graders):
        if g.column not in results.columns or (g.order is not None and g.order not in orders):
            continue
        rows = results[results["order"] == g.order] if g.order is not None else results
        if rows[g.column].notna().any():
            found.append(g)
    return tuple(found)


def _check(results, g: Grader, level: float, n_boot: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if g.column not in results.columns:
        raise ValueError(f"grader {g.name!r} needs column {g.column!r}, which the results do not have; "
                         f"they have {', '.join(map(str, results.columns))}")


@dataclasses.dataclass(frozen=True)
class _Scores:
    """One grader's scores: per image and setting, oriented (higher is better), and the full-data best."""

    settings: np.ndarray      # [S]
    oriented: np.ndarray      # [I, S], sign * values
    cell: Tuple[np.ndarray, np.ndarray]   # the grid position (i, j) of each setting
    first: np.ndarray
    second: np.ndarray
    z: np.ndarray             # [n1, n2] mean in the grader's units
    best: Optional[Tuple[float, float, float]]   # None when constant
    best_index: int           # position of the best in ``settings`` (-1 when constant)


def _scores(results, g: Grader) -> _Scores:
    settings, values = per_image(results, g.column, g.order)
    first, second, z = score_grid(results, g.column, g.order)
    a, b = axes_of(results)
    where = results.drop_duplicates("setting").set_index("setting").loc[settings, [a, b]]
    cell = (np.searchsorted(first, where[a].to_numpy()), np.searchsorted(second, where[b].to_numpy()))
    if np.isnan(z).all():
        raise ValueError(f"grader {g.name!r}: every setting's mean of {g.column!r} is NaN")
    zmin, zmax = float(np.nanmin(z)), float(np.nanmax(z))
    best, index = None, -1
    if zmax - zmin > 1e-9 * max(abs(zmax), 1.0):    # as plots.contour: a constant grid has no best
        best = optimum(first, second, z, g.best)       # the setting the contour stars
        index = int(np.flatnonzero((first[cell[0]] == best[0]) & (second[cell[1]] == best[1]))[0])
    sign = -1.0 if g.best == "min" else 1.0
    return _Scores(settings, sign * values, cell, first, second, z, best, index)


@dataclasses.dataclass(frozen=True, eq=False)
class OptimumUncertainty:
    """The best setting of one grader and how sure the images make it (:func:`optimum_uncertainty`).

    Attributes
    ----------
    grader : Grader
    first_axis, second_axis : str
        The axis columns, e.g. ``"gamma"``, ``"epsilon"``.
    first, second : numpy.ndarray
        The axes' values, ascending.
    z : numpy.ndarray
        ``[n1, n2]``: the mean score over all images (the grader's units; NaN off the measured settings).
    region : numpy.ndarray
        ``[n1, n2]`` bool: the settings not significantly worse than the best at ``level`` (the best included).
    share : numpy.ndarray
        ``[n1, n2]``: the share of resamples in which each setting is the best (a tie shared equally);
        it sums to 1.
    constant : bool
        Whether the mean is the same at every setting (then there is no best, and ``best_*`` are NaN).
    best_first, best_second, best_mean : float
        The best setting over all images (as :func:`lrpkit.experiment.plots.contour` stars it) and its mean.
    best_setting : int
        Its setting number (-1 when constant).
    best_share : float
        The share of resamples in which that setting is the best.
    n_region, n_settings, n_images, n_boot : int
    level : float
    seed : int
    """

    grader: Grader
    first_axis: str
    second_axis: str
    first: np.ndarray
    second: np.ndarray
    z: np.ndarray
    region: np.ndarray
    share: np.ndarray
    constant: bool
    best_first: float
    best_second: float
    best_mean: float
    best_setting: int
    best_share: float
    n_region: int
    n_settings: int
    n_images: int
    n_boot: int
    level: float
    seed: int

    def text(self) -> str:
        """``"pf-morf: best gamma = 0.25, epsilon = 0.01 (in 43 % of 1000 resamples); 5 of 36 settings not
        significantly worse at 95 %"``."""
        if self.constant:
            return (f"{self.grader.name}: the same at every setting ({float(np.nanmax(self.z)):.4g}): no best "
                    f"({self.n_settings} settings, {self.n_images} images)")
        return (f"{self.grader.name}: best {self.first_axis} = {self.best_first:.4g}, {self.second_axis} = "
                f"{self.best_second:.4g} (in {100 * self.best_share:.0f} % of {self.n_boot} resamples); "
                f"{self.n_region} of {self.n_settings} settings not significantly worse at {100 * self.level:g} %")


def _boot_means(oriented: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, S]``: the settings' means (NaN ignored) over resamples of the images, drawn as
    :func:`~lrpkit.experiment.agreement.rank_agreement` draws them (the same seed: the same resamples,
    the same means), 100 resamples a step."""
    rng = np.random.default_rng(seed)
    n_images = oriented.shape[0]
    means = []
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)  # all-NaN setting
        for start in range(0, n_boot, 100):      # bounded memory: [100, I, S] per step
            draw = rng.integers(0, n_images, size=(min(100, n_boot - start), n_images))
            means.append(np.nanmean(oriented[draw], axis=1))
    return np.concatenate(means)


def _uncertainty(scores: _Scores, boot: np.ndarray, g: Grader, axes, level: float, seed: int) -> OptimumUncertainty:
    x = scores.oriented
    n_boot, n_settings = boot.shape
    scale = float(np.nanmax(np.abs(x))) if np.isfinite(x).any() else 1.0
    ranked = np.where(np.isnan(boot), -np.inf, boot)
    top = ranked.max(axis=1, keepdims=True)
    ok = np.isfinite(top[:, 0])          # a resample with no finite mean picks nothing
    winners = (ranked >= top - 1e-12 * scale) & ok[:, None]       # a tie (to rounding) shares the resample
    share = (winners / np.maximum(winners.sum(axis=1, keepdims=True), 1)).sum(axis=0) / max(int(ok.sum()), 1)
    if scores.best_index >= 0:
        worse = boot[:, [scores.best_index]] - boot      # > 0: the setting is worse than the best
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
            bound = np.nanquantile(worse, 1 - level, axis=0)             # one-sided: the lower bound
        inside = bound <= 0      # NaN (never measured) compares False: out
        inside[scores.best_index] = True
    else:                        # the same everywhere: none is worse than another
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
            inside = ~np.isnan(np.nanmean(x, axis=0))
    region = np.zeros(scores.z.shape, dtype=bool)
    region[scores.cell] = inside
    grid_share = np.zeros(scores.z.shape)
    grid_share[scores.cell] = share
    nan = float("nan")
    best = scores.best if scores.best is not None else (nan, nan, nan)
    found = scores.best_index >= 0
    return OptimumUncertainty(
        grader=g, first_axis=axes[0], second_axis=axes[1], first=scores.first, second=scores.second, z=scores.z,
        region=region, share=grid_share, constant=not found, best_first=best[0], best_second=best[1],
        best_mean=best[2], best_setting=int(scores.settings[scores.best_index]) if found else -1,
        best_share=float(share[scores.best_index]) if found else nan, n_region=int(region.sum()),
        n_settings=n_settings, n_images=x.shape[0], n_boot=int(n_boot), level=level, seed=seed)


def optimum_uncertainty(results, grader: GraderLike, *, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0) -> OptimumUncertainty:
    """The best setting of one grader, how often a resample of the images picks each setting, and
    the settings not significantly worse than the best.

    Parameters
    ----------
    results : pandas.DataFrame
        A results table (:func:`~lrpkit.experiment.store.read_results`) with a row for every image at every setting.
    grader : Grader or str
        One of :data:`GRADERS` or :data:`TRUTH`, or its name (``"pf-morf"``).
    n_boot : int
        Resamples of the images (with replacement; each draws as many images as there are).
    level : float
        In (0, 1). A setting ``s`` is in the region unless the ``1 - level`` quantile over the
        resamples of ``mean(best) - mean(s)`` (oriented so that positive means worse) is above 0:
        a one-sided paired test, the images shared by both means. The best is always in the region.
    seed : int
        Seed of :func:`numpy.random.default_rng` (the same seed gives the same answer).

    Returns
    -------
    OptimumUncertainty

    Raises
    ------
    ValueError
        ``level`` or ``n_boot`` out of range, an unknown grader, a column the results lack, or an image
        without a row for every setting.
    """
    g = _find(grader)
    _check(results, g, level, n_boot)
    scores = _scores(results, g)
    return _uncertainty(scores, _boot_means(scores.oriented, n_boot, seed), g, axes_of(results), level, seed)


#: The columns of :func:`grader_agreement`.
AGREEMENT_COLUMNS = ("first", "second", "tau", "tau_low", "tau_high", "agrees", "same_optimum", "images", "settings")


def grader_agreement(results, graders: Optional[Sequence[GraderLike]] = None, *, n_boot: int = 1000,
                     level: float = 0.95, seed: int = 0):
    """Whether each pair of graders ranks the settings alike: Kendall's τ-b between their settings'
    means (both oriented so that higher is better: τ > 0 is agreement), with its bootstrap interval.

    Parameters
    ----------
    results : pandas.DataFrame
    graders : sequence of Grader or str, optional
        Default :func:`graders_in` ``(results)``; :data:`TRUTH` graders may be among them.
    n_boot, level, seed
        As :func:`lrpkit.experiment.agreement.rank_agreement`, whose numbers these are (each grader's
        resamples are drawn once, the same for every pair, as that function draws them).

    Returns
    -------
    pandas.DataFrame
        One row per unordered pair (in the order of ``graders``): ``first``, ``second`` (the names),
        ``tau``, ``tau_low``, ``tau_high``, ``agrees`` (``"yes"`` when the interval lies above 0, ``"no"``
        below 0, ``"undecided"`` otherwise, ``"no ranking"`` when τ is NaN: a grader is the same at
        every setting), ``same_optimum`` (whether both best settings over all images coincide; False
        when either has none), ``images`` and ``settings``.
    """
    chosen = graders_in(results) if graders is None else tuple(map(_find, graders))
    for g in chosen:
        _check(results, g, level, n_boot)
    scored = {g.name: _scores(results, g) for g in chosen}
    boots = {name: _boot_means(scores.oriented, n_boot, seed) for name, scores in scored.items()}
    return _agreement(chosen, scored, boots, level)


def _agreement(chosen: Sequence[Grader], scored, boots, level: float):
    """:func:`grader_agreement` from each grader's scores and resampled means (:func:`_boot_means`)."""
    import pandas as pd

    rows = []
    for one, two in itertools.combinations(chosen, 2):
        x, y = scored[one.name], scored[two.name]
        if not np.array_equal(x.settings, y.settings) or x.oriented.shape != y.oriented.shape:
            raise ValueError(f"graders {one.name!r} and {two.name!r} cover different images or settings")
        interval = _tau_interval(x.oriented, y.oriented, boots[one.name], boots[two.name], level)
        if np.isnan(interval.tau):
            agrees = "no ranking"
        else:
            agrees = "yes" if interval.low > 0 else "no" if interval.high < 0 else "undecided"
        same = x.best is not None and y.best is not None and x.best[:2] == y.best[:2]
        rows.append({"first": one.name, "second": two.name, "tau": interval.tau, "tau_low": interval.low,
                     "tau_high": interval.high, "agrees": agrees, "same_optimum": bool(same),
                     "images": interval.n_images, "settings": interval.n_settings})
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))


def _tau_interval(first: np.ndarray, second: np.ndarray, boot_first: np.ndarray, boot_second: np.ndarray,
                  level: float) -> TauInterval:
    """:func:`~lrpkit.experiment.agreement.rank_agreement` of ``first`` and ``second`` (``[I, S]``), the
    same numbers, from their resampled means (:func:`_boot_means` with the same seed): each grader's
    resamples are taken once, not once per pair."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
        a, b = np.nanmean(first, axis=0), np.nanmean(second, axis=0)
    keep = ~(np.isnan(a) | np.isnan(b))
    tau = kendall_tau(a[keep], b[keep])
    n_boot = boot_first.shape[0]
    taus = np.concatenate([_tau_b(boot_first[start:start + 100, keep], boot_second[start:start + 100, keep])
                           for start in range(0, n_boot, 100)])      # bounded memory: [100, S, S] per step
    low, high = np.nanquantile(taus, [(1 - level) / 2, (1 + level) / 2]) if np.isfinite(taus).any() else (np.nan,) * 2
    return TauInterval(tau=tau, low=float(low), high=float(high), level=level, n_boot=int(n_boot),
                       n_images=first.shape[0], n_settings=int(keep.sum()))


def _summary(results, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0):
    """:func:`optimum_uncertainty` of every grader of :func:`graders_in` and their
    :func:`grader_agreement`, each grader's resamples drawn once (for :func:`~lrpkit.experiment.report.report_lines`)."""
    chosen = graders_in(results)
    for g in chosen:
        _check(results, g, level, n_boot)
    axes = axes_of(results)
    scored = {g.name: _scores(results, g) for g in chosen}
    boots = {name: _boot_means(scores.oriented, n_boot, seed) for name, scores in scored.items()}
    sure = [_uncertainty(scored[g.name], boots[g.name], g, axes, level, seed) for g in chosen]
    return sure, _agreement(chosen, scored, boots, level)
