"""Executing the figure notebooks: papermill, one kernel and one log per notebook, and the cache.

:func:`run_figures` runs every figure notebook of the registry with its parameters -- or takes its
executed notebook from the cache (:mod:`lrpkit.book.cache`) when nothing it depends on changed --
and writes it to ``book/_generated/<chapter>/<figure id>.ipynb``. A kernel runs with this process's
environment, imports the lrpkit this build runs from (checked in the glued provenance), and writes
its own output to the notebook's log under ``_build/logs/``. A notebook that raises is reported
with the notebook, the cell and the error; the other notebooks still run. An executed notebook is
:func:`present`-ed before it is cached: its weights notice first, no stderr.

A figure's cache key is the :func:`~lrpkit.book.cache.fingerprint` of :func:`figure_inputs`. For a
figure that reads experiments, those inputs hold the keys the experiment step returned
(:func:`lrpkit.book.experiments.prepare`), passed in by the build; called without them, it computes
the same keys from the registry and the results on disk.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import figure_data
from ..checksums import sha256_file
from ..provenance import lrpkit_version, machine, provenance_record
from . import downloads
from .cache import Cache, Entry, code_inputs, data_checksums, weights_inputs
from .errors import BuildError
from .experiments import figure_keys
from .pages import glue_keys
from .registry import Figure, load_experiments

__all__ = ["REQUIRED_GLUE_KEYS", "BANNER_CELL_ID", "NOTEBOOK", "LOG", "FigureResult", "figure_inputs", "run_figures",
           "present", "kernel_environment"]

#: Keys every figure notebook must glue (made by :func:`lrpkit.provenance.provenance`).
REQUIRED_GLUE_KEYS = ("provenance", "banner")
#: The files of a figure's entry in the cache: the executed notebook and its log.
NOTEBOOK, LOG = "notebook.ipynb", "run.log"

LRPKIT_DIR = Path(__file__).resolve().parents[1]


@dataclass
class FigureResult:
    """What became of one figure notebook in a build."""

    figure: str
    status: str            # "executed" | "cached" | "failed"
    seconds: float
    fingerprint: str
    output: str
    log: str
    error: str | None = None


def figure_inputs(root: Path, figure: Figure, parameters: Mapping[str, Any], *,
                  experiment_keys: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Everything a figure notebook's result depends on: its cache key is their
    :func:`~lrpkit.book.cache.fingerprint`.

    The notebook file's checksum, the parameters, lrpkit and the pinned packages
    (:func:`~lrpkit.book.cache.code_inputs`), the images' and the weights' checksums, the machine's
    kernels (:func:`lrpkit.provenance.machine`: float32 rounding decides which heatmaps the thesis
    code breaks, so a build with ``ONEDNN_MAX_CPU_ISA`` set, or on another CPU or GPU, runs again)
    and, for a figure that reads experiments, their figure keys (``{"experiments": {id: key}}``), for
    one that reads a trained network, its key (:func:`lrpkit.book.networks.figure_key`).

    Parameters
    ----------
    root : path
        The book root.
    figure : Figure
    parameters : mapping
        The figure's resolved parameters (:meth:`Figure.resolved_parameters`).
    experiment_keys : mapping of str to str, optional
        The figure key of each experiment, by id, as :func:`lrpkit.book.experiments.prepare`
        returned them (:attr:`~lrpkit.book.experiments.ExperimentResult.figure_key`). Without it,
        the keys of the experiments the figure reads are computed from the registry, their configs
        and the results on disk (:func:`lrpkit.book.experiments.figure_key`): the same values.

    Raises
    ------
    ValueError
        ``experiment_keys`` lacks an experiment the figure reads; unknown image sets.
    FileNotFoundError
        A weights path that is not a file.
    """
    return {
        "figure": figure.id,
        "notebook_sha256": sha256_file(root / figure.notebook),
        "parameters": dict(parameters),
        **code_inputs(),
        "data_sha256": data_checksums(figure.data, f"figure {figure.id!r}"),
        **weights_inputs(parameters["weights"]),
        "machine": machine(str(parameters.get("device", "cpu"))),
        **({"experiments": _experiment_keys(root, figure, parameters, experiment_keys)} if figure.experiment else {}),
        **({"network": _network_key(root, figure, parameters)} if figure.network else {}),
    }


