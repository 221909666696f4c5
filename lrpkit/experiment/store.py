"""The results directory: one file per finished unit, written atomically, and the merged table.

Layout::

    DIR/config.yaml       the resolved config (grid values explicit, auto settings resolved)
    DIR/plan.json         the units (image file, label, sha256) and the weights' checksum
    DIR/metadata.json     provenance: config, weights, lrpkit version and source hash, git commit,
                          packages, device, host, date; after a merge also which lrpkit versions and devices made the units
    DIR/units/<id>.parquet  the rows of one finished unit (one image)
    DIR/results.parquet   all rows, in unit order: written when every unit is there (run or merge)

Every file is written to a temporary name in the same folder, flushed to disk and renamed: a run
killed at any moment leaves either a whole file or none (and possibly a temporary file, which is
ignored and removed later). A directory is only ever extended with the units of *its* config: a
run or merge with another config is refused, naming the first key that differs.

The table's columns, in order: which row it is (:data:`ROW_COLUMNS`), the columns of the metrics
the config computes (:mod:`lrpkit.experiment.metrics`), the unit's work (:data:`UNIT_COLUMNS`).
Read the results with one call: ``pandas.read_parquet(DIR / "results.parquet")``, or
:func:`read_results` (which also reads a partial directory).
"""
from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

from . import metrics
from .config import first_difference, shorten, UNCOMPARED
from .metrics import Column

__all__ = ["ResultsDir", "read_results", "TIMING_COLUMNS", "ROW_COLUMNS", "UNIT_COLUMNS", "COLUMNS",
           "DIAGNOSTIC_COLUMNS", "LOCALISATION_COLUMNS", "ROAD_COLUMNS", "columns", "column_types", "table", "CONFIG_FILE", "PLAN_FILE", "METADATA_FILE",
           "RESULTS_FILE", "UNITS_DIR", "merge"]

CONFIG_FILE = "config.yaml"
PLAN_FILE = "plan.json"
METADATA_FILE = "metadata.json"
RESULTS_FILE = "results.parquet"
UNITS_DIR = "units"
#: Columns that hold wall-clock times: the only ones that differ between two runs of one config.
TIMING_COLUMNS = ("unit_lrp_seconds", "unit_pf_seconds", "unit_seconds")
_UNIT_FILE = re.compile(r"(\d+)\.parquet")
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<host>[^.]+)\.(?P<pid>\d+)\.tmp")
_PROVENANCE_KEY = b"lrpkit.unit"


#: Which row: the image, the setting and the order; the first columns of every results table
#: (``<first axis>``/``<second axis>`` are the family's axis names, e.g. ``gamma``/``epsilon``).
ROW_COLUMNS: Tuple[Column, ...] = (
    Column("unit", "string", "the unit (image) id, zero-padded: the name of its file units/<unit>.parquet"),
    Column("image", "int32", "position of the image in the experiment's image list"),
    Column("image_file", "string", "the image: its file in the image set, or its path in the validation folder"),
    Column("label", "int32", "ground-truth ImageNet class of the image"),
    Column("target", "int32", "class explained and scored (the label, or the predicted class with target: "
                              "predicted)"),
    Column("predicted", "int32", "class the model predicts for the unperturbed image"),
    Column("composite", "string", "composite family (tutorial, decreasing-gamma)"),
    Column("variant", "string", "the family's variant (table, thesis-code)"),
    Column("setting", "int32", "setting number n2 * i + j (the thesis's experiment id for its 16 x 16 grid)"),
    Column("i", "int32", "index of the value on the first axis"),
    Column("j", "int32", "index of the value on the second axis"),
    Column("<first axis>", "float64", "value of the first axis (e.g. gamma of LRP-Tutorial, gamma1 of "
                                      "Decreasing-gamma)"),
    Column("<second axis>", "float64", "value of the second axis (e.g. epsilon of LRP-Tutorial, gamma2)"),
    Column("order", "string", "Pixel-Flipping order: morf, lrf or random (the random order ignores the heatmap: "
                              "its rows of one image are equal)"),
)
#: The unit's work, the same in all its rows; the last columns of every results table.
UNIT_COLUMNS: Tuple[Column, ...] = (
    Column("unit_forward", "int32", "distinct images the unit's Pixel-Flipping scored (shared by its rows)"),
    Column("unit_inpainted", "int32", "distinct images the unit's Pixel-Flipping inpainted"),
    Column("unit_lrp_seconds", "float64", "wall-clock seconds of the unit's LRP (all its heatmaps)"),
    Column("unit_pf_seconds", "float64", "wall-clock seconds of the unit's Pixel-Flipping (all its curves)"),
    Column("unit_seconds", "float64", "wall-clock seconds of the whole unit"),
)


