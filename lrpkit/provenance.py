"""How a figure, a table or an experiment was made: the record every notebook of the book glues.

A figure notebook ends by gluing :func:`provenance` as ``provenance`` and its :meth:`~Provenance.banner`
as ``banner``: the weights and their checksum, the profile, device and parameters, lrpkit's version
with a hash of its source (:func:`lrpkit_version`), the git commit, the date, and a visible warning
when the network's weights are random or unverified. The record is embedded in the HTML as JSON, so
that the build (:mod:`lrpkit.book`) and the tests read it back (:func:`provenance_record`).

Every notebook kernel imports this module, so it imports nothing heavy at the top: torch and
:mod:`lrpkit.models` only when a model is recorded. :mod:`lrpkit.experiment` records the same
version, commit and weights hash.

Absolute paths are shown by their file name only (:func:`public_value`): a page must not show the
folders of the machine that built it.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import html
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import __version__
from .figure_data import FIGURE_ENV, FOLDER_ENV, save, site_path

__all__ = ["COMMON_PARAMETERS", "provenance", "Provenance", "Banner", "provenance_record", "source_hash",
           "lrpkit_version", "git_commit", "state_sha256", "public_value", "package_versions",
           "experiment_record", "machine", "machine_text", "computation"]

#: The parameters of every notebook of the book (its ``parameters`` cell), recorded by :func:`provenance`.
COMMON_PARAMETERS = ("device", "weights", "profile", "seed")

_PACKAGE_DIR = Path(__file__).resolve().parent


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


# One convolution of VGG-16's size with oneDNN's verbose log on, in a fresh interpreter: its first
# lines name the instruction set oneDNN dispatches to (capped by ONEDNN_MAX_CPU_ISA), the last the
# convolution kernel it picked. A fresh process because oneDNN logs them once, when it starts.
_PROBE = """
import torch
print("torch-cpu-capability:" + torch.backends.cpu.get_cpu_capability())
x, w = torch.ones(1, 64, 56, 56), torch.ones(64, 64, 3, 3)
with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
    torch.nn.functional.conv2d(x, w, padding=1)
"""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=8)
def _probe(cap: str | None, aten_cap: str | None) -> tuple:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    env.update({k: v for k, v in (("ONEDNN_MAX_CPU_ISA", cap), ("ATEN_CPU_CAPABILITY", aten_cap)) if v})
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                             timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    isa = re.search(r"onednn_verbose,.*?info,cpu,isa:(.*)", out)
    conv = re.search(r"onednn_verbose,.*?,exec,cpu,convolution,([^,]+),", out)
    capability = re.search(r"torch-cpu-capability:(\S+)", out)
    return (isa[1].strip() if isa else "unknown", conv[1] if conv else "unknown",
            capability[1] if capability else "unknown")


def machine(device: str = "cpu", env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The machine a figure's numbers were computed on, as far as it changes float32 results.

    On a CPU, which instruction set oneDNN's convolutions use (AVX2, AVX-512, ...) changes their
    rounding, and with it which pre-activations fall into a window as narrow as the thesis code's
    10⁻⁶ below −ε: the same seed and image break at another layer on another CPU. Recorded: the CPU's
    model name, torch's CPU capability (its own vectorized kernels), the instruction set oneDNN
    reports and the convolution kernel it picks for a VGG-16 layer, and the ``ONEDNN_MAX_CPU_ISA``
    cap if one is set. On CUDA, the GPU's name and the CUDA and cuDNN versions as well.

    ``env`` (default: this process's environment) is the environment whose caps are probed; the
    probe runs one convolution in a fresh Python process (a second or two, cached per caps).
    """
    env = os.environ if env is None else env
    cap, aten_cap = env.get("ONEDNN_MAX_CPU_ISA"), env.get("ATEN_CPU_CAPABILITY")
    isa, conv, capability = _probe(cap, aten_cap)
    record: dict[str, Any] = {"cpu": _cpu_model(), "torch_cpu_capability": capability, "onednn_isa": isa,
                              "onednn_convolution": conv, "onednn_max_cpu_isa": cap}
    if str(device).startswith("cuda"):
        try:
            import torch
            record.update(gpu=torch.cuda.get_device_name(torch.device(device)), cuda=torch.version.cuda,
                          cudnn=str(torch.backends.cudnn.version()))
        except Exception:  # noqa: BLE001 -- the record is only informative
            record["gpu"] = "unknown"
    return record


