"""The build's experiment step: run an experiment config when its inputs changed, reuse it otherwise.

Figures of thesis chapter 4 read the results of an :mod:`lrpkit.experiment` run (a grid of LRP
hyperparameters graded by Pixel-Flipping). The registry names those runs in its ``experiments:``
map (:class:`lrpkit.book.registry.Experiment`)::

    experiments:
      grid-tutorial:
        title: "LRP-Tutorial on the (γ, ε) grid"
        config: experiments/thesis-tutorial.yaml      # relative to the book root
        data: [axolotl]                                # image sets it reads (their checksums)
        gpu: true                                      # `full` needs a GPU to be practical
        parameters:                                    # changes of the config per profile
          all: {}
          smoke: {grid: {gamma: [0, 0.25], epsilon: [0, 0.25]}, images: {set: axolotl, size: 64}}
          full: {}                                     # the config as written: the thesis

The changes follow :func:`lrpkit.experiment.config.apply_changes`; the build sets ``device``,
``model.weights`` and ``seed`` from its command line, like the notebooks' common parameters.

An experiment is a step of the build like a figure notebook, keyed by the same ingredients
(:mod:`lrpkit.book.cache`: :func:`~lrpkit.book.cache.fingerprint` over the resolved config, the
images' checksums, the weights, lrpkit's version and source hash and the pinned packages). A
figure's inputs include the *figure key* of each experiment it reads, so that new results
re-execute the notebooks that read them: :func:`prepare` returns them
(:attr:`ExperimentResult.figure_key`) for the figure step, and :func:`figure_key` computes the same
value from the registry, the config and the results on disk (nothing is remembered between calls).
Where it differs from a figure's cache entry: its results
are kept where the notebooks read them, ``book/_generated/_experiments/<id>/<profile>/``
(:func:`~lrpkit.book.registry.results_dir`), with the inputs they were made from in
:data:`RECORD_FILE`; and an interrupted run is not thrown away but continued -- the experiment is
resumable unit by unit -- from ``.<profile>.<fingerprint>.partial`` beside it, which replaces the
results directory when complete.

Results made elsewhere (a cluster run, merged) are taken instead of a run with ``--results
ID=DIR`` (:mod:`lrpkit.book.imports`): checked against the experiment the build would run, then
copied into the results folder, and reused by later builds like results the build made. The
figures that read them are keyed by the imported table's checksum as well (``figure_key`` in
:data:`RECORD_FILE`), so that importing other results re-executes them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence

from . import imports
from .cache import code_inputs, data_checksums, fingerprint, weights_inputs
from .errors import BuildError
from .registry import Experiment, results_dir

__all__ = ["ExperimentResult", "resolve_config", "experiment_inputs", "experiment_fingerprint", "figure_key",
           "figure_keys", "prepare", "RECORD_FILE"]

#: The file in a results directory that records the inputs it was made from.
RECORD_FILE = "book-inputs.json"


@dataclass
class ExperimentResult:
    """What the build did with one experiment.

    ``fingerprint`` is the hash of its inputs (:func:`experiment_inputs`); ``figure_key`` what the
    figures reading its results are keyed by: the fingerprint, or for results made elsewhere a hash
    of it and of the imported table's checksum (``figure_key`` of :data:`RECORD_FILE`).
    """

    experiment: str
    status: str              # "ran" | "reused" | "imported"
    seconds: float
    fingerprint: str
    results: str             # the results directory, relative to the book root
    figure_key: str


# --------------------------------------------------------------------------------------------
# Config and fingerprint
# --------------------------------------------------------------------------------------------

def resolve_config(root: Path, experiment: Experiment, profile: str, common: Mapping[str, Any]):
    """The experiment's :class:`~lrpkit.experiment.Config` for ``profile`` and the build's device,
    weights and seed.

    Raises
    ------
    ValueError
        One line naming the experiment, the profile and the problem; for a config that reads an
        ILSVRC-2012 validation folder that is not there, also what to set (``full`` profile).
    """
    import yaml

    from ..experiment.config import ConfigError, apply_changes, load_config

    path = root / experiment.config
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        changed = apply_changes(raw if isinstance(raw, Mapping) else {}, experiment.changes(profile, common))
        factory = isinstance(changed.get("model"), Mapping) and changed["model"].get("factory") is not None
        return load_config(path, changes=experiment.changes(profile, common, factory=factory, root=root))
    except yaml.YAMLError:
        raise ValueError(f"experiment {experiment.id!r}: config {experiment.config.as_posix()} is not valid YAML") from None
    except ConfigError as err:
        message = str(err)
        unset = re.search(r"'\$\{?(\w+)\}?'.*not set", message)
        if "imagenet_val" in message and unset:   # the usual case on a GPU: the full profile without the images
            raise ValueError(f"profile {profile!r} needs the ILSVRC-2012 validation images: set {unset[1]} to their "
                             f"folder (experiment {experiment.id}, {experiment.config.as_posix()}), or build with "
                             "--profile quick") from None
        hint = ""
        if "imagenet_val" in message:
            hint = ("; this profile reads the ILSVRC-2012 validation images: download the validation set "
                    "(image-net.org), point the variable the config names (e.g. IMAGENET_VAL) at its folder, "
                    "and build again, or build with --profile quick")
        raise ValueError(f"experiment {experiment.id!r} (profile {profile!r}, config {experiment.config.as_posix()}) "
                         f"cannot run: {message}{hint}") from None


def experiment_inputs(root: Path, experiment: Experiment, config) -> Dict[str, Any]:
    """Everything the experiment's results depend on (its hash is the fingerprint).

    The resolved config (device, weights and seed included; folders of this machine left out),
    every image's file, label and sha256, the weights file's checksum, lrpkit's version with source
    hash and the pinned packages (and pyarrow, which writes the results): the ingredients of
    :func:`lrpkit.book.execution.figure_inputs`.
    """
    from ..experiment import plan
    from ..experiment.config import machine_independent

    compared = machine_independent(config.compared())
    try:
        units = [u.record() for u in plan.units(config)]
    except Exception as err:  # noqa: BLE001 -- any failure to list the images is one line
        raise ValueError(f"experiment {experiment.id!r}: cannot list its images: {err}") from None
    model = config.data["model"]     # a model.factory builds its own model: no weights file to check
    if model["trained"] is not None:  # a network the build trained: its recorded weights checksum
        from ..training import read_record

        weights = {"trained_weights_sha256": read_record(model["trained"])["sha256"]}
    elif model["factory"] is None:
        weights = weights_inputs(model["weights"], arch=model["arch"])
    else:
        weights = {}
    return {
        "experiment": experiment.id,
        "config": compared,
        "images": units,
        "data_sha256": data_checksums(experiment.data, f"experiment {experiment.id!r}"),
        **code_inputs(extra_packages=("pyarrow",)),
        **weights,
    }


def experiment_fingerprint(root: Path, experiment: Experiment, profile: str, common: Mapping[str, Any]) -> str:
    """The fingerprint of the experiment's inputs for ``profile`` and the build's ``common``
    parameters (``device``, ``weights``, ``seed``)."""
    config = resolve_config(root, experiment, profile, common)
    return fingerprint(experiment_inputs(root, experiment, config))


def figure_key(root: Path, experiment: Experiment, profile: str, common: Mapping[str, Any]) -> str:
    """What a figure reading the experiment's results is keyed by, from what is on disk.

    The experiment's fingerprint (:func:`experiment_fingerprint`); where its results folder holds
    results of these inputs, the ``figure_key`` its :data:`RECORD_FILE` records (for results made
    elsewhere it also covers the imported table's checksum). This is the key :func:`prepare`
    returned for the results now on disk, whether or not it ran in this process. Results that a
    build has yet to import are not on disk: their key is the fingerprint until then.
    """
    fp = experiment_fingerprint(root, experiment, profile, common)
    return _recorded_key(Path(root) / results_dir(experiment.id, profile), fp)


def figure_keys(root: Path, ids: Sequence[str], experiments: Mapping[str, Experiment], profile: str,
                common: Mapping[str, Any]) -> Dict[str, str]:
    """:func:`figure_key` of each experiment ``ids`` names, by id."""
    return {eid: figure_key(root, experiments[eid], profile, common) for eid in ids}


# --------------------------------------------------------------------------------------------
# Running or reusing
# --------------------------------------------------------------------------------------------

def _record(folder: Path) -> Optional[Dict[str, Any]]:
    path = folder / RECORD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def _complete(folder: Path, fp: str, imported_sha256: Optional[str] = None) -> bool:
    """Whether ``folder`` holds results of the inputs ``fp`` (and, if given, the imported table with that checksum)."""
    record = _record(folder)
    if record is None or record.get("fingerprint") != fp or not (folder / "results.parquet").is_file():
        return False
    return imported_sha256 is None or (record.get("imported") or {}).get("results_sha256") == imported_sha256


def _recorded_key(folder: Path, fp: str) -> str:
    """The figure key of the results in ``folder`` if they were made from the inputs ``fp``, else ``fp``."""
    if not _complete(folder, fp):
        return fp
    return (_record(folder) or {}).get("figure_key", fp)


def _figure_key(fp: str, imported: Optional[Mapping[str, Any]]) -> str:
    """What the figures reading the results are keyed by: the inputs' fingerprint ``fp``, and for
    results made elsewhere also their table's checksum."""
    if imported is None:
        return fp
    return fingerprint({"inputs": fp, "imported_results_sha256": imported["results_sha256"]})


class _Resolved(NamedTuple):
    """One experiment of a build, resolved and checked before anything runs or is written."""

    config: Any                          # its :class:`~lrpkit.experiment.Config` for this build
    inputs: Dict[str, Any]               # :func:`experiment_inputs`
    fingerprint: str                     # their :func:`~lrpkit.book.cache.fingerprint`
    checked: Optional[imports.Checked]   # results made elsewhere to take instead of a run


def _resolve(root: Path, experiment: Experiment, profile: str, common: Mapping[str, Any],
             source: Optional[Path], echo: Callable[[str], None]) -> _Resolved:
    """Resolve and fingerprint the experiment, and check the results directory ``source`` to import
    (if any); warn when the ``full`` profile would run it without a GPU."""
    config = resolve_config(root, experiment, profile, common)
    inputs = experiment_inputs(root, experiment, config)
    checked = imports.check(experiment.id, Path(source), config, echo) if source is not None else None
    if profile == "full" and experiment.gpu and checked is None and not str(common["device"]).startswith("cuda"):
        echo(f"warning: experiment {experiment.id!r} in profile 'full' on {common['device']}: it needs a GPU to be "
             f"practical (hours on a CPU)")
    return _Resolved(config, inputs, fingerprint(inputs), checked)


def _fresh_partial(target: Path, profile: str, fp: str, restart: bool) -> Path:
    """The partial folder of the inputs ``fp`` beside ``target``: those of other inputs are removed
    (never continued), and this one too when ``restart``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{profile}.{fp[:20]}.partial"
    for stale in target.parent.glob(f".{profile}.*.partial"):
        if stale != partial:
            shutil.rmtree(stale, ignore_errors=True)
    if restart and partial.exists():
        shutil.rmtree(partial)
    return partial


def prepare(root: Path, ids: Sequence[str], experiments: Mapping[str, Experiment], profile: str,
            common: Mapping[str, Any], *, force: bool = False, progress: bool = True,
            imported: Optional[Mapping[str, Path]] = None,
            echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> List[ExperimentResult]:
    """Make sure the results of the experiments ``ids`` exist for ``profile``: reuse, import or run each.

    Every config is resolved and fingerprinted, and every results directory to import is checked,
    first, so that one that cannot run or be taken stops the build before anything runs or is
    written. An experiment whose results folder was made from the same inputs is reused; one with
    a results directory in ``imported`` is copied from there (:mod:`lrpkit.book.imports`); otherwise
    it runs into ``.<profile>.<fingerprint>.partial`` beside its folder (continued if an earlier build
    was interrupted there), which replaces the folder when complete.

    Parameters
    ----------
    root : path
        The book root.
    ids : sequence of str
        The experiments the figures to build read.
    experiments : mapping of str to Experiment
        The registry's experiments (:func:`lrpkit.book.registry.load_experiments`).
    profile : str
    common : mapping
        The build's ``device``, ``weights`` and ``seed``.
    force : bool
        Run (or import) even when the inputs are unchanged.
    progress : bool
        The experiment's progress bar over images.
    imported : mapping of str to path, optional
        Results directories made elsewhere (``lrpkit experiment run`` and ``merge``), by experiment id.
    echo : callable
        Where the lines of the step go (stderr).

    Returns
    -------
    list of ExperimentResult
        One per experiment, in the order of ``ids`` (repeats dropped), each with the ``figure_key``
        that the figures reading it are keyed by (:func:`lrpkit.book.execution.figure_inputs`); the
        same value :func:`figure_key` computes afterwards from the results on disk.
    """
    from ..experiment import runner
    from ..experiment.store import write_atomic

    root = Path(root)
    ids = list(dict.fromkeys(ids))
    imported = dict(imported or {})
    unread = sorted(set(imported) - set(ids))
    if unread:
        raise ValueError(f"--results {unread[0]}=...: no figure of this build reads experiment {unread[0]!r} "
                         f"(they read: {', '.join(ids) or 'none'})")
    resolved = {eid: _resolve(root, experiments[eid], profile, common, imported.get(eid), echo) for eid in ids}

    results = []
    for eid in ids:
        fp, checked = resolved[eid].fingerprint, resolved[eid].checked
        folder = results_dir(eid, profile)
        target = root / folder
        start = time.perf_counter()
        if not force and _complete(target, fp, checked and checked.results_sha256):
            results.append(ExperimentResult(eid, "reused", time.perf_counter() - start, fp, folder.as_posix(),
                                            _recorded_key(target, fp)))
            continue
        partial = _fresh_partial(target, profile, fp, restart=force or checked is not None)
        if checked is not None:
            echo(f"experiment {eid!r} ({experiments[eid].title}), profile {profile}: taking the results of "
                 f"{checked.source}")
            imports.copy(checked, partial)
        else:
            _run(runner, eid, experiments[eid], resolved[eid].config, partial, profile, fp, progress, echo)
        seconds = time.perf_counter() - start
        made = checked.record() if checked is not None else None
        record = {"experiment": eid, "profile": profile, "fingerprint": fp, "figure_key": _figure_key(fp, made),
                  "inputs": resolved[eid].inputs, "imported": made, "seconds": round(seconds, 2)}
        write_atomic(partial / RECORD_FILE,
                     lambda p: p.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8"))
        _replace(partial, target)
        results.append(ExperimentResult(eid, "ran" if checked is None else "imported", seconds, fp,
                                        folder.as_posix(), record["figure_key"]))
    return results


def _run(runner, eid: str, experiment: Experiment, config, partial: Path, profile: str, fp: str, progress: bool,
         echo: Callable[[str], None]) -> None:
    """Run (or continue) the experiment into ``partial``; one line naming it if it fails."""
    echo(f"experiment {eid!r} ({experiment.title}), profile {profile}: running into {partial.name} "
         f"(inputs {fp[:12]})")
    try:
        # the time estimate's calibration would take longer than the smoke profile's whole run
        outcome = runner.run(config, partial, progress=progress, estimate=profile != "smoke",
                             echo=lambda line: echo(f"  {line}"))
    except Exception as err:  # noqa: BLE001 -- one line naming the experiment; the folder stays to continue
        raise BuildError(f"experiment {eid!r} (config {experiment.config.as_posix()}, profile "
                         f"{profile}) failed: {type(err).__name__}: {err}") from err
    if outcome.results is None:
        raise BuildError(f"experiment {eid!r}: the run ended without results.parquet in {partial}")


def _replace(new: Path, target: Path) -> None:
    """Put the complete folder ``new`` at ``target``; the old one is removed only after the swap."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
