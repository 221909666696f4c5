"""Build the companion book: figure registry -> papermill -> Jupyter Book.

Every figure and table of the book is made by a parameterized notebook in ``notebooks/``. The
registry ``notebooks/figures.yml`` names, for each figure id, its notebook, the chapter that shows
it, the data it reads, whether its ``full`` profile needs a GPU, and its parameters per profile
(``smoke``: CI, minutes; ``quick``: a CPU laptop, under half an hour; ``full``: the thesis's scale,
for a GPU). The parameters common to all notebooks are ``device``, ``weights``, ``profile`` and
``seed``.

``python -m lrpkit.book build`` executes the registry with papermill (one progress bar over the
figures, one log per notebook under ``_build/logs/``), skipping a notebook whose inputs -- the
notebook file, its parameters, lrpkit's version and source, the pinned packages and the data
checksums -- are those of a run already in the cache (``_build/figures/``). The executed notebooks
are written to ``book/_generated/<chapter>/<figure id>.ipynb`` and never edited by hand. Then
``jupyter-book build . -W -n --keep-going`` renders the site with ``execute_notebooks: "off"``;
the prose pages paste figures and numbers from the executed notebooks with myst-nb ``glue``.

Before any notebook runs, the build checks once that the device exists on this machine and
that the weights asked for load (``imagenet``, a state-dict path); either failing is a one-line
error. A notebook that raises fails the build with the notebook, the cell and the error named; a
glue key that a page asks for and no notebook provides fails the build too. Each executed notebook
shows its weights notice first and no stderr (:func:`present`); the summary says which figures, or
whether all of them, used random weights.

Each figure notebook ends by gluing :func:`provenance` (``provenance`` and ``banner`` keys): the
weights and their checksum, profile, device, parameters, lrpkit version and git commit, date, and
a visible warning when the network's weights are random.

References
----------
R. Bermúdez Schettino, *In-Depth Hyperparameter Selection for Layer-Wise Relevance Propagation*,
Master's thesis, TU Berlin, 2022.
"""
from __future__ import annotations

import argparse
import ast
import datetime as _dt
import hashlib
import html
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from . import __version__, book_experiments

PROFILES = ("smoke", "quick", "full")
COMMON_PARAMETERS = ("device", "weights", "profile", "seed")
#: Keys every figure notebook must glue (made by :func:`provenance`).
REQUIRED_GLUE_KEYS = ("provenance", "banner")
REGISTRY = Path("notebooks") / "figures.yml"
GENERATED = Path("book") / "_generated"
#: Packages whose versions are part of a notebook's inputs (they change the numbers or pictures).
PINNED_PACKAGES = ("torch", "torchvision", "numpy", "matplotlib", "opencv-contrib-python-headless",
                   "pillow", "pandas", "seaborn")

_PACKAGE_DIR = Path(__file__).resolve().parent


class BuildError(RuntimeError):
    """The book build failed; the message says which notebook, cell, page or key is at fault."""


# --------------------------------------------------------------------------------------------
# Provenance (called at the end of every figure notebook)
# --------------------------------------------------------------------------------------------

def source_hash() -> str:
    """SHA-256 over the source files of the imported ``lrpkit`` package (names and bytes).

    ``lrpkit.__version__`` alone does not change when the code does; the book's cache keys and
    provenance use this hash beside it.
    """
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE_DIR).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def lrpkit_version() -> str:
    """``"<version>+src.<first 12 hex of source_hash()>"``."""
    return f"{__version__}+src.{source_hash()[:12]}"


def git_commit(path: Path | str | None = None) -> str:
    """The git commit of the checkout holding ``path`` (default: lrpkit's), ``-dirty`` if it has
    uncommitted changes to tracked files, or ``"unknown"`` outside a git checkout."""
    where = Path(path) if path is not None else _PACKAGE_DIR
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=where, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _weights_record(model: Any) -> dict[str, Any] | None:
    """What ``lrpkit.models`` recorded about the weights it loaded into ``model``, as a dict."""
    if model is None:
        return None
    from . import models
    try:
        info = models.weights_info(model)
    except TypeError:
        raise ValueError("provenance(model=...): the model carries no weights record; load it "
                         "with lrpkit.models.vgg16(...) so that the page can say which weights "
                         "made its figures") from None
    record = asdict(info)
    # The warning text names folders of the build machine; the banner says the same in words.
    record.pop("warning", None)
    record["path"] = public_value(record.get("path"))
    record["requested"] = public_value(record.get("requested"))
    record["state_sha256"] = state_sha256(model)
    return record


def public_value(value: Any) -> Any:
    """``value``, or only the file name if it is an absolute (or ``~``) path.

    A page must not show the folders of the machine that built it; a weights file stays
    identified by its name and its sha256.
    """
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~")):
        return Path(value).name
    return value


