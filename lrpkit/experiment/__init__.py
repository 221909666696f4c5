"""The hyperparameter experiment of thesis chapter 4, as one resumable, shardable run.

For one composite family (LRP-Tutorial or LRP-Decreasing-γ) and a 2-D grid of its hyperparameters,
every image of an image set (or of an ILSVRC-2012 validation class) is explained at every setting,
and every heatmap is graded by Pixel-Flipping in every order (MoRF, LRF, random); the AUCs make the
thesis's contour plots (§4.1, Tables 4.1-4.3, Figures 4.1-4.6).

Modules: :mod:`~lrpkit.experiment.config` (the YAML config, checked up front),
:mod:`~lrpkit.experiment.grid` (families, axes, composites), :mod:`~lrpkit.experiment.plan` (units,
shards, cost), :mod:`~lrpkit.experiment.metrics` (what each row measures: AUC, AOPC, the curve, the
heatmap's statistics and diagnostics; a new metric is a :class:`Metric` and one :func:`metrics.register`),
:mod:`~lrpkit.experiment.store` (the results directory), :mod:`~lrpkit.experiment.runner`
(running units), :mod:`~lrpkit.experiment.report` (mean AUC, best settings) and
:mod:`~lrpkit.experiment.commands` (``lrpkit experiment run|status|merge|report``).

Example
-------
>>> from lrpkit import experiment
>>> experiment.run("axolotl-tutorial.yaml", out="results/tutorial")       # doctest: +SKIP
>>> df = experiment.read_results("results/tutorial")                      # doctest: +SKIP
>>> experiment.mean_auc(df.query("order == 'morf'"))                      # doctest: +SKIP

or, without lrpkit: ``pandas.read_parquet("results/tutorial/results.parquet")``.

References
----------
R. Bermudez Schettino, *In-Depth Hyperparameter Selection for Layer-Wise Relevance Propagation*,
master's thesis, TU Berlin (2022), §4.1.
"""
from .config import Config, ConfigError, load_config
from .grid import FAMILIES, default_axis
from . import metrics
from .metrics import Column, Metric, MetricInputs
from .plan import Cost, Unit, cost, parse_shard, shard_units, units
from .report import BEST, best_settings, mean_auc
from .runner import RunResult, Status, run, status
from .store import COLUMNS, DIAGNOSTIC_COLUMNS, TIMING_COLUMNS, ResultsDir, merge, read_results

__all__ = ["Config", "ConfigError", "load_config", "FAMILIES", "default_axis", "metrics", "Column", "Metric",
           "MetricInputs", "Cost", "Unit", "cost", "parse_shard",
           "shard_units", "units", "BEST", "best_settings", "mean_auc", "RunResult", "Status", "run", "status",
           "COLUMNS", "DIAGNOSTIC_COLUMNS", "TIMING_COLUMNS", "ResultsDir", "merge", "read_results"]
