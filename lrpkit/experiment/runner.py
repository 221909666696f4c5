"""Running an experiment: unit by unit, resumable, sharded, with a cost estimate and a progress bar.

A unit (one image) is computed in two calls: :func:`lrpkit.lrp.explain` with per-sample γ/ε
tensors explains the image once per setting of the grid (sharing the forward pass and every layer
above the first varied one), then one :func:`lrpkit.pf.pixel_flipping` call perturbs the image for
every heatmap in every order (one row per heatmap and order; one row for the random order, which
does not depend on the heatmap), so that every perturbed image two curves share is built and scored
once. Each metric the config computes (:func:`lrpkit.experiment.metrics.active`) then fills its
columns from the heatmaps and curves, and the unit's rows are written atomically; a run only does
the units whose file is missing.

Determinism: a unit's numbers depend only on the config (the same seed, image and device give the
same bits), not on which units ran before it in the process, so an interrupted and resumed run, or
N shards merged, give the very table one uninterrupted run gives -- all but the wall-clock columns
(:data:`~lrpkit.experiment.store.TIMING_COLUMNS`).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import platform
import socket
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch

from .. import data, inpainting, lrp, models, pf, training
from ..checksums import sha256_file
from ..provenance import git_commit, lrpkit_version, package_versions, state_sha256
from . import metrics
from . import plan as planning
from . import store
from .config import Config, ConfigError, factory, load_config
from .grid import build_composite, grid_tensors, settings

__all__ = ["run", "RunResult", "status", "Status", "build_model", "planned", "compute_unit", "calibrate", "resolve"]

#: Packages whose versions go into the metadata (they change the numbers).
PACKAGES = ("torch", "torchvision", "numpy", "opencv-contrib-python-headless", "pillow", "pandas", "pyarrow",
            "PyYAML")


# --------------------------------------------------------------------------------------------------
# config, folder and model


def resolve(source: Union[str, os.PathLike, Mapping[str, Any], Config], out=None) -> Tuple[Config, store.ResultsDir]:
    """The config and the results directory of ``source``: a config file (or mapping, or
    :class:`Config`) with ``out`` (default: the config's ``output`` key, else ``<config stem>-results``
    beside it), or an existing results directory (which holds its own config)."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        folder = store.ResultsDir(source)
        if not folder.exists():
            raise FileNotFoundError(f"{folder.path} is a folder but not an experiment results directory (no "
                                    f"{store.CONFIG_FILE}); give a config file, or the folder a run wrote")
        if out is not None and Path(out).resolve() != folder.path.resolve():
            raise ValueError(f"--out {out} differs from the results directory {folder.path} given; drop --out")
        return load_config(folder.path / store.CONFIG_FILE), folder
    config = source if isinstance(source, Config) else load_config(source)
    if out is None:
        out = config.output_dir()
    if out is None:
        stem = Path(config.source).stem if config.source != "config" else (config.data.get("name") or "experiment")
        out = config.root / f"{stem}-results"
    return config, store.ResultsDir(out)


def planned(all_units: Sequence[planning.Unit], weights: Mapping[str, Any]) -> Dict[str, Any]:
    """What a results directory records of its plan (``plan.json``), and what a run, another shard
    or an import into the book must agree on: every unit (image file, label, sha256) and the
    weights' source and state checksum (from :func:`build_model`)."""
    return {"units": [u.record() for u in all_units],
            "weights": {"source": weights["source"], "state_sha256": weights["state_sha256"]}}