def machine_text(record: Mapping[str, Any]) -> str:
    """:func:`machine`'s record in words, for a page: "a CPU (AMD EPYC) on which oneDNN ran the
    float32 convolutions with its jit:avx512_core kernels (instruction set: Intel AVX-512 ...)"."""
    if not record:
        return "an unrecorded machine"
    if record.get("gpu"):
        return f"an {record['gpu']} GPU (CUDA {record.get('cuda')}, cuDNN {record.get('cudnn')})"
    cap = record.get("onednn_max_cpu_isa")
    return (f"a CPU ({record.get('cpu', 'unknown')}) on which oneDNN ran the float32 convolutions with its "
            f"{record.get('onednn_convolution', 'unknown')} kernels (instruction set: {record.get('onednn_isa', 'unknown')}"
            + (f", capped by ONEDNN_MAX_CPU_ISA={cap}" if cap else "") + ")")


def computation(*composites: Any, pixel_flipping: Any = None, gradient: bool = False) -> str:
    """Which computation made a figure, in words: the visible tag on its provenance box.

    "LRP-Tutorial" or "Decreasing-γ" name different computations in different figures: the thesis
    code's (constant ε, winner-takes-all max-pooling, its rule-modified forward pass with the
    unsigned shift ``z + 1e-6`` or the zennit stabilizer) or the tutorial's mathematics as lrpkit
    computes it (its denominator heuristic and max-pool treatment). ``composites`` are the
    :class:`lrpkit.composites.Composite` objects the figure computes with; ``pixel_flipping`` the
    ``thesis_compat`` of its Pixel-Flipping (False, True or a set of defect names), None for none;
    ``gradient`` adds Gradient × Input.
    """
    parts: list[str] = []
    for c in composites:
        if getattr(c, "forward", None) == "shift":
            text = "thesis code (constant ε, winner-takes-all pooling, z + 1e-6 shift)"
        elif getattr(c, "forward", None) == "zennit":
            text = "thesis code (constant ε, winner-takes-all pooling, zennit stabilizer)"
        else:
            pooling = "2×2 average pooling" if getattr(c, "maxpool", "avg") == "avg" else "winner-takes-all pooling"
            text = f"tutorial mathematics ({getattr(c, 'heuristic', '?')} denominator, {pooling})"
        if text not in parts:
            parts.append(text)
    if gradient:
        parts.append("Gradient × Input (autograd)")
    if pixel_flipping is not None:
        if pixel_flipping is True:
            parts.append("Pixel-Flipping with thesis_compat on (the thesis code's procedure)")
        elif pixel_flipping:
            parts.append(f"Pixel-Flipping with thesis_compat on for {', '.join(sorted(pixel_flipping))}")
        else:
            parts.append("Pixel-Flipping with thesis_compat off")
    return "; ".join(parts) or "no LRP computation"


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
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    computation: str = ""
    #: The figure's id in the book's registry, when the book build runs the notebook (else "").
    figure: str = ""
    #: Names of the data files attached with :meth:`attach` (published beside the figure).
    data_files: list[str] = field(default_factory=list)

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
                "date": self.date, "packages": self.packages, "experiments": self.experiments,
                "machine": self.machine, "computation": self.computation,
                "random_weights": self.random_weights, "figure": self.figure, "data_files": self.data_files}

    def attach(self, name: str, data: Any, folder: Path | str | None = None) -> "Provenance":
        """Save data the figure plots (a pandas table as CSV; arrays or a mapping of them as NPZ) for
        the reader to download from this box (:func:`lrpkit.figure_data.save`); returns ``self``.

        The file goes to ``folder``, or where the book build says (:data:`lrpkit.figure_data.FOLDER_ENV`);
        with neither, nothing is written and the box lists nothing. Attach before gluing the box.
        """
        folder = folder if folder is not None else os.environ.get(FOLDER_ENV)
        if folder is not None:
            path = save(name, data, folder)
            self.data_files = [*(f for f in self.data_files if f != path.name), path.name]
        return self

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

    def machine_text(self) -> str:
        """Where the figure's numbers were computed, in words (:func:`machine_text`)."""
        return machine_text(self.machine)

    def _machine_lines(self) -> list:
        m = self.machine
        if not m:
            return ["not recorded"]
        lines = [f"GPU {m['gpu']}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}"] if m.get("gpu") else []
        return lines + [f"CPU {m.get('cpu')}; torch CPU capability {m.get('torch_cpu_capability')}",
                        f"oneDNN: {m.get('onednn_isa')}, convolutions {m.get('onednn_convolution')}"
                        + (f" (ONEDNN_MAX_CPU_ISA={m['onednn_max_cpu_isa']})" if m.get("onednn_max_cpu_isa") else "")]

    def _repr_html_(self) -> str:
        rows = [
            ("Computation", self.computation or "not stated"),
            ("Weights", self._weights_text()),
            ("Profile", self.parameters.get("profile", "?")),
            ("Device", self.device),
            ("Machine", self._machine_lines()),
            ("Parameters", ", ".join(f"{k}={v!r}" for k, v in self.parameters.items())),
            ("lrpkit", self.lrpkit_version),
            ("Git commit", self.git_commit),
            ("Date (UTC)", self.date),
            ("Packages", ", ".join(f"{k} {v}" for k, v in self.packages.items())),
        ]
        if self.figure:
            links = [(f, site_path(self.figure, f)) for f in [f"{self.figure}.ipynb", *self.data_files]]
            rows.insert(1, ("Downloads", [_Link(text, f"lrpkit-root:{path}") for text, path in links]))
        if self.experiments:
            rows.insert(4, ("Experiment results", [f"{name}: {_experiment_text(r)}"
                                                   for name, r in self.experiments.items()]))
        body = "".join(f"<tr><th>{html.escape(k)}</th><td>"
                       + "<br>".join(line.html() if isinstance(line, _Link) else f"<code>{html.escape(str(line))}</code>"
                                     for line in (v if isinstance(v, list) else [v]))
                       + "</td></tr>" for k, v in rows)
        record = self.record().replace("</", "<\\/")
        tag = html.escape(self.computation or "computation not stated")
        return ('<details class="lrpkit-provenance"><summary>How this figure was made: '
                f'<span class="lrpkit-computation">{tag}</span></summary><table class="table">{body}</table>'
                f'<script type="application/json" class="lrpkit-provenance-record">{record}'
                '</script></details>')

    def banner(self) -> "Banner":
        """A visible notice: a warning when the weights are random, else which weights."""
        return Banner(self)