def _network_key(root: Path, figure: Figure, parameters: Mapping[str, Any]) -> dict[str, str]:
    """The trained network's key (inputs' fingerprint and weights' sha256), from its folder."""
    from . import networks
    from .registry import load_networks

    common = {k: parameters[k] for k in ("device", "weights", "seed")}
    return networks.figure_key(root, load_networks(root)[figure.network], parameters["profile"], common)


def _experiment_keys(root: Path, figure: Figure, parameters: Mapping[str, Any],
                     given: Mapping[str, str] | None) -> dict[str, str]:
    """The figure keys of the experiments ``figure`` reads: from ``given``, else from disk."""
    if given is None:
        common = {k: parameters[k] for k in ("device", "weights", "seed")}
        return figure_keys(root, figure.experiment, load_experiments(root), parameters["profile"], common)
    missing = [eid for eid in figure.experiment if eid not in given]
    if missing:
        raise ValueError(f"figure {figure.id!r} reads experiment {missing[0]!r}, which experiment_keys lacks "
                         f"(it has: {', '.join(given) or 'none'}); pass every key prepare returned, or none")
    return {eid: given[eid] for eid in figure.experiment}


def run_figures(root: Path, figures: Sequence[Figure], profile: str, common: Mapping[str, Any],
                force: bool = False, timeout: float | None = None,
                progress: bool = True, *, experiment_keys: Mapping[str, str] | None = None) -> list[FigureResult]:
    """Execute (or take from the cache) every figure notebook; raise BuildError on failures.

    Each executed notebook is :func:`present`-ed before it is cached: weights notice first, no
    stderr (which stays in its log). ``experiment_keys``: the figure keys of the experiments the
    figures read, as :func:`lrpkit.book.experiments.prepare` returned them (see
    :func:`figure_inputs`; computed from disk when not given).
    """
    from tqdm import tqdm

    logs = root / "_build" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cache = Cache(root / "_build" / "cache")
    env = kernel_environment()
    results = []
    bar = tqdm(figures, desc="figures", unit="fig", disable=not progress, dynamic_ncols=True)
    for figure in bar:
        bar.set_postfix_str(figure.id)
        params = figure.resolved_parameters(profile, common)
        inputs = figure_inputs(root, figure, params, experiment_keys=experiment_keys)
        result = _run_one(root, figure, params, cache.entry("figures", figure.id, inputs), logs / f"{figure.id}.log",
                          force, timeout, env)
        if result.status == "failed" and progress:
            bar.write(f"failed: {figure.id} (details at the end; log {result.log})")
        results.append(result)
    bar.close()
    failures = [r.error for r in results if r.status == "failed"]
    if failures:
        raise BuildError(f"{len(failures)} of {len(figures)} figure notebook(s) failed:\n  "
                         + "\n  ".join(failures))
    return results


def _run_one(root: Path, figure: Figure, params: Mapping[str, Any], entry: Entry, log: Path, force: bool,
             timeout: float | None, env: Mapping[str, str]) -> FigureResult:
    """One figure: executed into its cache ``entry`` unless that is complete (and not ``force``),
    then copied to the book."""
    import nbformat

    start = time.perf_counter()
    status = "cached"
    if force or not entry.complete:
        status = "executed"
        log.write_text(f"figure {figure.id}: {figure.notebook} -> {figure.output}\n"
                       f"inputs {entry.fingerprint}:\n{json.dumps(entry.inputs, indent=2, default=str)}\n\n")
        try:
            with entry.fill() as folder:
                notebook = folder / NOTEBOOK
                # The notebook's data files (Provenance.attach) go into the entry, beside the notebook.
                figure_env = {**env, figure_data.FOLDER_ENV: str(folder / downloads.DATA),
                              figure_data.FIGURE_ENV: figure.id}
                _execute(root, figure, params, notebook, log, timeout, figure_env)
                _check_kernel_lrpkit(figure, notebook)
                executed = present(nbformat.read(notebook, as_version=4))
                # papermill records absolute paths of this machine; the book's own are enough.
                executed.metadata.setdefault("papermill", {}).update(
                    input_path=figure.notebook.as_posix(), output_path=figure.output.as_posix())
                nbformat.write(executed, notebook)
                with open(log, "a", encoding="utf-8") as handle:
                    handle.write(f"\nfinished in {time.perf_counter() - start:.1f} s\n")
                shutil.copyfile(log, folder / LOG)
        except Exception as exc:  # noqa: BLE001 -- reported with notebook and cell
            message = str(exc) if isinstance(exc, BuildError) else _describe_failure(figure, root, exc, log)
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"\nFAILED: {message}\n")
            return FigureResult(figure.id, "failed", time.perf_counter() - start, entry.fingerprint,
                                str(figure.output), str(log), message)
    # Copy only when different: an unchanged page keeps its mtime, so Sphinx skips it.
    cached, target = entry.folder / NOTEBOOK, root / figure.output
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_bytes() != cached.read_bytes():
        shutil.copyfile(cached, target)
    downloads.publish(root, figure.id, entry.folder, cached)
    return FigureResult(figure.id, status, time.perf_counter() - start, entry.fingerprint, str(figure.output),
                        str(entry.folder / LOG))