def state_sha256(model: Any) -> str:
    """SHA-256 over a model's ``state_dict`` (names, dtypes, shapes and values, on the CPU).

    Random weights have no file to checksum; this identifies them all the same (the same seed
    and torch version give the same hash on every machine).
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Provenance:
    """How a figure was made. Renders as an HTML table (``provenance`` glue key); its
    :meth:`banner` says visibly whether the network's weights are random."""

    parameters: dict[str, Any]
    weights: dict[str, Any] | None
    device: str
    lrpkit_version: str
    git_commit: str
    date: str
    packages: dict[str, str] = field(default_factory=dict)

    @property
    def random_weights(self) -> bool:
        """True when the figures were made with randomly initialized weights."""
        return self.weights is not None and self.weights.get("source") == "random"

    @property
    def unverified_weights(self) -> bool:
        """True when the "pretrained" file did not have torchvision's published sha256."""
        return (self.weights is not None and self.weights.get("source") == "imagenet"
                and self.weights.get("verified") is False)

    def as_dict(self) -> dict[str, Any]:
        return {"parameters": self.parameters, "weights": self.weights, "device": self.device,
                "lrpkit_version": self.lrpkit_version, "git_commit": self.git_commit,
                "date": self.date, "packages": self.packages,
                "random_weights": self.random_weights}

    def record(self) -> str:
        """The provenance as JSON (also embedded in the HTML, for the build and the tests)."""
        return json.dumps(self.as_dict(), default=str, sort_keys=True)

    def _weights_text(self) -> str:
        if self.weights is None:
            return "none (no network involved)"
        w = self.weights
        text = f"{w.get('arch', 'network')} {w.get('source', '?')}"
        if self.random_weights:
            text += f" (seed {w.get('seed')}"
            if w.get("requested") not in (None, "random"):
                text += f"; {w['requested']!r} was requested, pretrained weights unavailable"
            text += ")"
        elif w.get("source") == "imagenet":
            text += " pretrained" + ("" if w.get("verified", True) else " (UNVERIFIED checksum)")
        if w.get("path"):
            text += f", file {w['path']} (sha256 {w.get('sha256')})"
        if w.get("state_sha256"):
            text += f", parameters sha256 {w['state_sha256'][:16]}…"
        return text

    def _repr_html_(self) -> str:
        rows = [
            ("Weights", self._weights_text()),
            ("Profile", self.parameters.get("profile", "?")),
            ("Device", self.device),
            ("Parameters", ", ".join(f"{k}={v!r}" for k, v in self.parameters.items())),
            ("lrpkit", self.lrpkit_version),
            ("Git commit", self.git_commit),
            ("Date (UTC)", self.date),
            ("Packages", ", ".join(f"{k} {v}" for k, v in self.packages.items())),
        ]
        body = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(str(v))}</code>"
                       f"</td></tr>" for k, v in rows)
        record = self.record().replace("</", "<\\/")
        return ('<details class="lrpkit-provenance" open><summary>How this figure was made'
                f'</summary><table class="table">{body}</table>'
                f'<script type="application/json" class="lrpkit-provenance-record">{record}'
                '</script></details>')

    def banner(self) -> "Banner":
        """A visible notice: a warning when the weights are random, else which weights."""
        return Banner(self)


@dataclass
class Banner:
    """The notice at the top of a figure page (``banner`` glue key)."""

    provenance: Provenance

    def _repr_html_(self) -> str:
        p = self.provenance
        if p.random_weights:
            return ('<div class="admonition warning lrpkit-random-weights">'
                    '<p class="admonition-title">Random weights</p>'
                    '<p>The figures on this page were computed with a <strong>randomly '
                    'initialized</strong> VGG-16 (' + html.escape(p._weights_text()) + '), '
                    'because no pretrained ImageNet weights were reachable when the book was '
                    'built. They show how the methods behave on this network, not what a trained '
                    'network attends to. Rebuild with pretrained weights to reproduce the '
                    "thesis's pictures.</p></div>")
        if p.unverified_weights:
            return ('<div class="admonition warning lrpkit-unverified-weights">'
                    '<p class="admonition-title">Unverified weights</p>'
                    '<p>The figures on this page were computed with weights whose checksum does '
                    '<strong>not</strong> match the pretrained VGG-16 that torchvision publishes ('
                    + html.escape(p._weights_text()) + '). They may be damaged or other weights, '
                    'so the figures may not show what the trained network attends to. Replace the '
                    'file and rebuild.</p></div>')
        if p.weights is None:
            return ('<div class="admonition note lrpkit-weights"><p class="admonition-title">'
                    'Weights</p><p>No network is involved in making this output.</p></div>')
        return ('<div class="admonition note lrpkit-weights"><p class="admonition-title">Weights'
                '</p><p>Figures computed with ' + html.escape(p._weights_text()) + '.</p></div>')

    def __repr__(self) -> str:
        if self.provenance.weights is None:
            return "No network weights involved"
        if self.provenance.unverified_weights:
            return "Unverified weights"
        return "Random weights" if self.provenance.random_weights else "Trained weights"