@dataclass(frozen=True)
class _Link:
    """A download link of the box; ``lrpkit-root:`` is made relative to the page by the site
    (book/_ext/lrpkit_downloads.py)."""

    text: str
    href: str

    def html(self) -> str:
        return f'<a class="lrpkit-download" href="{html.escape(self.href)}" download><code>{html.escape(self.text)}</code></a>'


@dataclass
class Banner:
    """The notice at the top of a figure page (``banner`` glue key)."""

    provenance: Provenance

    def _repr_html_(self) -> str:
        p = self.provenance
        if p.random_weights:
            # One line with a link to the Reproducing page (its address is relative to the page that shows
            # the banner: the script reads the site's root from Sphinx's data-content_root), the rest folded.
            return ('<div class="admonition warning lrpkit-random-weights"><p><strong>Random weights:</strong> '
                    'these figures come from an untrained VGG-16, not the trained network of the thesis; '
                    '<a class="lrpkit-reproducing" href="reproducing.html">how to rebuild them with pretrained '
                    'weights</a>.</p><details><summary>What that means</summary><p>No pretrained ImageNet '
                    'weights were reachable when the book was built, so the network was initialized at random ('
                    + html.escape(p._weights_text()) + '). The figures show how the methods behave on this '
                    'network, not what a trained network attends to.</p></details><script>'
                    'document.currentScript.parentElement.querySelector("a.lrpkit-reproducing").href = '
                    '(document.documentElement.dataset.content_root || "") + "book/reproducing.html";'
                    '</script></div>')
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


