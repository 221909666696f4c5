"""The book build pipeline: check the machine, run the figure notebooks, check the pages, render the site.

``python -m lrpkit.book build`` (:mod:`lrpkit.book.command`) calls :func:`build`. Before any
notebook runs, the build checks once that the device exists on this machine and that the weights
asked for load (``imagenet``, a state-dict path); either failing is a one-line error. It then trains
the networks those figures and their experiments read (:func:`lrpkit.book.networks.prepare`: once
per inputs, reused afterwards), runs the experiments those figures read (:func:`lrpkit.book.experiments.prepare`: run, or reused when
their inputs are unchanged), then the figures (:func:`lrpkit.book.execution.run_figures`, keyed by
the experiment keys that ``prepare`` returned), checks every glue key of the prose pages
(:func:`lrpkit.book.pages.check_glue`), writes the execution report page and the teaching session plans from the build's records
(:func:`lrpkit.book.report.write_report`, :func:`lrpkit.teaching.sessions.write_session_plans`) and renders the HTML with Jupyter Book. The summary, also
written to ``_build/book-build.json``, says which figures, or whether all of them, used random
weights.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import networks
from .execution import run_figures
from .experiments import prepare
from .pages import check_glue, jupyter_book, toc_pages, weights_by_figure
from .registry import GENERATED, PROFILES, load_experiments, load_networks, load_registry, select
from ..teaching.sessions import write_session_plans
from .report import records, write_report

__all__ = ["build", "resolve_device", "resolve_profile", "check_weights"]


def build(root: Path | str = ".", profile: str = "auto", device: str = "auto",
          weights: str = "auto", seed: int = 0, chapters: Sequence[str] = (),
          figures: Sequence[str] = (), force: bool = False, timeout: float | None = None,
          progress: bool = True, html: bool = True,
          results: Mapping[str, str | Path] | None = None) -> dict[str, Any]:
    """Execute the registry and build the HTML book under ``root/_build/html``.

    The device and the weights are checked before any notebook runs (:func:`resolve_device`,
    :func:`check_weights`). ``results`` maps experiment ids to results directories made elsewhere
    (a cluster run), taken instead of running those experiments (:mod:`lrpkit.book.imports`). Returns the build summary (also written to
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
    experiments = load_experiments(root)
    needed = [e for f in chosen for e in f.experiment]
    trained = networks.prepare(root, [f.network for f in chosen if f.network]
                               + [experiments[e].network for e in needed if experiments[e].network],
                               load_networks(root), profile, common, force=force, progress=progress)
    ran = prepare(root, needed, experiments, profile, common,
                  force=force, progress=progress, imported={k: Path(v) for k, v in (results or {}).items()})
    # Executed notebooks of figures no longer in the registry would be stale pages.
    expected = {(root / f.output).resolve() for f in registry}
    for stale in (root / GENERATED).rglob("*.ipynb") if (root / GENERATED).is_dir() else []:
        if stale.resolve() not in expected:
            stale.unlink()
    before = {f.id: _mtime(root / f.output) for f in registry}
    results = run_figures(root, chosen, profile, common, force=force, timeout=timeout, progress=progress,
                          experiment_keys={r.experiment: r.figure_key for r in ran})
    t_notebooks = time.perf_counter() - t0
    changed = any(_mtime(root / f.output) != before[f.id] for f in registry)
    pages = toc_pages(root)
    check_glue(root, [p for p in pages if p.suffix == ".md"])
    network, random = weights_by_figure(root, registry)
    summary = {"profile": profile, "device": device, "weights": weights, "seed": int(seed),
               "figures": [vars(r) for r in results],
               "executed": [r.figure for r in results if r.status == "executed"],
               "cached": [r.figure for r in results if r.status == "cached"],
               "networks": [vars(r) for r in trained],
               "experiments": [vars(r) for r in ran],
               "network_figures": network, "random_weights": random,
               "notebook_seconds": round(t_notebooks, 2)}
    # pages of the site made from the build's records: before Jupyter Book renders them
    write_report(root, summary)
    write_session_plans(root, records(root, summary))
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

    from .. import models

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", models.WeightsWarning)  # the notebooks warn again
            models.vgg16(weights=weights, device="cpu", progress=progress)
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise ValueError(f"--weights {weights!r}: {err}") from None


def resolve_profile(profile: str, device: str) -> str:
    """``profile``, or for ``auto`` full on a CUDA device, else quick."""
    if profile == "auto":
        return "full" if device.startswith("cuda") else "quick"
    if profile not in PROFILES:
        raise ValueError(f"--profile {profile!r}: use auto or one of {', '.join(PROFILES)}")
    return profile


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime_ns if path.is_file() else None