def columns(computed: Iterable[metrics.Metric]) -> Tuple[Column, ...]:
    """The columns of a results table whose rows hold the metrics ``computed``, in order: the
    :data:`ROW_COLUMNS`, the columns of each metric, the :data:`UNIT_COLUMNS`.

    Raises
    ------
    ValueError
        A metric's column with the name of a row or unit column.
    """
    computed = list(computed)
    reserved = {c.name for c in ROW_COLUMNS + UNIT_COLUMNS}
    for metric in computed:
        clash = [c.name for c in metric.columns if c.name in reserved]
        if clash:
            raise ValueError(f"column {clash[0]!r} of metric {metric.name!r} is a column of every results table "
                             f"already; give it another name")
    return ROW_COLUMNS + tuple(c for m in computed for c in m.columns) + UNIT_COLUMNS


#: The heatmap's instability diagnostics (:class:`~lrpkit.experiment.metrics.InstabilityDiagnostics`), all
#: float64; they follow ``relevance_sum`` when the config's ``diagnostics`` is on, as it is by default.
DIAGNOSTIC_COLUMNS: Tuple[Column, ...] = metrics.InstabilityDiagnostics.columns
#: The columns of a results table of the built-in metrics with ``diagnostics: false``, without ``road``,
#: on images without a ground truth (an image set, a validation folder), in all three orders, in order
#: (from the registry when this module is imported; :func:`columns` gives those of any metrics).
COLUMNS: Tuple[Column, ...] = columns(m for m in metrics.registered() if not isinstance(
    m, (metrics.InstabilityDiagnostics, metrics.Localisation, metrics.ROAD, metrics.RoadSymmetricGain)))
#: The columns :class:`~lrpkit.experiment.metrics.Localisation` adds for ``images.synthetic``.
LOCALISATION_COLUMNS: Tuple[Column, ...] = metrics.Localisation.columns
#: The columns the second grader adds with the config's ``road`` (:class:`~lrpkit.experiment.metrics.ROAD`,
#: and :class:`~lrpkit.experiment.metrics.RoadSymmetricGain` with both morf and lrf).
ROAD_COLUMNS: Tuple[Column, ...] = metrics.ROAD.columns + metrics.RoadSymmetricGain.columns


def column_types(first_axis: str, second_axis: str, computed: Iterable[metrics.Metric]) -> List[Tuple[str, Any]]:
    """``[(column, pyarrow type)]`` of a results table whose rows hold the metrics ``computed``, in order."""
    import pyarrow as pa

    kinds = {"string": pa.string(), "int32": pa.int32(), "float64": pa.float64(),
             "list<float64>": pa.list_(pa.float64())}
    names = {"<first axis>": first_axis, "<second axis>": second_axis}
    types = [(names.get(c.name, c.name), kinds[c.dtype]) for c in columns(computed)]
    seen = [name for name, _ in types]
    twice = next((name for name in seen if seen.count(name) > 1), None)
    if twice is not None:
        raise ValueError(f"the results table would have the column {twice!r} twice (a metric's column named like "
                         f"a grid axis?); rename the metric's column")
    return types