def _execute(root: Path, figure: Figure, parameters: Mapping[str, Any], out: Path, log: Path,
             timeout: float | None, env: Mapping[str, str]) -> None:
    import papermill

    logger = logging.getLogger("papermill")
    handler = logging.FileHandler(log, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    stream = open(log, "a", encoding="utf-8")  # noqa: SIM115 -- the kernel's own stdout/err
    try:
        papermill.execute_notebook(
            str(root / figure.notebook), str(out), parameters=dict(parameters),
            kernel_name="python3", progress_bar=False, log_output=True, cwd=str(root),
            execution_timeout=timeout, start_timeout=120,
            kernel_manager_class=_kernel_manager_writing_to(stream, env))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        logger.propagate = True
        handler.close()
        stream.close()


def _kernel_manager_writing_to(stream, env: Mapping[str, str]):
    """A kernel manager whose kernel runs with ``env`` and writes its own stdout/stderr (kernel
    warnings, C-level messages) to ``stream`` -- the notebook's log -- not to the console."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):  # noqa: D401
            kw.setdefault("stdout", stream)
            kw.setdefault("stderr", stream)
            kw.setdefault("env", dict(env))
            return await super().start_kernel(**kw)

    return LoggedKernelManager


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:80]
    return ""


def _describe_failure(figure: Figure, root: Path, exc: Exception, log: Path) -> str:
    """One clear paragraph: notebook, cell, error."""
    import nbformat
    from papermill.exceptions import PapermillExecutionError

    where = f"notebook {figure.notebook} (figure {figure.id})"
    if isinstance(exc, PapermillExecutionError):
        source_nb = nbformat.read(root / figure.notebook, as_version=4)
        p = next(i for i, c in enumerate(source_nb.cells)
                 if "parameters" in c.get("metadata", {}).get("tags", []))
        index = exc.cell_index          # in the executed notebook: injected cell at p + 1
        if index == p + 1:
            cell = "the injected parameters cell"
        else:
            src_index = index - 1 if index > p + 1 else index
            cell = (f"cell {src_index + 1} of {len(source_nb.cells)} "
                    f"(In [{exc.exec_count}]: {_first_line(exc.source)!r})")
        return f"{where} failed in {cell}: {exc.ename}: {exc.evalue} -- full log: {log}"
    return f"{where} failed: {type(exc).__name__}: {exc} -- full log: {log}"


def _check_kernel_lrpkit(figure: Figure, executed: Path) -> None:
    """The kernel must have imported the same lrpkit as the build (else a stale install ran)."""
    keys = glue_keys(executed)
    missing = [k for k in REQUIRED_GLUE_KEYS if k not in keys]
    if missing:
        raise BuildError(f"notebook {figure.notebook} (figure {figure.id}) glued no "
                         f"{' / '.join(repr(k) for k in missing)}; every figure notebook ends with "
                         "glue('provenance', p) and glue('banner', p.banner()) where "
                         "p = lrpkit.provenance.provenance(...)")
    record = provenance_record(keys["provenance"])
    if record is None:
        raise BuildError(f"notebook {figure.notebook}: the 'provenance' glue carries no "
                         "provenance record; glue the object returned by "
                         "lrpkit.provenance.provenance(...)")
    version = lrpkit_version()
    if record.get("lrpkit_version") != version:
        raise BuildError(f"notebook {figure.notebook}: the kernel imported lrpkit "
                         f"{record.get('lrpkit_version')} but the build uses {version} "
                         f"({LRPKIT_DIR}); install this checkout (pip install -e .) or set "
                         "PYTHONPATH")


def kernel_environment() -> dict[str, str]:
    """The environment of the notebook kernels: this process's, plus what the book needs."""
    env = dict(os.environ)
    # The kernel imports the lrpkit this build runs from, whatever the kernel's cwd.
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(LRPKIT_DIR.parent),
                                         *(p for p in paths if p != str(LRPKIT_DIR.parent))])
    # Figures are glued as PNG by the inline backend, whatever the caller's MPLBACKEND.
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    # tqdm.auto in a kernel without ipywidgets warns on every import; its bars still work.
    env["PYTHONWARNINGS"] = ",".join(
        w for w in (env.get("PYTHONWARNINGS", ""), "ignore:IProgress not found:Warning") if w)
    return env