def build_model(config: Config, echo: Callable[[str], None] = print) -> Tuple[torch.nn.Module, Dict[str, Any], Config]:
    """The model of the config, a record of its weights, and the config with ``weights: auto`` resolved.

    The record's ``state_sha256`` (a hash of the state dict) identifies the weights whatever their
    source; a resumed run or another shard must have the same.
    """
    spec = config.data["model"]
    device = torch.device(config.data["device"])
    if spec["trained"] is not None:
        model = training.load_trained(spec["trained"], device=device)
        record = dataclasses.asdict(models.weights_info(model))
        record["requested"] = "model.trained"   # the folder is this machine's; the checksums identify the weights
    elif spec["factory"] is not None:
        model = factory(spec["factory"])()
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"{config.source}: key 'model.factory' {spec['factory']!r} returned "
                              f"{type(model).__name__}, not a torch.nn.Module")
        model = model.to(device).eval()
        record: Dict[str, Any] = {"source": "factory", "factory": spec["factory"]}
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", models.WeightsWarning)
            model = models.vgg(spec["arch"], spec["weights"], seed=config.data["seed"], device=device, progress=False)
        for warning in caught:
            echo(f"warning: {' '.join(str(warning.message).split())}")
        info = models.weights_info(model)
        record = dataclasses.asdict(info)
        if spec["weights"] == "auto":  # what "auto" found is part of the experiment
            resolved = {**config.data, "model": {**spec, "weights": info.source}}
            config = dataclasses.replace(config, data=resolved)
    record["state_sha256"] = state_sha256(model)
    return model, record, config


def _metadata(config: Config, weights: Mapping[str, Any], device: torch.device) -> Dict[str, Any]:
    first, second = config.axes
    return {
        "experiment": config.data.get("name"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config.data,
        "axes": {first.name: first.label(), second.name: second.label()},
        "weights": dict(weights),
        "lrpkit": {"version": lrpkit_version(), "git_commit": git_commit()},
        "packages": package_versions(PACKAGES),
        "python": platform.python_version(),
        "device": _device_record(device),
        "host": socket.gethostname(),
        "columns": {name: f"{kind}: {text}" for name, kind, text in store.columns(metrics.registered())},
    }


def _device_record(device: torch.device) -> Dict[str, Any]:
    record: Dict[str, Any] = {"device": str(device), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        record["name"] = torch.cuda.get_device_name(device)
    else:
        record["name"] = platform.processor() or platform.machine()
    return record


# --------------------------------------------------------------------------------------------------
# one unit


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters()), torch.float32)


class _Loaded(NamedTuple):
    """One unit's image, as the model and the figures need it."""

    x: torch.Tensor                  # [1, C, H, W] normalized, on the config's device in the model's dtype
    rgb: np.ndarray                  # [H, W, 3] uint8, the pixels as shown
    mask: Optional[torch.Tensor]     # [H, W] bool, the ground truth of a synthetic image (None for a photo)


def _load(config: Config, unit: planning.Unit, device: torch.device, dtype: torch.dtype) -> _Loaded:
    images = config.data["images"]
    if images["synthetic"] is not None:
        batch = planning.synthetic_images(config, unit.index, 1)
        if planning.synthetic_sha256(batch, 0) != unit.sha256:
            raise ValueError(f"image {unit.file} of the ground-truth task differs from the one planned (sha256 "
                             f"differs from plan.json): another lrpkit or torch version generates it differently; "
                             f"start a new results directory")
        return _Loaded(batch.normalized().to(device, dtype), batch.rgb()[0].numpy(), batch.masks[0].to(device))
    if sha256_file(unit.path) != unit.sha256:
        raise ValueError(f"image {unit.path} changed since the experiment was planned (sha256 differs from "
                         f"plan.json); restore it or start a new results directory")
    x, rgb = data.load_image(unit.path, images["size"], images["resize"], return_rgb=True)
    return _Loaded(x.to(device, dtype), rgb, None)


def _explain(model: torch.nn.Module, config: Config, unit: planning.Unit, x: torch.Tensor) -> lrp.Explanation:
    """The heatmaps of every setting of the grid for the unit's image (one :func:`lrpkit.lrp.explain` call)."""
    from .replay import explain_grid

    return explain_grid(config, model, x, unit.label if config.data["target"] == "label" else None)


