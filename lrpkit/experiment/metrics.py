"""The metrics of the experiment: what each results row holds besides which row it is.

A metric declares its results columns once (:class:`Column`: name, dtype, one line of description)
and computes their values from what a unit computed (:class:`MetricInputs`: the image, the model,
the explanation of every setting and the Pixel-Flipping curves). A metric gives one value per
heatmap (``per = "heatmap"``, the same in every order's row: a statistic of the heatmap, a
localisation score) or one per heatmap and order (``per = "curve"``: a property of a Pixel-Flipping
curve). The runner computes every registered metric the config asks for (:func:`active`), in
registry order, and the results table has their columns in that order (:func:`lrpkit.experiment.
store.columns`).

The built-in metrics, in order: ``auc``, ``aopc`` and ``scores`` of every curve, ``srg`` (the
symmetric relevance gain of Pixel-Flipping, with both ``morf`` and ``lrf``), ``relevance``
(statistics of the heatmap), ``diagnostics`` (the instability detector's measurements, with the
config's ``diagnostics: true``), ``localisation`` (relevance mass and rank accuracy and the
pointing game against the ground-truth mask, for ``images.synthetic``), and ``road`` and
``road_srg`` (a second grader: ROAD's curves in the same orders, their AUC and symmetric relevance
gain, with the config's ``road``). Metrics that share work (ROAD's curves) compute it once per unit
through :meth:`MetricInputs.once`.

Example
-------
A new metric is one class and one :func:`register` call; its column follows the built-in ones:

>>> from lrpkit.experiment import metrics
>>> class HeatmapSum(metrics.Metric):
...     name, per = "heatmap_sum", "heatmap"
...     columns = (metrics.Column("heatmap_sum", "float64", "sum of the heatmap"),)
...     def compute(self, inputs):
...         return {"heatmap_sum": inputs.heatmaps.sum(dim=(1, 2))}
>>> metrics.register(HeatmapSum())                                           # doctest: +SKIP
"""
from __future__ import annotations

import abc
import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, NamedTuple, Sequence, Tuple

import numpy as np
import torch

from .. import pf
from .._checks import choice

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .. import lrp
    from .config import Config
    from .plan import Unit

__all__ = ["Column", "DTYPES", "PER", "Metric", "MetricInputs", "register", "unregister", "registered", "active",
           "row_values", "AUC", "AOPC", "ScoreCurve", "RelevanceStatistics", "InstabilityDiagnostics",
           "Localisation", "SymmetricGain", "ROAD", "RoadSymmetricGain", "curves_in_orders"]

#: The dtypes a results column may have (:func:`lrpkit.experiment.store.column_types` maps them to pyarrow).
DTYPES = ("string", "int32", "float64", "list<float64>")
#: What a metric gives one value for: each heatmap (one per setting) or each curve (per setting and order).
PER = ("heatmap", "curve")


class Column(NamedTuple):
    """One column of the results table."""

    name: str
    dtype: str
    description: str