def provenance(parameters: Mapping[str, Any], model: Any = None) -> Provenance:
    """Record how a figure was made, for the ``provenance`` and ``banner`` glue keys.

    Parameters
    ----------
    parameters : mapping
        The notebook's parameters: at least ``device``, ``weights``, ``profile`` and ``seed``.
    model : torch.nn.Module, optional
        The network the figure was computed with, as returned by ``lrpkit.models``; its record
        of the weights loaded (source, checksum, random or not) goes into the provenance. None
        for figures that involve no network.

    Absolute paths (a weights file's) are shown by their file name only (:func:`public_value`).

    Returns
    -------
    Provenance
        Displays as an HTML table; ``.banner()`` is the page's weights notice.
    """
    missing = [k for k in COMMON_PARAMETERS if k not in parameters]
    if missing:
        raise ValueError(f"provenance(parameters=...): missing {', '.join(missing)}; pass every "
                         f"notebook parameter ({', '.join(COMMON_PARAMETERS)} and the figure's own)")
    device = str(parameters["device"])
    if model is not None:
        try:
            device = str(next(model.parameters()).device)
        except (AttributeError, StopIteration):
            pass
    if device.startswith("cuda"):
        try:
            import torch
            device += f" ({torch.cuda.get_device_name(torch.device(device))})"
        except Exception:  # noqa: BLE001 -- the name is only informative
            pass
    return Provenance(
        parameters={k: public_value(v) for k, v in parameters.items()},
        weights=_weights_record(model),
        device=device,
        lrpkit_version=lrpkit_version(),
        git_commit=git_commit(),
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        packages=_package_versions(("torch", "torchvision")),
    )


def _package_versions(names: Sequence[str]) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# --------------------------------------------------------------------------------------------
# Tables (called by the notebooks)
# --------------------------------------------------------------------------------------------

#: How :func:`composite_table` names a composite's max-pool treatment (backward pass).
MAXPOOL_NAMES = {"max": "winner takes all", "avg": "as 2×2 average"}


def composite_table(composites: Sequence[Any]):
    """The rules of one or more composites as one table, with the options that also decide
    their heatmaps.

    Parameters
    ----------
    composites : sequence of lrpkit.composites.Composite
        The very objects a notebook explains with, so that the table cannot differ from them.

    Returns
    -------
    pandas.DataFrame
        :meth:`Composite.table` of each (``Layer index``, ``Rule``, ``Hyperparameters``), preceded
        by a ``Composite`` column when there are several, and followed by ``Denominator``
        (the heuristic of thesis §2.1.5) and ``Max-pooling`` (how relevance passes a max-pool).
    """
    import pandas as pd

    composites = list(composites)
    if not composites:
        raise ValueError("composite_table(composites=[]): pass at least one composite")
    frames = []
    for c in composites:
        frame = c.table()
        if len(composites) > 1:
            frame.insert(0, "Composite", c.name)
        frame["Denominator"] = c.heuristic
        frame["Max-pooling"] = MAXPOOL_NAMES.get(c.maxpool, c.maxpool)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def html_table(frame: Any, float_format: str | None = None) -> Any:
    """A pandas DataFrame as the book shows tables: HTML, no index, left-aligned headers.

    Parameters
    ----------
    frame : pandas.DataFrame
    float_format : str, optional
        A format spec for floats, e.g. ``".4g"``.

    Returns
    -------
    IPython.display.HTML
        For ``glue``.
    """
    from IPython.display import HTML

    formatter = None if float_format is None else ("{:" + float_format + "}").format
    return HTML(frame.to_html(index=False, classes="table", justify="left",
                              float_format=formatter))


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

@dataclass
class Figure:
    """One registry entry: a thesis figure or table and the notebook that makes it."""

    id: str
    title: str
    notebook: Path          # relative to the book root
    chapter: str            # docname of the prose page showing it, e.g. "book/what-lrp-sees"
    gpu: bool               # whether the `full` profile needs a GPU to be practical
    data: list[str]         # image sets of data/sets.tsv that the notebook reads
    parameters: dict[str, dict[str, Any]]   # "all" and one entry per profile
    experiment: list[str] = field(default_factory=list)   # experiments it reads (book_experiments)

    @property
    def output(self) -> Path:
        """Where the executed notebook goes (relative to the book root)."""
        return GENERATED / Path(self.chapter).name / f"{self.id}.ipynb"

    def resolved_parameters(self, profile: str, common: Mapping[str, Any]) -> dict[str, Any]:
        params = dict(common)
        params["profile"] = profile
        params.update(self.parameters.get("all", {}))
        params.update(self.parameters.get(profile, {}))
        params.update(book_experiments.figure_parameters(self.experiment, profile))
        return params


