"""The execution report: what the build ran, with what, for how long and when, as a page of the book.

:func:`write_report` writes ``book/_generated/execution-report.md`` from the build's own records --
the summary :func:`lrpkit.book.pipeline.build` assembles and the executed notebooks -- before
Jupyter Book renders the site. The page has one row per figure notebook of the build
(:func:`records`), a table of the experiments and trained networks of the build, and the build's
time.

A figure taken from the cache was not run by this build: the time and date of the run that made it
are read from the executed notebook itself, where papermill recorded them
(``metadata.papermill``: ``duration``, ``start_time``, ``end_time``, and the ``parameters`` it ran
with, whose ``profile`` and ``device`` the row shows). So a row says how long the notebook on the
page took to compute and when, whichever build computed it. The same source serves a figure this
build ran, so that the two read alike.

Example
-------
>>> summary = book.build(".", profile="quick")            # doctest: +SKIP
>>> [(r["figure"], r["status"], r["seconds"]) for r in records(Path("."), summary)]  # doctest: +SKIP
[('fig-2-1', 'cache hit', 41.3), ...]
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..experiment.store import write_atomic
from ..provenance import public_value
from .registry import GENERATED, REGISTRY

__all__ = ["REPORT", "STATUSES", "records", "report_markdown", "write_report"]

#: Where the report page goes (relative to the book root); its docname is listed in ``_toc.yml``.
REPORT = GENERATED / "execution-report.md"
#: A figure's status in the report, by :class:`~lrpkit.book.execution.FigureResult` status.
STATUSES = {"executed": "ran", "cached": "cache hit", "failed": "failed"}


def records(root: Path | str, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record per figure notebook of the build, in the build's order.

    Parameters
    ----------
    root : path
        The book root.
    summary : mapping
        The build summary (:func:`lrpkit.book.pipeline.build`); its ``figures`` are
        :class:`~lrpkit.book.execution.FigureResult` dicts, whose ``output`` is the executed
        notebook relative to ``root``.

    Returns
    -------
    list of dict
        ``figure`` (id), ``title`` and ``chapter`` (docname) from the registry, ``notebook`` (the
        source notebook, relative to the root), ``profile`` and ``device`` the notebook ran with,
        ``status`` (``"ran"`` or ``"cache hit"``), ``seconds`` (papermill's duration of the run
        that made the notebook, kernel start included; the build's own time for a figure it ran
        whose notebook lacks it; None for a cache hit without it, which papermill never leaves)
        and ``date`` (when that run ended, ISO 8601 in UTC, or None).
    """
    root = Path(root)
    registry = _registry(root).get("figures") or {}
    out = []
    for result in summary.get("figures", []):
        fid = str(result["figure"])
        entry = registry.get(fid) or {}
        output = Path(result["output"])
        papermill = _papermill(root / output)
        parameters = papermill.get("parameters") or {}
        status = STATUSES.get(result["status"], str(result["status"]))
        seconds = papermill.get("duration")
        if seconds is None and status == "ran":
            seconds = result.get("seconds")
        out.append({
            "figure": fid,
            "title": str(entry.get("title", fid)),
            "chapter": str(entry.get("chapter", f"book/{output.parent.name}")),
            "notebook": (f"notebooks/{entry['notebook']}" if "notebook" in entry
                         else str(papermill.get("input_path", ""))),
            "profile": parameters.get("profile", summary.get("profile")),
            "device": parameters.get("device", summary.get("device")),
            "status": status,
            "seconds": None if seconds is None else round(float(seconds), 1),
            "date": _utc(papermill.get("end_time") or papermill.get("start_time")),
        })
    return out