def _pixel_flipping(model: torch.nn.Module, config: Config, x: torch.Tensor, relevance: torch.Tensor, target: int,
                    *, workers: Optional[int]) -> Tuple[pf.PixelFlippingResult, np.ndarray]:
    """One Pixel-Flipping call: every heatmap in every order, the random order once
    (:func:`lrpkit.experiment.metrics.curves_in_orders`).

    Returns
    -------
    (PixelFlippingResult, numpy.ndarray)
        The curves, and ``[S, O]`` int: the row of setting ``s`` in order ``config.orders[o]``.
    """
    options = dataclasses.replace(config.pf_options(), workers=workers)
    return metrics.curves_in_orders(pf.pixel_flipping, model, x, relevance, target, config.orders, options)


def _row_columns(config: Config, unit: planning.Unit, target: int, predicted: int) -> Dict[str, List[Any]]:
    """The :data:`store.ROW_COLUMNS` of the unit's rows: setting by setting, order by order."""
    first, second = config.grid
    first_axis, second_axis = config.axes
    comp = config.data["composite"]
    grid = settings(first, second)                                              # (i, j) of each setting

    def each_order(values):  # one value per setting, in the rows of all its orders
        return [value for value in values for _ in config.orders]

    columns = {"setting": each_order(range(len(grid))), "i": each_order(i for i, _ in grid),
               "j": each_order(j for _, j in grid), first_axis.name: each_order(first[i] for i, _ in grid),
               second_axis.name: each_order(second[j] for _, j in grid), "order": config.orders * len(grid)}
    same = {"unit": unit.id, "image": unit.index, "image_file": unit.file, "label": unit.label, "target": target,
            "predicted": predicted, "composite": comp["family"], "variant": comp["variant"]}
    return {**{name: [value] * len(columns["order"]) for name, value in same.items()}, **columns}


def compute_unit(model: torch.nn.Module, config: Config, unit: planning.Unit, *, workers: Optional[int] = None):
    """The results rows of one unit (image), as a pyarrow Table (columns :func:`store.columns` of the
    config's metrics, :func:`~lrpkit.experiment.metrics.active`)."""
    started = time.perf_counter()
    device = torch.device(config.data["device"])
    x, _, mask = _load(config, unit, device, _model_dtype(model))
    _sync(device)
    t0 = time.perf_counter()
    explanation = _explain(model, config, unit, x)
    _sync(device)
    lrp_seconds = time.perf_counter() - t0
    target = int(explanation.target[0])
    t0 = time.perf_counter()
    curves, curve_rows = _pixel_flipping(model, config, x, explanation.relevance, target, workers=workers)
    _sync(device)
    pf_seconds = time.perf_counter() - t0

    inputs = metrics.MetricInputs(config=config, unit=unit, model=model, image=x, explanation=explanation,
                                  target=target, orders=tuple(config.orders), curves=curves, curve_rows=curve_rows,
                                  mask=mask)
    computed = metrics.active(config)
    columns = _row_columns(config, unit, target, int(explanation.logits[0].argmax()))
    for metric in computed:
        columns.update(metrics.row_values(metric, inputs))
    n_rows = len(columns["order"])
    unit_seconds = time.perf_counter() - started
    work = {"unit_forward": curves.n_forward, "unit_inpainted": curves.n_inpainted, "unit_lrp_seconds": lrp_seconds,
            "unit_pf_seconds": pf_seconds, "unit_seconds": unit_seconds}
    columns.update({name: [value] * n_rows for name, value in work.items()})
    first_axis, second_axis = config.axes
    return store.table(columns, first_axis.name, second_axis.name, computed)


# --------------------------------------------------------------------------------------------------
# cost