def load_registry(root: Path | str = ".") -> list[Figure]:
    """Read and check ``notebooks/figures.yml`` under ``root``.

    Raises
    ------
    FileNotFoundError
        The registry or a notebook it names does not exist.
    ValueError
        An entry is malformed, a notebook has committed outputs or no ``parameters`` cell, or a
        registry parameter is not defined in that cell.
    """
    root = Path(root)
    path = root / REGISTRY
    if not path.is_file():
        raise FileNotFoundError(f"figure registry not found: {path}")
    doc = yaml.safe_load(path.read_text()) or {}
    experiments = book_experiments.load_experiments(root, doc, path)
    entries = doc.get("figures")
    if not isinstance(entries, Mapping) or not entries:
        raise ValueError(f"{path}: expected a non-empty mapping 'figures: {{id: entry}}'")
    figures = []
    for fid, entry in entries.items():
        where = f"{path}: figure {fid!r}"
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", str(fid)):
            raise ValueError(f"{where}: ids are lower-case letters, digits and dashes")
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected a mapping")
        unknown = set(entry) - {"title", "notebook", "chapter", "gpu", "data", "parameters", "experiment"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        for required in ("title", "notebook", "chapter"):
            if required not in entry:
                raise ValueError(f"{where}: missing field {required!r}")
        params = entry.get("parameters") or {}
        bad = set(params) - {"all", *PROFILES}
        if bad:
            raise ValueError(f"{where}: parameters has {sorted(bad)}; use 'all' and the profiles "
                             f"{', '.join(PROFILES)}")
        for group, values in params.items():
            if not isinstance(values or {}, Mapping):
                raise ValueError(f"{where}: parameters.{group} must be a mapping")
            clash = set(values or {}) & {"device", "weights", "profile"}
            if clash:
                raise ValueError(f"{where}: parameters.{group} sets {sorted(clash)}; these come "
                                 "from the build command")
        notebook = Path("notebooks") / entry["notebook"]
        figure = Figure(id=str(fid), title=str(entry["title"]), notebook=notebook,
                        chapter=str(entry["chapter"]), gpu=bool(entry.get("gpu", False)),
                        data=[str(d) for d in entry.get("data") or []],
                        parameters={k: dict(v or {}) for k, v in params.items()},
                        experiment=book_experiments.figure_experiments(entry.get("experiment"), where,
                                                                       experiments))
        names = notebook_parameters(root / notebook)
        if figure.experiment and "results" not in names:
            raise ValueError(f"{notebook}: reads experiment(s) {figure.experiment} but its 'parameters' cell "
                             "does not define results (the results directory the build passes)")
        missing = [k for k in COMMON_PARAMETERS if k not in names]
        if missing:
            raise ValueError(f"{notebook}: its 'parameters' cell does not define "
                             f"{', '.join(missing)}")
        for group, values in figure.parameters.items():
            undefined = sorted(set(values) - names)
            if undefined:
                raise ValueError(f"{where}: parameters.{group} sets {undefined}, which "
                                 f"{notebook}'s 'parameters' cell does not define")
        chapter_file = root / f"{figure.chapter}.md"
        if not chapter_file.is_file():
            raise FileNotFoundError(f"{where}: chapter page {chapter_file} not found")
        figures.append(figure)
    return figures


def notebook_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters``; checks the notebook is clean.

    Raises
    ------
    FileNotFoundError, ValueError
        No such notebook; no (or more than one) ``parameters`` cell; committed outputs.
    """
    import nbformat

    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path}: needs exactly one cell tagged 'parameters' (found {len(cells)})")
    for index, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            raise ValueError(f"{path}: cell {index} has committed outputs; source notebooks are "
                             "stored clean (jupyter nbconvert --clear-output --inplace)")
    names = set()
    for node in ast.parse(cells[0].source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            if isinstance(target, ast.Name):
                names.add(target.id)
    return names


# --------------------------------------------------------------------------------------------
# Inputs, fingerprints and the cache
# --------------------------------------------------------------------------------------------

def _sha256_file(path: Path) -> str:
    from .models import sha256_file  # the one file checksum of the package

    return sha256_file(path)


def data_checksums(figure: Figure) -> dict[str, str]:
    """SHA-256 of every image of the image sets the figure declares (``data:`` in the registry),
    from the manifest ``data/images.tsv`` that :mod:`lrpkit.data` checks every fetched file
    against."""
    return image_checksums(figure.data, f"figure {figure.id!r}")


def image_checksums(names: Sequence[str], owner: str) -> dict[str, str]:
    """``{file: sha256}`` of every image of the image sets ``names`` (figures and experiments);
    ``owner`` names the registry entry in the error for an unknown set."""
    if not names:
        return {}
    from . import data

    sets = data.image_sets()
    unknown = [name for name in names if name not in sets]
    if unknown:
        raise ValueError(f"{owner}: data {unknown} are not image sets of "
                         f"data/sets.tsv ({', '.join(sorted(sets))})")
    wanted = {file for name in names for file in sets[name]}
    return {r.file: r.sha256 for r in data.manifest() if r.file in wanted}


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _sha256_memo(path: Path) -> str:
    """sha256 of a (large) file, remembered per (path, size, mtime) within the process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = _sha256_file(path)
    return _SHA_MEMO[key]


def _weights_inputs(weights: str) -> dict[str, Any]:
    """What the ``weights`` parameter resolves to: for ``auto``/``imagenet`` whether the
    pretrained file is present (and its checksum), for a path the file's checksum."""
    weights = str(weights)
    if weights == "random":
        return {}
    if weights in ("auto", "imagenet"):
        from . import models

        file = models.pretrained_file("vgg16")
        return {"pretrained_file_sha256": _sha256_memo(file) if file.is_file() else None}
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--weights {weights!r}: no such file (use auto, imagenet, "
                                "random or the path of a VGG-16 state dict)")
    return {"weights_file_sha256": _sha256_memo(path)}


def figure_inputs(root: Path, figure: Figure, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a notebook's result depends on; its hash is the cache key."""
    return {
        "figure": figure.id,
        "notebook_sha256": _sha256_file(root / figure.notebook),
        "parameters": dict(parameters),
        "lrpkit_version": lrpkit_version(),
        "packages": _package_versions(PINNED_PACKAGES),
        "data_sha256": data_checksums(figure),
        **_weights_inputs(parameters["weights"]),
        **(book_experiments.inputs_of_figure(root, figure.experiment, load_experiments(root), parameters)
           if figure.experiment else {}),
    }


def load_experiments(root: Path | str = ".") -> dict[str, Any]:
    """The registry's ``experiments:`` map (:mod:`lrpkit.book_experiments`)."""
    path = Path(root) / REGISTRY
    return book_experiments.load_experiments(Path(root), yaml.safe_load(path.read_text()) or {}, path)


def fingerprint(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Executing notebooks
# --------------------------------------------------------------------------------------------

@dataclass
class FigureResult:
    figure: str
    status: str            # "executed" | "cached" | "failed"
    seconds: float
    fingerprint: str
    output: str
    log: str
    error: str | None = None


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


def glue_keys(notebook: Path) -> dict[str, dict[str, Any]]:
    """The glue keys an executed notebook provides: key -> output (mime bundle)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    keys = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if meta and "name" in meta:
                keys[meta["name"]] = output
    return keys


#: Id of the cell :func:`present` puts the weights notice in.
BANNER_CELL_ID = "lrpkit-banner"


def present(nb: Any) -> Any:
    """Prepare an executed notebook (nbformat v4) for its page, in place, and return it.

    - Output written to stderr (warnings, progress bars) is removed: it is in the notebook's log,
      and it names folders of the build machine.
    - The weights notice (the ``banner`` glue output) is shown first: in a cell with the tag
      ``remove-input`` right after the title (a first markdown cell that starts with a ``# ``
      heading is split after that line). The glued original stays, no longer displayed, for the
      chapter pages that paste it.
    """
    import nbformat
    from myst_nb.ext.glue import GLUE_PREFIX

    banner = None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.get("outputs", [])
                        if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
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
        "first by lrpkit.book.present", metadata={"tags": ["remove-input"]})
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


_RECORD = re.compile(r'<script type="application/json" class="lrpkit-provenance-record">'
                     r"(?P<json>.*?)</script>", re.S)


def provenance_record(output: Mapping[str, Any]) -> dict[str, Any] | None:
    """The provenance record embedded in a glued ``provenance`` output (or in a page's HTML)."""
    data = output.get("data", {}) if isinstance(output, Mapping) else {}
    text = output if isinstance(output, str) else next(
        (v for k, v in data.items() if k.endswith("text/html")), "")
    if isinstance(text, list):
        text = "".join(text)
    match = _RECORD.search(text)
    return json.loads(match["json"]) if match else None


def _check_kernel_lrpkit(figure: Figure, executed: Path) -> None:
    """The kernel must have imported the same lrpkit as the build (else a stale install ran)."""
    keys = glue_keys(executed)
    missing = [k for k in REQUIRED_GLUE_KEYS if k not in keys]
    if missing:
        raise BuildError(f"notebook {figure.notebook} (figure {figure.id}) glued no "
                         f"{' / '.join(repr(k) for k in missing)}; every figure notebook ends with "
                         "glue('provenance', p) and glue('banner', p.banner()) where "
                         "p = lrpkit.book.provenance(...)")
    record = provenance_record(keys["provenance"])
    if record is None:
        raise BuildError(f"notebook {figure.notebook}: the 'provenance' glue carries no "
                         "provenance record; glue the object returned by "
                         "lrpkit.book.provenance(...)")
    version = lrpkit_version()
    if record.get("lrpkit_version") != version:
        raise BuildError(f"notebook {figure.notebook}: the kernel imported lrpkit "
                         f"{record.get('lrpkit_version')} but the build uses {version} "
                         f"({_PACKAGE_DIR}); install this checkout (pip install -e .) or set "
                         "PYTHONPATH")


def kernel_environment() -> dict[str, str]:
    """The environment of the notebook kernels: this process's, plus what the book needs."""
    env = dict(os.environ)
    # The kernel imports the lrpkit this build runs from, whatever the kernel's cwd.
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(_PACKAGE_DIR.parent),
                                         *(p for p in paths if p != str(_PACKAGE_DIR.parent))])
    # Figures are glued as PNG by the inline backend, whatever the caller's MPLBACKEND.
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    # tqdm.auto in a kernel without ipywidgets warns on every import; its bars still work.
    env["PYTHONWARNINGS"] = ",".join(
        w for w in (env.get("PYTHONWARNINGS", ""), "ignore:IProgress not found:Warning") if w)
    return env


def run_figures(root: Path, figures: Sequence[Figure], profile: str, common: Mapping[str, Any],
                force: bool = False, timeout: float | None = None,
                progress: bool = True) -> list[FigureResult]:
    """Execute (or take from the cache) every figure notebook; raise BuildError on failures.

    Each executed notebook is :func:`present`-ed before it is cached: weights notice first, no
    stderr (which stays in its log).
    """
    import nbformat
    from tqdm import tqdm

    build = root / "_build"
    logs = build / "logs"
    cache = build / "figures"
    logs.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    env = kernel_environment()

    results, failures = [], []
    bar = tqdm(figures, desc="figures", unit="fig", disable=not progress, dynamic_ncols=True)
    for figure in bar:
        bar.set_postfix_str(figure.id)
        params = figure.resolved_parameters(profile, common)
        inputs = figure_inputs(root, figure, params)
        fp = fingerprint(inputs)
        cached = cache / figure.id / f"{fp[:20]}.ipynb"
        cached_log = cached.with_suffix(".log")
        log = logs / f"{figure.id}.log"
        target = root / figure.output
        start = time.perf_counter()
        status = "cached"
        if force or not cached.is_file():
            status = "executed"
            cached.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(f"figure {figure.id}: {figure.notebook} -> {figure.output}\n"
                           f"inputs {fp}:\n{json.dumps(inputs, indent=2, default=str)}\n\n")
            partial = cache / figure.id / f"{fp[:20]}.partial.ipynb"
            try:
                _execute(root, figure, params, partial, log, timeout, env)
                _check_kernel_lrpkit(figure, partial)
                executed = present(nbformat.read(partial, as_version=4))
                # papermill records absolute paths of this machine; the book's own are enough.
                executed.metadata.setdefault("papermill", {}).update(
                    input_path=figure.notebook.as_posix(), output_path=figure.output.as_posix())
                nbformat.write(executed, partial)
            except Exception as exc:  # noqa: BLE001 -- reported with notebook and cell
                message = (str(exc) if isinstance(exc, BuildError)
                           else _describe_failure(figure, root, exc, log))
                with open(log, "a", encoding="utf-8") as handle:
                    handle.write(f"\nFAILED: {message}\n")
                failures.append(message)
                results.append(FigureResult(figure.id, "failed", time.perf_counter() - start, fp,
                                            str(figure.output), str(log), message))
                if progress:
                    bar.write(f"failed: {figure.id} (details at the end; log {log})")
                continue
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"\nfinished in {time.perf_counter() - start:.1f} s\n")
            shutil.copyfile(log, cached_log)
            partial.replace(cached)
        # Copy only when different: an unchanged page keeps its mtime, so Sphinx skips it.
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_bytes() != cached.read_bytes():
            shutil.copyfile(cached, target)
        results.append(FigureResult(figure.id, status, time.perf_counter() - start, fp,
                                    str(figure.output), str(cached_log)))
    bar.close()
    if failures:
        raise BuildError(f"{len(failures)} of {len(figures)} figure notebook(s) failed:\n  "
                         + "\n  ".join(failures))
    return results


# --------------------------------------------------------------------------------------------
# Glue references on the prose pages
# --------------------------------------------------------------------------------------------

_DIRECTIVE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{glue(?::[a-z]+)?\}\s*(?P<key>\S+)\s*$")
_DOC_OPTION = re.compile(r"^:doc:\s*(?P<doc>\S+)\s*$")
_ROLE = re.compile(r"\{glue(?::[a-z]+)?\}`(?P<body>[^`]+)`")


def glue_references(page: Path) -> list[tuple[int, str | None, str]]:
    """(line, doc or None, key) for every ``glue`` directive and role on a MyST page."""
    refs = []
    lines = page.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        match = _DIRECTIVE.match(line.strip())
        if match:
            doc = None
            for option in lines[number:number + 5]:
                found = _DOC_OPTION.match(option.strip())
                if found:
                    doc = found["doc"]
                    break
                if not option.strip().startswith(":"):
                    break
            refs.append((number, doc, match["key"]))
            continue
        for role in _ROLE.finditer(line):
            body = role["body"]
            doc, _, key = body.rpartition("::")
            refs.append((number, doc or None, key.split(":", 1)[0]))
    return refs


def check_glue(root: Path, pages: Sequence[Path]) -> None:
    """Every glue key a page pastes must exist in the executed notebook it names.

    Raises
    ------
    BuildError
        Naming the page, line, key and notebook (and the keys that notebook does provide).
    """
    problems, keys_of = [], {}
    for page in pages:
        for line, doc, key in glue_references(page):
            rel = page.relative_to(root)
            if doc is None:
                problems.append(f"{rel}:{line}: glue key {key!r} has no :doc: (a prose page "
                                "pastes from an executed notebook: add ':doc: <notebook>')")
                continue
            notebook = (page.parent / doc).resolve()
            if not notebook.is_file():
                problems.append(f"{rel}:{line}: glue key {key!r}: notebook {doc} was not built "
                                "(is its figure in notebooks/figures.yml with this chapter?)")
                continue
            if notebook not in keys_of:
                keys_of[notebook] = glue_keys(notebook)
            keys = keys_of[notebook]
            if key not in keys:
                problems.append(f"{rel}:{line}: missing glue key {key!r}: "
                                f"{notebook.relative_to(root)} provides {sorted(keys)}")
    if problems:
        raise BuildError("missing glue keys:\n  " + "\n  ".join(problems))


def toc_pages(root: Path) -> list[Path]:
    """The MyST/notebook files named in ``_toc.yml`` (globs expanded)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found: list[Path] = []

    def add(entry: Mapping[str, Any]) -> None:
        if "file" in entry:
            stem = root / entry["file"]
            for suffix in ("", ".md", ".ipynb"):
                candidate = stem.with_name(stem.name + suffix)
                if candidate.is_file():
                    found.append(candidate)
                    break
        if "glob" in entry:
            found.extend(sorted(p for p in root.glob(entry["glob"])
                                if p.suffix in (".md", ".ipynb")))
        for key in ("parts", "chapters", "sections"):
            for child in entry.get(key, []) or []:
                add(child)

    found.append(next(p for p in (root / f"{toc['root']}.md", root / f"{toc['root']}.ipynb",
                                  root / toc["root"]) if p.is_file()))
    add(toc)
    return found


# --------------------------------------------------------------------------------------------
# Jupyter Book
# --------------------------------------------------------------------------------------------

def jupyter_book(root: Path, fresh: bool, log: Path) -> None:
    """``jupyter-book build <root> -W -n --keep-going``; BuildError naming the warnings."""
    command = [sys.executable, "-c",
               "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
               "build", str(root), "--builder", "html", "-W", "-n", "--keep-going"]
    if fresh:
        command.append("--all")
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(" ".join(command) + "\n\n")
        handle.flush()
        proc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=root)
    if proc.returncode != 0:
        # Sphinx saved the environment of pages that warned; forget it so the next build
        # re-reads (and re-reports) them instead of passing silently.
        shutil.rmtree(root / "_build" / ".doctrees", ignore_errors=True)
        text = log.read_text(encoding="utf-8", errors="replace")
        problems = [line for line in text.splitlines()
                    if "WARNING" in line or "ERROR" in line or "Exception" in line]
        detail = "\n  ".join(problems[-20:]) or text[-2000:]
        raise BuildError(f"jupyter-book build failed (exit {proc.returncode}); full log: {log}\n"
                         f"  {detail}")


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def resolve_device(device: str) -> str:
    """``device``, or for ``auto`` cuda if present else cpu; ValueError if this machine lacks it."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        raise ValueError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {device!r}: PyTorch sees no CUDA GPU on this machine; "
                             "use --device cpu (or auto)")
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise ValueError(f"--device {device!r}: this machine has {count} CUDA GPU(s), "
                             f"cuda:0 to cuda:{count - 1}")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device 'mps': PyTorch sees no MPS device on this machine; use "
                         "--device cpu (or auto)")
    return device