def report_markdown(root: Path | str, summary: Mapping[str, Any]) -> str:
    """The report page's MyST Markdown (see :func:`write_report`)."""
    root = Path(root)
    registry = _registry(root)
    rows = records(root, summary)
    here = REPORT.parent
    lines = ["# What the last build ran", "",
             f"This page is written by the build (`python -m lrpkit.book build`) from its own records, "
             f"before the site is rendered. The build used profile `{summary.get('profile')}` on device "
             f"`{summary.get('device')}` with weights `{public_value(summary.get('weights'))}` and seed "
             f"{summary.get('seed')}.",
             "", "## Figure notebooks", "",
             "The seconds are papermill's duration of the run that made the notebook: starting its kernel and "
             "running every cell. A cache hit is a notebook whose inputs were those of an earlier run: its page "
             "shows that run, whose time, date, profile and device are read from the notebook.", ""]
    total = len(registry.get("figures") or {})
    if total and len(rows) < total:
        lines += [f"This build ran {len(rows)} of the registry's {total} figure notebooks (`--chapter`, "
                  "`--figure`); the pages of the others show earlier builds.", ""]
    lines += ["| figure | title | profile | device | seconds | run | date (UTC) |",
              "| --- | --- | --- | --- | ---: | --- | --- |"]
    for row in rows:
        page = (GENERATED / Path(row["chapter"]).name / row["figure"]).relative_to(here).as_posix()
        lines.append(_row(f"{{doc}}`{row['figure']} <{page}>`", _text(row["title"]),
                          f"`{row['profile']}`", f"`{row['device']}`", _seconds(row["seconds"]), row["status"],
                          _date(row["date"])))
    known = [r["seconds"] for r in rows if r["seconds"] is not None]
    if known:
        lines += ["", f"Computing the notebooks shown took {sum(known):.0f} s in all"
                  + (f" ({len(rows) - len(known)} without a recorded time)." if len(known) < len(rows) else ".")]
    steps = _steps(summary, registry)
    if steps:
        lines += ["", "## Experiments and trained networks", "",
                  "| step | id | title | status | seconds |", "| --- | --- | --- | --- | ---: |"]
        lines += [_row(*step) for step in steps]
    lines += ["", "## Build time", ""]
    if summary.get("total_seconds") is not None:
        lines.append(f"The build took {summary['total_seconds']:.0f} s.")
    else:
        lines.append(f"The build took {summary.get('notebook_seconds', 0):.0f} s up to the rendering of these "
                     "pages (networks, experiments and figure notebooks); rendering the site comes after.")
    return "\n".join(lines) + "\n"


def write_report(root: Path | str, summary: Mapping[str, Any]) -> Path:
    """Write :data:`REPORT` under ``root`` from the build ``summary``; returns its path.

    Written under a temporary name (a dot file, which Jupyter Book ignores) and renamed, so a page
    is never half written; an unchanged page is not rewritten (its mtime stays, and Sphinx skips it).
    """
    path = Path(root) / REPORT
    text = report_markdown(root, summary)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return path


def _registry(root: Path) -> dict[str, Any]:
    """The registry as YAML (titles, chapters, notebooks); empty if there is none. Not checked:
    the build has checked it (:func:`lrpkit.book.registry.load_registry`)."""
    path = root / REGISTRY
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def _papermill(notebook: Path) -> dict[str, Any]:
    """An executed notebook's ``metadata.papermill`` (empty if it has none or is missing)."""
    try:
        return json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {}).get("papermill") or {}
    except (OSError, ValueError):
        return {}


def _utc(stamp: str | None) -> str | None:
    """papermill's timestamp (ISO 8601, naive UTC or with an offset) as ``YYYY-MM-DDTHH:MM:SSZ``."""
    if not stamp:
        return None
    try:
        when = dt.datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    when = when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _steps(summary: Mapping[str, Any], registry: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Rows (step, id, title, status, seconds) of the build's networks, then its experiments."""
    rows = []
    for kind, key, section in (("network", "network", "networks"), ("experiment", "experiment", "experiments")):
        titles = registry.get(section) or {}
        for result in summary.get(section, []):
            ident = str(result[key])
            rows.append((kind, f"`{ident}`", _text(str((titles.get(ident) or {}).get("title", ident))),
                         str(result["status"]), _seconds(result.get("seconds"))))
    return rows


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _text(text: str) -> str:
    """Plain text in a table cell: no column break, no math."""
    return text.replace("|", "\\|").replace("$", "\\$")


def _seconds(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.1f}"


def _date(stamp: str | None) -> str:
    return "–" if stamp is None else stamp.replace("T", " ")[:16]