@dataclasses.dataclass
class MetricInputs:
    """What one unit (one image) computed: what its metrics are computed from.

    Attributes
    ----------
    config : Config
        The experiment's config.
    unit : Unit
        The image.
    model : torch.nn.Module
        The experiment's model (in eval mode).
    image : torch.Tensor
        ``[1, C, H, W]``, the normalized input, on the config's device in the model's dtype.
    explanation : lrpkit.lrp.Explanation
        The S heatmaps of the image, one per setting of the grid (setting numbers ``0..S-1``):
        ``explanation.relevance`` is ``[S, C, H, W]``.
    target : int
        The class explained and scored.
    orders : tuple of str
        The config's Pixel-Flipping orders, in order.
    curves : lrpkit.pf.PixelFlippingResult
        The unit's Pixel-Flipping: one row per curve (the random order, which ignores the heatmap,
        has one row for all settings).
    curve_rows : numpy.ndarray
        ``[S, O]`` int: the row of ``curves`` of setting ``s`` in order ``orders[o]``.
    mask : torch.Tensor or None
        ``[H, W]`` bool: the pixels of the object that decides the class, for an image of the
        ground-truth task (``images.synthetic``); None for a photo.
    """

    config: "Config"
    unit: "Unit"
    model: torch.nn.Module
    image: torch.Tensor
    explanation: "lrp.Explanation"
    target: int
    orders: Tuple[str, ...]
    curves: pf.PixelFlippingResult
    curve_rows: np.ndarray
    mask: "torch.Tensor | None" = None
    memo: Dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def once(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, run the first time ``name`` is asked for in this unit and kept: work that
        several metrics read (ROAD's curves) is done once."""
        if name not in self.memo:
            self.memo[name] = compute()
        return self.memo[name]

    @property
    def n_settings(self) -> int:
        """S, the number of heatmaps."""
        return self.explanation.relevance.shape[0]

    @functools.cached_property
    def heatmaps(self) -> torch.Tensor:
        """``[S, H, W]`` float64: the relevance summed over the colour channels (computed once)."""
        return self.explanation.relevance.detach().double().sum(dim=1)


class Metric(abc.ABC):
    """A metric of the experiment: its columns, and how it computes them from a unit.

    Attributes
    ----------
    name : str
        The metric's name in the registry.
    per : str
        ``"heatmap"`` (one value per setting, repeated in the rows of every order) or ``"curve"``
        (one per setting and order), one of :data:`PER`.
    columns : tuple of Column
        The columns it fills, in order.
    """

    name: str = ""
    per: str = "heatmap"
    columns: Tuple[Column, ...] = ()

    def applies(self, config: "Config") -> bool:
        """Whether an experiment of ``config`` computes the metric (default: every experiment)."""
        return True

    @abc.abstractmethod
    def compute(self, inputs: MetricInputs) -> Mapping[str, Any]:
        """The values of every column: ``{column: values}``.

        Values are arrays (numpy or torch) of shape ``[S]`` per heatmap or ``[S, O]`` per curve
        (setting ``s`` in ``inputs.orders[o]``), with a trailing axis for ``list<float64>`` columns.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, per={self.per!r}, columns={[c.name for c in self.columns]})"


# --------------------------------------------------------------------------------------------------
# the registry


_REGISTRY: Dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add ``metric`` after the registered ones; returns it.

    Raises
    ------
    TypeError
        Not a :class:`Metric` instance (a class is refused with the fix).
    ValueError
        A name already registered, an unknown ``per`` or dtype, no columns, or a column name that
        another metric has.
    """
    if isinstance(metric, type):
        raise TypeError(f"register an instance of the metric, not the class: register({metric.__name__}())")
    if not isinstance(metric, Metric):
        raise TypeError(f"a metric must be an instance of lrpkit.experiment.metrics.Metric, got "
                        f"{type(metric).__name__}")
    if not isinstance(metric.name, str) or not metric.name:
        raise ValueError(f"metric {type(metric).__name__} needs a name (the class attribute name = '...')")
    if metric.name in _REGISTRY:
        raise ValueError(f"metric {metric.name!r} is registered already; unregister it first or choose another name")
    _choice(f"metric {metric.name!r}", "per", metric.per, PER)
    if not metric.columns or not all(isinstance(c, Column) for c in metric.columns):
        raise ValueError(f"metric {metric.name!r} must declare its columns as a tuple of Column(name, dtype, "
                         f"description), got {metric.columns!r}")
    taken = {c.name: m.name for m in _REGISTRY.values() for c in m.columns}
    for column in metric.columns:
        _choice(f"metric {metric.name!r}, column {column.name!r}", "dtype", column.dtype, DTYPES)
        if column.name in taken:
            raise ValueError(f"column {column.name!r} of metric {metric.name!r} is a column of metric "
                             f"{taken[column.name]!r} already; give it another name")
        taken[column.name] = metric.name
    _REGISTRY[metric.name] = metric
    return metric


def _choice(where: str, name: str, value: Any, options: Tuple[str, ...]) -> None:
    """:func:`lrpkit._checks.choice`, its message prefixed by ``where`` (the metric, the column)."""
    try:
        choice(name, value, options)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def unregister(name: str) -> Metric:
    """Remove the metric ``name`` from the registry; returns it."""
    choice("metric", name, tuple(_REGISTRY))
    return _REGISTRY.pop(name)


def registered() -> Tuple[Metric, ...]:
    """Every registered metric, in order."""
    return tuple(_REGISTRY.values())


def active(config: "Config") -> Tuple[Metric, ...]:
    """The registered metrics an experiment of ``config`` computes (:meth:`Metric.applies`), in order."""
    return tuple(m for m in _REGISTRY.values() if m.applies(config))


def row_values(metric: Metric, inputs: MetricInputs) -> Dict[str, List[Any]]:
    """The metric's columns as one value per results row: setting by setting, and within a setting
    order by order (``inputs.orders``).

    Raises
    ------
    ValueError
        Values for other columns than the metric declares, or of another shape than ``[S]`` (per
        heatmap) or ``[S, O]`` (per curve).
    """
    values = metric.compute(inputs)
    declared = [c.name for c in metric.columns]
    if sorted(values) != sorted(declared):
        raise ValueError(f"metric {metric.name!r} computed the columns {sorted(values)}, but declares {declared}; "
                         f"return one entry per declared column")
    n_settings, n_orders = inputs.n_settings, len(inputs.orders)
    shape = (n_settings,) if metric.per == "heatmap" else (n_settings, n_orders)
    out = {}
    for name, dtype, _ in metric.columns:
        column = values[name]
        column = column.detach().cpu().numpy() if isinstance(column, torch.Tensor) else np.asarray(column)
        lists = dtype.startswith("list")
        if column.shape[:len(shape)] != shape or column.ndim != len(shape) + lists:
            each = ("a list" if lists else "one value") + (" per setting" if metric.per == "heatmap" else
                                                           " per setting and order")
            raise ValueError(f"metric {metric.name!r} gave column {name!r} values of shape {column.shape}; a metric "
                             f"per {metric.per} gives {each}, shape {shape + ((-1,) if lists else ())}")
        if metric.per == "heatmap":
            column = np.repeat(column, n_orders, axis=0)
        out[name] = column.reshape(n_settings * n_orders, *column.shape[len(shape):]).tolist()
    return out


def curves_in_orders(grade: Callable[..., pf.PixelFlippingResult], model: torch.nn.Module, x: torch.Tensor,
                     relevance: torch.Tensor, target: int, orders: Sequence[str],
                     options: pf.PixelFlippingOptions) -> Tuple[pf.PixelFlippingResult, np.ndarray]:
    """Every heatmap in every order in one call of ``grade`` (:func:`lrpkit.pf.pixel_flipping`), the
    random order once (it ignores the heatmap).

    Returns
    -------
    (PixelFlippingResult, numpy.ndarray)
        The curves, and ``[S, O]`` int: the row of setting ``s`` in order ``orders[o]``.
    """
    n = relevance.shape[0]
    row_orders, heatmaps, curve_rows = [], [], []
    for order in orders:
        count = 1 if order == "random" else n
        curve_rows.append([len(row_orders) + (0 if order == "random" else s) for s in range(n)])
        row_orders += [order] * count
        heatmaps.append(relevance[:count])
    options = dataclasses.replace(options, order=row_orders)
    curves = grade(model, x.expand(len(row_orders), -1, -1, -1), torch.cat(heatmaps), target,
                   **dataclasses.asdict(options))
    return curves, np.array(curve_rows, dtype=np.int64).T


def _gain(areas: np.ndarray, orders: Sequence[str]) -> np.ndarray:
    """``[S]``: LeRF's area minus MoRF's, from ``[S, O]`` areas in ``orders``."""
    return areas[:, list(orders).index("lrf")] - areas[:, list(orders).index("morf")]


def _both_orders(config: "Config") -> bool:
    return {"morf", "lrf"} <= set(config.orders)


# --------------------------------------------------------------------------------------------------
# the built-in metrics


class AUC(Metric):
    """Area under each Pixel-Flipping curve (:func:`lrpkit.pf.auc`, x as the config's ``auc_x``)."""

    name, per = "auc", "curve"
    columns = (Column("auc", "float64", "area under the score curve (trapezoid, x as pf.auc_x); the thesis's AUC of "
                                        "the batch-mean curve is the mean of this column over the images"),)

    def compute(self, inputs: MetricInputs) -> Dict[str, np.ndarray]:
        curves = inputs.curves
        areas = pf.auc(curves.scores, curves.settings.auc_x, curves.fraction_flipped)
        return {"auc": areas.numpy()[inputs.curve_rows]}


class AOPC(Metric):
    """Area over each Pixel-Flipping curve (:func:`lrpkit.pf.aopc`, Samek et al. 2017)."""

    name, per = "aopc", "curve"
    columns = (Column("aopc", "float64", "area over the perturbation curve (Samek et al. 2017)"),)

    def compute(self, inputs: MetricInputs) -> Dict[str, np.ndarray]:
        return {"aopc": pf.aopc(inputs.curves.scores).numpy()[inputs.curve_rows]}


class ScoreCurve(Metric):
    """The Pixel-Flipping curve itself: the target's score after every step."""

    name, per = "scores", "curve"
    columns = (Column("scores", "list<float64>", "the target's score after every step; first the unperturbed image, "
                                                 "last gray"),)

    def compute(self, inputs: MetricInputs) -> Dict[str, np.ndarray]:
        return {"scores": inputs.curves.scores.numpy()[inputs.curve_rows]}


class SymmetricGain(Metric):
    """The symmetric relevance gain of Pixel-Flipping (Blücher et al. 2024): each heatmap's LRF AUC
    minus its MoRF AUC, for configs with both orders. Higher is better."""

    name, per = "srg", "heatmap"
    columns = (Column("srg", "float64", "symmetric relevance gain of Pixel-Flipping: the LRF AUC minus the MoRF "
                                        "AUC of the heatmap (higher is better)"),)

    def applies(self, config: "Config") -> bool:
        return _both_orders(config)

    def compute(self, inputs: MetricInputs) -> Dict[str, np.ndarray]:
        curves = inputs.curves
        areas = pf.auc(curves.scores, curves.settings.auc_x, curves.fraction_flipped).numpy()[inputs.curve_rows]
        return {"srg": _gain(areas, inputs.orders)}


class ROAD(Metric):
    """A second grader: ROAD (Rong et al. 2022, :mod:`lrpkit.road`) in the config's orders — the
    patches removed in the heatmap's order and imputed from their neighbours with noise — after
    each of the config's ``road.percentages``; its AUC over the fraction removed and its curve.
    Computed with the config's ``road`` section, sharing the unit's LRP pass."""

    name, per = "road", "curve"
    columns = (
        Column("road_auc", "float64", "area under the ROAD curve (trapezoid over the fraction of patches removed)"),
        Column("road_scores", "list<float64>", "the target's score under ROAD: the unperturbed image, each "
                                               "percentage removed (imputed), then gray"),
    )

    def applies(self, config: "Config") -> bool:
        return config.data["road"] is not False

    def compute(self, inputs: MetricInputs) -> Dict[str, np.ndarray]:
        curves, rows = _road_curves(inputs)
        return {"road_auc": curves.auc.numpy()[rows], "road_scores": curves.scores.numpy()[rows]}


class RoadSymmetricGain(Metric):
    """ROAD's symmetric relevance gain: each heatmap's LeRF minus MoRF ROAD AUC, for configs with
    ``road`` and both orders. Higher is better."""

    name, per = "road_srg", "heatmap"
    columns = (Column("road_srg", "float64", "symmetric relevance gain of ROAD: the LeRF minus the MoRF ROAD AUC "
                                             "(higher is better)"),)

    def applies(self, config: "Config") -> bool:
        return config.data["road"] is not False and _both_orders(config)

    def compute(self, inputs: MetricInputs) -> Dict[str, np.ndarray]:
        curves, rows = _road_curves(inputs)
        return {"road_srg": _gain(curves.auc.numpy()[rows], inputs.orders)}


def _road_curves(inputs: MetricInputs) -> Tuple[pf.PixelFlippingResult, np.ndarray]:
    """The unit's ROAD curves in the config's orders, computed once per unit."""
    def compute():
        return curves_in_orders(pf.pixel_flipping, inputs.model, inputs.image, inputs.explanation.relevance.detach(),
                                inputs.target, inputs.orders, inputs.config.road_options())

    return inputs.once("road", compute)


class RelevanceStatistics(Metric):
    """Minimum, maximum, standard deviation and sum of each heatmap (summed over the colours)."""

    name, per = "relevance", "heatmap"
    columns = (
        Column("relevance_min", "float64", "minimum of the heatmap (relevance summed over the color channels)"),
        Column("relevance_max", "float64", "maximum of the heatmap"),
        Column("relevance_std", "float64", "standard deviation of the heatmap's pixels (population, ddof 0)"),
        Column("relevance_sum", "float64", "sum of the relevance (about the target's logit where the rules conserve)"),
    )

    def compute(self, inputs: MetricInputs) -> Dict[str, np.ndarray]:
        heat = inputs.heatmaps.flatten(1)                                       # [S, H*W]
        statistics = {"relevance_min": heat.amin(1), "relevance_max": heat.amax(1),
                      "relevance_std": heat.std(1, correction=0), "relevance_sum": heat.sum(1)}
        return {name: values.cpu().numpy() for name, values in statistics.items()}


class InstabilityDiagnostics(Metric):
    """The instability detector's verdict and measurements of each heatmap
    (:func:`lrpkit.diagnostics.instability`), with the config's ``diagnostics: true``."""

    name, per = "diagnostics", "heatmap"
    columns = (
        Column("diag_unstable", "float64", "1 if lrpkit.diagnostics flags the heatmap as numerically unstable, else 0"),
        Column("diag_concentration", "float64", "max |R| over the 99th percentile of |R| (R summed over the colours)"),
        Column("diag_top_share", "float64", "share of the sum of |R| held by the top 0.1 % of the pixels"),
        Column("diag_peak", "float64", "max |R| over the median |R|"),
        Column("diag_patch_share", "float64", "the largest patch's share of the sum of |R| (0 without a patch)"),
        Column("diag_min_ratio", "float64", "smallest conservation ratio (relevance sum / logit) over the layers' "
                                            "inputs"),
        Column("diag_max_ratio", "float64", "largest conservation ratio over the layers' inputs"),
    )

    def applies(self, config: "Config") -> bool:
        return config.data["diagnostics"] is True

    def compute(self, inputs: MetricInputs) -> Dict[str, np.ndarray]:
        from .. import diagnostics

        report = diagnostics.instability(inputs.explanation)
        n = len(report)
        ratios = report.ratios if report.ratios is not None else torch.full((1, n), math.nan, dtype=torch.float64)
        return {
            "diag_unstable": report.unstable.numpy().astype(np.float64),
            "diag_concentration": report.concentration.numpy(),
            "diag_top_share": report.top_share.numpy(),
            "diag_peak": report.peak.numpy(),
            "diag_patch_share": np.array([p[0].share if p else 0.0 for p in report.patches], dtype=np.float64),
            "diag_min_ratio": ratios.amin(0).numpy(),
            "diag_max_ratio": ratios.amax(0).numpy(),
        }


class Localisation(Metric):
    """How well each heatmap points at the ground truth (:mod:`lrpkit.localisation`, Arras et al. 2022),
    for images that come with one (``images.synthetic``): the positive relevance summed over the
    colour channels, against the mask of the deciding object. A heatmap without positive relevance
    has no localisation: NaN (with a warning)."""

    name, per = "localisation", "heatmap"
    columns = (
        Column("loc_mass", "float64", "relevance mass accuracy: share of the positive relevance inside the object's "
                                      "mask"),
        Column("loc_rank", "float64", "relevance rank accuracy: share of the mask's pixels among the |mask| pixels "
                                      "of highest relevance"),
        Column("loc_pointing", "float64", "pointing game: 1 if the pixel of highest relevance lies in the mask, "
                                          "else 0"),
    )

    def applies(self, config: "Config") -> bool:
        return config.data["images"]["synthetic"] is not None

    def compute(self, inputs: MetricInputs) -> Dict[str, torch.Tensor]:
        from .. import localisation

        if inputs.mask is None:
            raise ValueError(f"image {inputs.unit.file} came without a ground-truth mask; the localisation metric "
                             f"needs images.synthetic")
        relevance = inputs.explanation.relevance.detach().double()
        mask = inputs.mask.to(relevance.device).expand(relevance.shape[0], -1, -1)
        return {"loc_mass": localisation.relevance_mass_accuracy(relevance, mask),
                "loc_rank": localisation.relevance_rank_accuracy(relevance, mask),
                "loc_pointing": localisation.pointing_game(relevance, mask)}


for _builtin in (AUC(), AOPC(), ScoreCurve(), SymmetricGain(), RelevanceStatistics(), InstabilityDiagnostics(),
                 Localisation(), ROAD(), RoadSymmetricGain()):
    register(_builtin)
del _builtin