def check_weights(weights: str, progress: bool = True) -> None:
    """Load the weights a build asks for once, before any notebook runs.

    ``imagenet`` and a state-dict path must load as a VGG-16 (the network of the book's
    notebooks): downloaded if allowed and missing, checked, else a ValueError naming the
    problem and the fix. ``auto`` and ``random`` always succeed (``auto`` falls back to random
    weights, which the pages announce). ``progress``: torchvision's download bar.
    """
    if weights in ("auto", "random"):
        return
    import warnings

    from . import models

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", models.WeightsWarning)  # the notebooks warn again
            models.vgg16(weights=weights, device="cpu", progress=progress)
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise ValueError(f"--weights {weights!r}: {err}") from None


def resolve_profile(profile: str, device: str) -> str:
    if profile == "auto":
        return "full" if device.startswith("cuda") else "quick"
    if profile not in PROFILES:
        raise ValueError(f"--profile {profile!r}: use auto or one of {', '.join(PROFILES)}")
    return profile


def select(figures: Sequence[Figure], chapters: Sequence[str], ids: Sequence[str],
           root: Path) -> list[Figure]:
    """The figures to (re)run: those of the named chapters and ids, plus any never built."""
    if not chapters and not ids:
        return list(figures)
    known_chapters = {Path(f.chapter).name for f in figures}
    for chapter in chapters:
        if Path(chapter).name not in known_chapters:
            raise ValueError(f"--chapter {chapter!r}: no figure of the registry is on it "
                             f"(chapters: {', '.join(sorted(known_chapters))})")
    known_ids = {f.id for f in figures}
    for fid in ids:
        if fid not in known_ids:
            raise ValueError(f"--figure {fid!r}: not in the registry ({', '.join(sorted(known_ids))})")
    wanted = {Path(c).name for c in chapters}
    return [f for f in figures if Path(f.chapter).name in wanted or f.id in ids
            or not (root / f.output).is_file()]