def experiment_record(folder: Path | str) -> dict[str, Any]:
    """Where and with what an experiment's results were made, from the results directory ``folder``.

    Reads the run's ``metadata.json`` (:mod:`lrpkit.experiment`) and, when the book build made or
    took the results, its ``book-inputs.json`` (:mod:`lrpkit.book.experiments`): whether this build
    ran the experiment or imported results made elsewhere (a cluster run), on which device(s), with
    which lrpkit and commit, when, and the rows of the merged table. A folder without a metadata
    file gives ``{"made": "unknown"}``.
    """
    folder = Path(folder)

    def read(name: str) -> dict[str, Any]:
        try:
            return json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    meta, book = read("metadata.json"), read("book-inputs.json")
    if not meta:
        return {"made": "unknown"}
    merged = meta.get("merged") or {}
    device = meta.get("device") or {}
    devices = merged.get("devices_of_units") or [
        f"{device.get('device', '?')} ({device['name']})" if device.get("name") else device.get("device", "?")]
    imported = book.get("imported")
    record = {"made": "imported" if imported else ("by this build" if book else "outside the book build"),
              "devices": devices, "lrpkit": (meta.get("lrpkit") or {}).get("version"),
              "git_commit": (meta.get("lrpkit") or {}).get("git_commit"), "created": meta.get("created"),
              "rows": merged.get("rows")}
    if imported:
        record["from"] = public_value(imported.get("from"))
        record["results_sha256"] = imported.get("results_sha256")
    return record


def _experiment_text(record: Mapping[str, Any]) -> str:
    """One experiment's :func:`experiment_record` as the provenance table shows it."""
    if record.get("made") == "unknown":
        return "no record of the run"
    how = {"imported": f"imported from {record.get('from')} (table sha256 {str(record.get('results_sha256'))[:12]}…),"
                       " made",
           "by this build": "made by this build"}.get(record["made"], "made outside the book build")
    return (f"{how} on {', '.join(record.get('devices') or ['?'])}, {record.get('created')}, lrpkit "
            f"{record.get('lrpkit')}, git {str(record.get('git_commit'))[:12]}"
            + (f", {record['rows']} rows" if record.get("rows") else ""))


def provenance(parameters: Mapping[str, Any], model: Any = None,
               experiments: Mapping[str, Path | str] | None = None, computation: str = "") -> Provenance:
    """Record how a figure was made, for the ``provenance`` and ``banner`` glue keys.

    Parameters
    ----------
    parameters : mapping
        The notebook's parameters: at least ``device``, ``weights``, ``profile`` and ``seed``.
    model : torch.nn.Module, optional
        The network the figure was computed with, as returned by ``lrpkit.models``; its record
        of the weights loaded (source, checksum, random or not) goes into the provenance. None
        for figures that involve no network.
    experiments : mapping of str to path, optional
        The experiment results directories the figure reads, by name: where, when and with what
        each was made (:func:`experiment_record`) -- by this build, or imported from a cluster run.
    computation : str
        Which computation made the figure (:func:`computation`): shown on the folded box's visible
        line, so that "LRP-Tutorial" says whether the thesis code's or the tutorial's mathematics.

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
        packages=package_versions(("torch", "torchvision")),
        experiments={name: experiment_record(folder) for name, folder in (experiments or {}).items()},
        machine=machine(device),
        computation=computation,
        figure=os.environ.get(FIGURE_ENV, ""),
    )


def package_versions(names: Sequence[str]) -> dict[str, str]:
    """The installed version of each package (``"not installed"`` if it is not)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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