def calibrate(model: torch.nn.Module, config: Config, unit: planning.Unit, *, workers: Optional[int] = None) -> Dict[str, float]:
    """Time a slice of one unit's work and extrapolate to a whole unit (an upper-bound estimate).

    Times one LRP pass of ``lrp.chunk_size`` settings, one batched forward pass and one inpainting
    on the unit's image; Pixel-Flipping's forward passes and inpaintings (which run in parallel) are
    counted from the config without sharing (:func:`~lrpkit.experiment.plan.cost`).

    Returns
    -------
    dict
        ``lrp``, ``pf`` and ``unit`` seconds per unit, and ``calibration`` (seconds spent here).
    """
    started = time.perf_counter()
    device = torch.device(config.data["device"])
    dtype = _model_dtype(model)
    x, rgb, _ = _load(config, unit, device, dtype)
    comp, p = config.data["composite"], config.data["pf"]
    first, second = config.grid
    chunk = min(config.data["lrp"]["chunk_size"], config.n_settings)
    a, b = grid_tensors(first, second, dtype=dtype, device=device)
    spread = torch.linspace(0, config.n_settings - 1, chunk).round().long().to(device)  # not just the first γ
    composite = build_composite(comp["family"], comp["variant"], a[spread], b[spread], heuristic=comp["heuristic"],
                                maxpool=comp["maxpool"])
    _sync(device)
    t0 = time.perf_counter()
    lrp.explain(model, x, None, composite, chunk_size=chunk)
    _sync(device)
    lrp_seconds = (time.perf_counter() - t0) * math.ceil(config.n_settings / chunk)
    batch = p["batch_size"] or (2 if device.type == "cpu" else 64)
    with torch.inference_mode():
        model(x.expand(batch, -1, -1, -1))           # warm-up
        _sync(device)
        t0 = time.perf_counter()
        model(x.expand(batch, -1, -1, -1))
        _sync(device)
        forward_seconds = time.perf_counter() - t0
    count = planning.cost(config, 1)
    pf_seconds = count.forward / batch * forward_seconds
    if count.inpaintings:
        size = rgb.shape[0]
        mask = np.zeros(rgb.shape[:2], dtype=np.uint8)
        mask[: size // 2] = 1                          # half the image: a middle step of the schedule
        t0 = time.perf_counter()
        inpainting.telea(rgb, mask)
        per_inpainting = time.perf_counter() - t0
        parallel = max(workers if workers is not None else
                       inpainting.default_workers(accelerated=device.type != "cpu"), 1)
        pf_seconds = max(pf_seconds, count.inpaintings * per_inpainting / parallel)
    if count.road_imputations:                         # ROAD: a solve of half the image per imputation
        from .. import imputation

        half = np.zeros(x.shape[-2:], dtype=bool)
        half[: half.shape[0] // 2] = True
        t0 = time.perf_counter()
        imputation.impute(x[0].detach().double().cpu().numpy(), half)
        per_imputation = time.perf_counter() - t0
        parallel = max(workers if workers is not None else
                       inpainting.default_workers(accelerated=device.type != "cpu"), 1)
        pf_seconds += max(count.road_forward / batch * forward_seconds,
                          count.road_imputations * per_imputation / parallel)
    return {"lrp": lrp_seconds, "pf": pf_seconds, "unit": lrp_seconds + pf_seconds,
            "calibration": time.perf_counter() - started}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _recorded_unit_seconds(folder: store.ResultsDir, done: List[str]) -> Optional[float]:
    """Median wall-clock seconds of the finished units (from their files), or None."""
    import pyarrow.parquet as pq

    times = []
    for unit_id in done[-20:]:
        try:
            times.append(pq.read_table(folder.unit_path(unit_id), columns=["unit_seconds"]).column(0)[0].as_py())
        except Exception:  # noqa: BLE001 - an estimate only; damaged files are reported elsewhere
            continue
    return statistics.median(times) if times else None


def _estimate(model: torch.nn.Module, config: Config, folder: store.ResultsDir, done: Set[str],
              todo: Sequence[planning.Unit], *, workers: Optional[int], echo: Callable[[str], None]) -> Dict[str, Any]:
    """The time ``todo`` will take, from the finished units' times or else a calibration, echoed.

    Returns
    -------
    dict
        ``unit`` and ``total`` seconds and their ``source`` (and the :func:`calibrate` times).
    """
    recorded = _recorded_unit_seconds(folder, sorted(done)) if done else None
    if recorded is not None:
        guess: Dict[str, Any] = {"unit": recorded, "source": "finished units"}
    else:
        guess = calibrate(model, config, todo[0], workers=workers)
        guess["source"] = f"a {guess['calibration']:.0f} s calibration"
    guess["total"] = guess["unit"] * len(todo)
    echo(f"  time: about {_duration(guess['unit'])} per unit, {_duration(guess['total'])} in all "
         f"(from {guess['source']}{'; an upper bound' if 'calibration' in guess else ''})")
    return guess


# --------------------------------------------------------------------------------------------------
# run


@dataclasses.dataclass
class RunResult:
    """What :func:`run` did.

    Attributes
    ----------
    out : pathlib.Path
        The results directory.
    total, selected, done_before, ran : int
        Units of the experiment, of this shard, already done at the start, run now.
    results : pathlib.Path or None
        ``results.parquet`` when every unit of the experiment is done, else None.
    cost : Cost
        The work of the units this run had to do.
    estimate : dict or None
        The time estimate (seconds per unit and in all), if one was made.
    seconds : float
        Wall-clock time of the run.
    """

    out: Path
    total: int
    selected: int
    done_before: int
    ran: int
    results: Optional[Path]
    cost: planning.Cost
    estimate: Optional[Dict[str, float]]
    seconds: float


def run(source, out=None, *, shard: Optional[Union[str, Tuple[int, int]]] = None, workers: Optional[int] = None,
        estimate: bool = True, dry_run: bool = False, progress: Optional[bool] = None,
        echo: Callable[[str], None] = print) -> RunResult:
    """Run an experiment, or the missing units of it, into a results directory.

    Parameters
    ----------
    source : path, mapping or Config
        A config file (or mapping), or a results directory to continue with its own config.
    out : path, optional
        The results directory (see :func:`resolve` for the default).
    shard : "K/N" or (K, N), optional
        Run only the K-th of N shares of the units (:func:`~lrpkit.experiment.plan.shard_units`).
    workers : int, optional
        Inpainting threads (:func:`lrpkit.pf.pixel_flipping`); they do not change the numbers.
    estimate : bool
        Print a time estimate before starting: from the finished units' times if there are any,
        otherwise from a short calibration on the first image.
    dry_run : bool
        Check everything and print the plan and estimate, but write nothing.
    progress : bool, optional
        Progress bar over units (default: on a terminal; elsewhere one line per unit).
    echo : callable
        Where the run's report lines go (default: print).

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError, ValueError, FileNotFoundError
        Before anything is written: a bad config, an unknown image set, a results directory of another
        config (naming the key), a bad shard.
    """
    started = time.perf_counter()
    if shard is not None:  # "K/N" or (K, N), checked alike
        shard = planning.parse_shard(shard if isinstance(shard, str) else f"{shard[0]}/{shard[1]}")
    config, folder = resolve(source, out)
    axes = config.axes
    store.column_types(axes[0].name, axes[1].name, metrics.active(config))  # a metric's column clash: before any work
    all_units = planning.units(config)
    model, weights, config = build_model(config, echo)
    plan_record = planned(all_units, weights)
    folder.check(config.data, plan_record, config.source)
    selected = planning.shard_units(all_units, shard)
    done = set(folder.done()) if folder.exists() else set()
    todo = [u for u in selected if u.id not in done]
    first, second = config.grid
    echo(f"experiment {config.data.get('name')!r}: {config.data['composite']['family']} "
         f"({config.data['composite']['variant']}), {axes[0].name} x {axes[1].name} = {len(first)} x {len(second)} "
         f"settings, orders {', '.join(config.orders)}, {config.data['device']}")
    part = f", shard {shard[0]}/{shard[1]}: {len(selected)}" if shard else ""
    echo(f"units: {len(all_units)}{part}, {len(selected) - len(todo)} done, {len(todo)} to run -> {folder.path}")
    work = planning.cost(config, len(todo))
    for line in work.lines():
        echo(f"  {line}")
    guess = _estimate(model, config, folder, done, todo, workers=workers, echo=echo) if estimate and todo else None
    if dry_run:
        return RunResult(folder.path, len(all_units), len(selected), len(selected) - len(todo), 0, None, work, guess,
                         time.perf_counter() - started)

    folder.create(config.to_yaml(), plan_record, _metadata(config, weights, torch.device(config.data["device"])))
    folder.check(config.data, plan_record, config.source)   # another run may have created it meanwhile
    folder.remove_dead_temporaries()
    unit_record = {"lrpkit_version": lrpkit_version(), "git_commit": git_commit(),
                   "host": socket.gethostname(), "device": str(config.data["device"])}
    from tqdm.auto import tqdm

    show = progress if progress is not None else (sys.stderr.isatty() or None)
    bar = tqdm(todo, desc="experiment", unit="image", disable=not show, dynamic_ncols=True)
    for k, unit in enumerate(bar, start=1):
        table = compute_unit(model, config, unit, workers=workers)
        finished = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        folder.write_unit(unit.id, store.with_provenance(table, {**unit_record, "unit": unit.id, "finished": finished}))
        if not show and progress is None:
            elapsed = time.perf_counter() - started
            echo(f"  unit {unit.id} ({unit.file}) done: {k}/{len(todo)}, about "
                 f"{_duration(elapsed / k * (len(todo) - k))} left")
    bar.close()
    results = None
    if set(u.id for u in all_units) <= set(folder.done()):
        results = store.merge([folder.path], progress=False)
        echo(f"all {len(all_units)} units done: {results}")
    return RunResult(folder.path, len(all_units), len(selected), len(selected) - len(todo), len(todo), results, work,
                     guess, time.perf_counter() - started)


# --------------------------------------------------------------------------------------------------
# status


@dataclasses.dataclass
class Status:
    """The state of a results directory.

    Attributes
    ----------
    out : pathlib.Path
    name : str or None
    units : list of str
        Every unit id of the experiment (empty if no run planned it yet).
    done, missing : list of str
    temporaries : list of pathlib.Path
        Leftovers of runs killed while writing (removed by the next run on that host).
    results : pathlib.Path or None
        ``results.parquet`` if written.
    unit_seconds : float or None
        Median time per finished unit.
    """

    out: Path
    name: Optional[str]
    units: List[str]
    done: List[str]
    missing: List[str]
    temporaries: List[Path]
    results: Optional[Path]
    unit_seconds: Optional[float]

    def lines(self, shards: Optional[int] = None) -> List[str]:
        """A report: done and missing units (with the shard of each missing one for ``shards``)."""
        out = [f"{self.out}: experiment {self.name!r}, {len(self.done)} of {len(self.units)} units done"]
        if self.missing:
            shown = ", ".join(self.missing[:20]) + (", ..." if len(self.missing) > 20 else "")
            out.append(f"missing ({len(self.missing)}): {shown}")
            if shards:
                needed = sorted({int(u) % shards + 1 for u in self.missing})
                out.append(f"shards with missing units (of {shards}): {', '.join(map(str, needed))}")
            if self.unit_seconds is not None:
                out.append(f"about {_duration(self.unit_seconds * len(self.missing))} of work left "
                           f"({_duration(self.unit_seconds)} per unit so far)")
        if self.temporaries:
            out.append(f"{len(self.temporaries)} temporary file(s) of interrupted or running writes (ignored)")
        out.append(f"results: {self.results}" if self.results else
                   "results.parquet: not yet (written when every unit is done, by run or merge)")
        return out


def status(source, out=None) -> Status:
    """Done and missing units of a results directory (or of the directory of a config file)."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        folder = store.ResultsDir(source)
    else:
        config = source if isinstance(source, Config) else load_config(source, resolve=False)
        _, folder = resolve(config, out)
    config_data = folder.read_config()
    plan = folder.read_plan() or {"units": []}
    units = [u["unit"] for u in plan["units"]]
    done = folder.done()
    results = folder.path / store.RESULTS_FILE
    return Status(folder.path, config_data.get("name"), units, done, [u for u in units if u not in set(done)],
                  folder.temporaries(), results if results.is_file() else None,
                  _recorded_unit_seconds(folder, done) if done else None)