def build(root: Path | str = ".", profile: str = "auto", device: str = "auto",
          weights: str = "auto", seed: int = 0, chapters: Sequence[str] = (),
          figures: Sequence[str] = (), force: bool = False, timeout: float | None = None,
          progress: bool = True, html: bool = True) -> dict[str, Any]:
    """Execute the registry and build the HTML book under ``root/_build/html``.

    The device and the weights are checked before any notebook runs (:func:`resolve_device`,
    :func:`check_weights`). Returns the build summary (also written to
    ``_build/book-build.json``), with ``network_figures`` and ``random_weights`` (figure ids).
    """
    root = Path(root).resolve()
    t0 = time.perf_counter()
    registry = load_registry(root)
    device = resolve_device(device)
    profile = resolve_profile(profile, device)
    check_weights(weights, progress=progress)
    common = {"device": device, "weights": weights, "profile": profile, "seed": int(seed)}
    chosen = select(registry, chapters, figures, root)
    if profile == "full" and not device.startswith("cuda"):
        slow = [f.id for f in chosen if f.gpu]
        if slow:
            print(f"warning: profile 'full' on {device}: {', '.join(slow)} need a GPU to be "
                  "practical (hours on a CPU)", file=sys.stderr)
    ran = book_experiments.prepare(root, [e for f in chosen for e in f.experiment], load_experiments(root),
                                   profile, common, force=force, progress=progress)
    # Executed notebooks of figures no longer in the registry would be stale pages.
    expected = {(root / f.output).resolve() for f in registry}
    for stale in (root / GENERATED).rglob("*.ipynb") if (root / GENERATED).is_dir() else []:
        if stale.resolve() not in expected:
            stale.unlink()
    before = {f.id: _mtime(root / f.output) for f in registry}
    results = run_figures(root, chosen, profile, common, force=force, timeout=timeout,
                          progress=progress)
    t_notebooks = time.perf_counter() - t0
    changed = any(_mtime(root / f.output) != before[f.id] for f in registry)
    pages = toc_pages(root)
    check_glue(root, [p for p in pages if p.suffix == ".md"])
    network, random = weights_by_figure(root, registry)
    summary = {"profile": profile, "device": device, "weights": weights, "seed": int(seed),
               "figures": [vars(r) for r in results],
               "executed": [r.figure for r in results if r.status == "executed"],
               "cached": [r.figure for r in results if r.status == "cached"],
               "experiments": [vars(r) for r in ran],
               "network_figures": network, "random_weights": random,
               "notebook_seconds": round(t_notebooks, 2)}
    if html:
        t1 = time.perf_counter()
        fresh = changed or not (root / "_build" / ".doctrees").is_dir()
        if progress:
            print(f"building the HTML book with Jupyter Book ({'all pages' if fresh else 'changed pages'}"
                  f"; log: {root / '_build' / 'logs' / 'jupyter-book.log'})", file=sys.stderr)
        jupyter_book(root, fresh=fresh, log=root / "_build" / "logs" / "jupyter-book.log")
        summary["html_seconds"] = round(time.perf_counter() - t1, 2)
        summary["html_full_rebuild"] = fresh
        summary["index"] = str(root / "_build" / "html" / "index.html")
    summary["total_seconds"] = round(time.perf_counter() - t0, 2)
    (root / "_build" / "book-build.json").write_text(json.dumps(summary, indent=2))
    return summary