#: The MIME type of a widget's output (a tqdm.auto progress bar in a kernel with ipywidgets).
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: Id of the cell :func:`present` puts the weights notice in.
BANNER_CELL_ID = "lrpkit-banner"


def present(nb: Any) -> Any:
    """Prepare an executed notebook (nbformat v4) for its page, in place, and return it.

    - Output written to stderr (warnings, progress bars) is removed: it is in the notebook's log,
      and it names folders of the build machine. So are progress bars drawn as widgets (``tqdm.auto``
      where ipywidgets is installed) with the notebook's widget state: a page with widgets would load
      their script from a CDN, and the site must work offline.
    - The weights notice (the ``banner`` glue output) is shown first: in a cell with the tag
      ``remove-input`` right after the title (a first markdown cell that starts with a ``# ``
      heading is split after that line). The glued original stays, no longer displayed, for the
      chapter pages that paste it.
    - One parameters cell: papermill's ``injected-parameters`` cell holds the values this build
      used, so the notebook's own ``parameters`` cell (its defaults) is hidden when one was injected.
    - A cell that glues a table does not show the same table again as its DataFrame result.
    """
    import nbformat
    from myst_nb.ext.glue import GLUE_PREFIX

    def tags(cell):
        return cell.get("metadata", {}).get("tags", [])

    if any("injected-parameters" in tags(c) for c in nb.cells):
        for cell in nb.cells:
            if "parameters" in tags(cell) and "remove-cell" not in tags(cell):
                cell.metadata["tags"] = tags(cell) + ["remove-cell"]
    nb.metadata.pop("widgets", None)
    banner = None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.get("outputs", [])
                        if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
                        and WIDGET_VIEW not in o.get("data", {})]
        if any(o.get("metadata", {}).get("scrapbook") for o in cell.outputs):
            cell.outputs = [o for o in cell.outputs if o.get("output_type") != "execute_result"]
        for output in cell.outputs:
            if output.get("metadata", {}).get("scrapbook", {}).get("name") == "banner":
                banner = output
    if banner is None or any(c.get("id") == BANNER_CELL_ID for c in nb.cells):
        return nb
    scrapbook = banner["metadata"]["scrapbook"]
    prefix = scrapbook.get("mime_prefix", "")
    data = {key[len(prefix):]: value for key, value in banner["data"].items()}
    banner["data"] = {GLUE_PREFIX + key: value for key, value in data.items()}
    scrapbook["mime_prefix"] = GLUE_PREFIX
    notice = nbformat.v4.new_code_cell(
        "# The weights notice of this notebook (glued as 'banner' in its last cell), shown "
        "first by lrpkit.book.execution.present", metadata={"tags": ["remove-input"]})
    notice.id = BANNER_CELL_ID
    notice.outputs = [nbformat.v4.new_output("display_data", data=data)]
    where = 0
    if nb.cells and nb.cells[0].cell_type == "markdown":
        title, _, rest = nb.cells[0].source.lstrip("\n").partition("\n")
        if title.startswith("# ") and rest.strip():
            nb.cells[0].source = title
            intro = nbformat.v4.new_markdown_cell(rest.strip("\n"))
            intro.id = f"{BANNER_CELL_ID}-intro"
            nb.cells.insert(1, intro)
        where = 1
    nb.cells.insert(where, notice)
    return nb