def table(values: Mapping[str, Sequence], first_axis: str, second_axis: str, computed: Iterable[metrics.Metric]):
    """A pyarrow Table of results rows from ``{column: values}``, with the schema of :func:`column_types`."""
    import pyarrow as pa

    types = column_types(first_axis, second_axis, computed)
    missing = [n for n, _ in types if n not in values]
    if missing or len(values) != len(types):
        raise ValueError(f"results rows need the columns {[n for n, _ in types]}; missing {missing}, extra "
                         f"{sorted(set(values) - {n for n, _ in types})}")
    return pa.table({name: pa.array(values[name], type=kind) for name, kind in types})


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
    return path.with_name(f".{path.name}.{host}.{os.getpid()}.tmp")


def _write_temporary(path: Path, write: Callable[[Path], None]) -> Path:
    tmp = _temporary(path)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(temporary path)``, then rename: never a half-written ``path``."""
    tmp = _write_temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` with ``text`` atomically unless it exists (returns False then; no overwrite)."""
    tmp = _write_temporary(path, lambda p: p.write_text(text, encoding="utf-8"))
    try:
        os.link(tmp, path)  # fails if path exists: two shards starting at once cannot both create it
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def _json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=False, ensure_ascii=False, default=str) + "\n"


class ResultsDir:
    """A results directory (it need not exist yet).

    Parameters
    ----------
    path : str or path
    """

    def __init__(self, path):
        self.path = Path(path)
        self.units_dir = self.path / UNITS_DIR

    def __repr__(self) -> str:
        return f"ResultsDir({str(self.path)!r})"

    # ---- what is there
    def exists(self) -> bool:
        """Whether the folder holds an experiment (its ``config.yaml``)."""
        return (self.path / CONFIG_FILE).is_file()

    def read_config(self) -> Dict[str, Any]:
        """The directory's resolved config, as a dict."""
        path = self.path / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{self.path} is not an experiment results directory (no {CONFIG_FILE}); "
                                    f"run `lrpkit experiment run CONFIG --out {self.path}` first")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ValueError(f"{path} is damaged ({type(err).__name__}); restore it from the config the "
                             f"directory was made with") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} is damaged (not a mapping)")
        return data

    def read_plan(self) -> Optional[Dict[str, Any]]:
        """The directory's plan (units and weights), or None if it was not written yet."""
        path = self.path / PLAN_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise ValueError(f"{path} is damaged (not JSON); delete it and run again to rewrite it") from None

    def read_metadata(self) -> Optional[Dict[str, Any]]:
        path = self.path / METADATA_FILE
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def done(self) -> List[str]:
        """Ids of the finished units (their files), sorted."""
        if not self.units_dir.is_dir():
            return []
        return sorted(m.group(1) for m in map(_UNIT_FILE.fullmatch, os.listdir(self.units_dir)) if m)

    def unit_path(self, unit_id: str) -> Path:
        return self.units_dir / f"{unit_id}.parquet"

    def temporaries(self) -> List[Path]:
        """Temporary files left by runs that were killed while writing (or that are writing now)."""
        found = []
        for folder in (self.path, self.units_dir):
            if folder.is_dir():
                found += [folder / n for n in os.listdir(folder) if _TEMPORARY.fullmatch(n)]
        return sorted(found)

    def remove_dead_temporaries(self) -> int:
        """Remove the temporary files of processes of this host that are no longer running."""
        host = _temporary(self.path).name.split(".")[-3]
        removed = 0
        for path in self.temporaries():
            match = _TEMPORARY.fullmatch(path.name)
            if match["host"] == host and not _alive(int(match["pid"])):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # ---- checks
    def check(self, config: Mapping[str, Any], plan: Optional[Mapping[str, Any]], source: str) -> None:
        """Refuse a directory made with another config or plan, naming the first key that differs.

        Parameters
        ----------
        config : mapping
            The resolved config to run (:attr:`Config.data`).
        plan : mapping or None
            The plan record (units, weights); None skips that comparison.
        source : str
            Name of the config, for the message.
        """
        if not self.exists():
            leftovers = set(self.temporaries())  # of a run killed while creating the directory
            if self.path.exists() and (not self.path.is_dir() or any(p not in leftovers for p in self.path.iterdir())):
                raise ValueError(f"{self.path} exists and is not an experiment results directory (no {CONFIG_FILE}); "
                                 f"choose a new or empty folder for --out")
            return
        there = {k: v for k, v in self.read_config().items() if k not in UNCOMPARED}
        here = {k: v for k, v in dict(config).items() if k not in UNCOMPARED}
        diff = first_difference(there, here)
        if diff is None and plan is not None:
            saved = self.read_plan()
            if saved is not None:
                diff = first_difference(saved, dict(plan))
        if diff is not None:
            key, a, b = diff
            raise ValueError(f"results directory {self.path} was made with another config: {key!r} is "
                             f"{shorten(a)} there but {shorten(b)} in {source}; use a new --out folder, or run "
                             f"`lrpkit experiment run {self.path}` to continue with its own config")

    # ---- writing
    def create(self, config_yaml: str, plan: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        """Write config, plan and metadata where missing (never over an existing file), and ``units/``."""
        self.path.mkdir(parents=True, exist_ok=True)
        create_exclusive(self.path / CONFIG_FILE, config_yaml)
        create_exclusive(self.path / PLAN_FILE, _json(plan))
        create_exclusive(self.path / METADATA_FILE, _json(metadata))
        self.units_dir.mkdir(exist_ok=True)

    def write_unit(self, unit_id: str, table) -> Path:
        """Write one unit's rows (a pyarrow Table) atomically to ``units/<id>.parquet``."""
        import pyarrow.parquet as pq

        path = self.unit_path(unit_id)
        write_atomic(path, lambda tmp: pq.write_table(table, tmp))
        return path

    def read_unit(self, unit_id: str, expected_rows: Optional[int] = None):
        """One unit's rows as a pyarrow Table, checked: readable, of this unit, complete."""
        import pyarrow.parquet as pq

        path = self.unit_path(unit_id)
        try:
            table = pq.read_table(path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise ValueError(f"unit file {path} is damaged ({first}); delete it and run again to redo the unit") from None
        ids = set(table.column("unit").to_pylist()) if "unit" in table.column_names else set()
        if ids != {unit_id}:
            raise ValueError(f"unit file {path} holds the rows of unit(s) {sorted(ids)}, not {unit_id}; delete it "
                             f"and run again")
        if expected_rows is not None and table.num_rows != expected_rows:
            raise ValueError(f"unit file {path} has {table.num_rows} rows, not {expected_rows}; delete it and run "
                             f"again")
        return table

    def unit_provenance(self, unit_id: str) -> Dict[str, Any]:
        """What the unit's file records about the run that made it (lrpkit version, host, device, date)."""
        import pyarrow.parquet as pq

        meta = pq.read_schema(self.unit_path(unit_id)).metadata or {}
        return json.loads(meta.get(_PROVENANCE_KEY, b"{}"))

    def write_results(self, table) -> Path:
        import pyarrow.parquet as pq

        path = self.path / RESULTS_FILE
        write_atomic(path, lambda tmp: pq.write_table(table, tmp))
        return path

    def update_metadata(self, changes: Mapping[str, Any]) -> None:
        metadata = self.read_metadata() or {}
        metadata.update(changes)
        write_atomic(self.path / METADATA_FILE, lambda tmp: tmp.write_text(_json(metadata), encoding="utf-8"))


def with_provenance(table, provenance: Mapping[str, Any]):
    """The table with ``provenance`` in its schema metadata (kept in the unit's file)."""
    meta = dict(table.schema.metadata or {})
    meta[_PROVENANCE_KEY] = json.dumps(dict(provenance), default=str).encode()
    return table.replace_schema_metadata(meta)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


def _unit_ids(plan: Mapping[str, Any]) -> List[str]:
    return [u["unit"] for u in plan["units"]]


def _expected_rows(config: Mapping[str, Any]) -> int:
    grid = config["grid"]
    first, second = list(grid.values())
    return len(first) * len(second) * len(config["pf"]["orders"])


def merge(sources: Sequence, out=None, *, progress: Optional[bool] = None) -> Path:
    """Check that every unit is present exactly once in ``sources`` and write one table.

    Parameters
    ----------
    sources : sequence of paths
        Results directories of one config (e.g. one per shard, or one shared by all shards).
    out : path, optional
        Where ``results.parquet`` goes (default: the first source). A new ``out`` gets the sources'
        config, plan and metadata.

    Returns
    -------
    pathlib.Path
        The written ``results.parquet``.

    Raises
    ------
    ValueError
        Sources of different configs (naming the key), a unit missing from all sources or present in
        two, a damaged unit file.
    """
    import pyarrow as pa
    from tqdm.auto import tqdm

    dirs = [ResultsDir(s) for s in sources]
    if not dirs:
        raise ValueError("merge needs at least one results directory")
    first = dirs[0]
    config = first.read_config()
    plan = first.read_plan()
    if plan is None:
        raise ValueError(f"{first.path} has no {PLAN_FILE}: no run got as far as planning there; run it first")
    for other in dirs[1:]:
        other.check(config, plan, str(first.path / CONFIG_FILE))
    target = ResultsDir(out) if out is not None else first
    if target.path.resolve() not in [d.path.resolve() for d in dirs]:
        target.check(config, plan, str(first.path / CONFIG_FILE))

    ids = _unit_ids(plan)
    where: Dict[str, List[ResultsDir]] = {i: [] for i in ids}
    for d in dirs:
        for unit_id in d.done():
            if unit_id not in where:
                raise ValueError(f"{d.unit_path(unit_id)} is not a unit of this experiment (it has units "
                                 f"{ids[0]}..{ids[-1]}); remove it")
            where[unit_id].append(d)
    missing = [i for i in ids if not where[i]]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} of {len(ids)} units are missing ({shown}); run the missing units "
                         f"(`lrpkit experiment status DIR` lists them) and merge again")
    twice = [i for i in ids if len(where[i]) > 1]
    if twice:
        raise ValueError(f"unit {twice[0]} is in {where[twice[0]][0].path} and in {where[twice[0]][1].path} "
                         f"({len(twice)} units twice); keep each unit in one directory and merge again")

    rows = _expected_rows(config)
    tables, versions, devices = [], set(), set()
    for unit_id in tqdm(ids, desc="merge", unit="unit", disable=None if progress is None else not progress):
        d = where[unit_id][0]
        tables.append(d.read_unit(unit_id, rows))
        made = d.unit_provenance(unit_id)
        versions.add(made.get("lrpkit_version", "unknown"))
        devices.add(made.get("device", "unknown"))
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    if target is not first and not target.exists():
        target.create(yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=120), plan,
                      first.read_metadata() or {})
    path = target.write_results(table)
    target.update_metadata({"merged": {"units": len(ids), "rows": table.num_rows,
                                       "sources": [str(d.path) for d in dirs],
                                       "lrpkit_versions_of_units": sorted(versions),
                                       "devices_of_units": sorted(devices)}})
    return path


def read_results(path, *, partial: bool = False):
    """The results table of a directory as a pandas DataFrame (one row per image × setting × order).

    Parameters
    ----------
    path : str or path
        A results directory.
    partial : bool
        Read the finished units even when some are missing (otherwise the complete
        ``results.parquet`` is required).
    """
    import pandas as pd
    import pyarrow as pa

    folder = ResultsDir(path)
    results = folder.path / RESULTS_FILE
    if results.is_file() and not partial:
        return pd.read_parquet(results)
    config = folder.read_config()
    plan = folder.read_plan() or {"units": []}
    done = folder.done()
    if not partial:
        raise FileNotFoundError(f"{results} does not exist: {len(done)} of {len(plan['units'])} units are done; "
                                f"finish the run (`lrpkit experiment run {folder.path}`) or merge, or read "
                                f"the finished units with read_results(..., partial=True)")
    rows = _expected_rows(config)
    tables = [folder.read_unit(u, rows).replace_schema_metadata(None) for u in done]
    if not tables:
        return pd.DataFrame()
    return pa.concat_tables(tables).to_pandas()