def weights_by_figure(root: Path, registry: Sequence[Figure]) -> tuple[list[str], list[str]]:
    """(figures that involve a network, those of them made with random weights), read from the
    provenance of every executed notebook of the book (not only those of this run)."""
    network, random = [], []
    for figure in registry:
        path = root / figure.output
        if not path.is_file():
            continue
        output = glue_keys(path).get("provenance")
        record = provenance_record(output) if output is not None else None
        if record and record.get("weights"):
            network.append(figure.id)
            if record.get("random_weights"):
                random.append(figure.id)
    return network, random


def weights_note(network: Sequence[str], random: Sequence[str]) -> str | None:
    """The line of the build summary about random weights, or None when no figure used them."""
    if not random:
        return None
    if set(random) == set(network):
        return (f"RANDOM WEIGHTS: all {len(network)} figure(s) of the book were computed with a "
                "randomly initialized VGG-16 (no pretrained weights were available); every page "
                "says so in a banner")
    return (f"RANDOM WEIGHTS in {len(random)} of the {len(network)} figures with a network: "
            f"{', '.join(random)} (their pages say so in a banner)")


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime_ns if path.is_file() else None


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m lrpkit.book``."""
    command = argparse.ArgumentParser(
        prog="python -m lrpkit.book",
        description="Build the companion book: run the figure notebooks, then Jupyter Book.")
    sub = command.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute the figure registry and build _build/html")
    b.add_argument("--profile", default="auto", help="smoke, quick, full, or auto (default: "
                   "full when CUDA is present, else quick)")
    b.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    b.add_argument("--weights", default="auto",
                   help="auto (default: pretrained if available, else random with a banner), "
                   "imagenet, random, or a path to a state dict")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--chapter", action="append", default=[],
                   help="re-run only this chapter's figures (e.g. what-lrp-sees); repeatable")
    b.add_argument("--figure", action="append", default=[],
                   help="re-run only this figure id (e.g. fig-2-2); repeatable")
    b.add_argument("--force", action="store_true", help="re-execute even if nothing changed")
    b.add_argument("--timeout", type=float, default=None, help="seconds per notebook cell")
    b.add_argument("--root", default=".", help="book root (holds _config.yml); default: .")
    b.add_argument("--no-html", action="store_true", help="run the notebooks only")
    sub.add_parser("list", help="list the registry's figures").add_argument("--root", default=".")
    return command


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "list":
            for f in load_registry(args.root):
                print(f"{f.id:12s} {str(f.notebook):50s} {f.chapter:28s} "
                      f"{'GPU for full' if f.gpu else 'CPU ok':12s} {f.title}")
            return 0
        summary = build(args.root, profile=args.profile, device=args.device,
                        weights=args.weights, seed=args.seed, chapters=args.chapter,
                        figures=args.figure, force=args.force, timeout=args.timeout,
                        html=not args.no_html)
    except (BuildError, ValueError, FileNotFoundError) as exc:
        print(f"book build failed: {exc}", file=sys.stderr)
        return 1
    print(f"profile {summary['profile']} on {summary['device']}, weights={summary['weights']}: "
          f"{len(summary['executed'])} notebook(s) executed, {len(summary['cached'])} unchanged; "
          f"{summary['total_seconds']:.1f} s")
    if summary["experiments"]:
        ran = [e["experiment"] for e in summary["experiments"] if e["status"] == "ran"]
        print(f"experiments: {len(ran)} run ({', '.join(ran) or 'none'}), "
              f"{len(summary['experiments']) - len(ran)} reused")
    note = weights_note(summary["network_figures"], summary["random_weights"])
    if note:
        print(note)
    if "index" in summary:
        print(f"book: {summary['index']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
