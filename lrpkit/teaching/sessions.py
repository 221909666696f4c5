"""Session plans for teaching the chapter: 45, 90 and 180 minutes, timed from a build's report.

A plan is data (:data:`SESSIONS`): activities in order, each with the minutes planned for the
students and, where the activity runs a notebook of the book, the notebook's figure id in
``notebooks/figures.yml``. :func:`session_plans_markdown` renders the plans as Markdown tables with
the machine time of every such notebook, read from the build's execution report (the records of
:func:`lrpkit.book.report.records`: one dict per figure notebook with ``figure``, ``device``,
``profile``, ``status``, ``seconds`` and ``date``); :func:`write_session_plans` writes them to
``book/_generated/session-plans.md``, which ``book/teaching.md`` includes.

The student minutes are a plan, not a measurement: nobody has timed students here. The machine
times are measured, on the machine and with the profile that built the book.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

__all__ = ["Activity", "Session", "SESSIONS", "PAGE", "session_plans_markdown", "write_session_plans"]

#: Where :func:`write_session_plans` writes, relative to the book's root.
PAGE = Path("book/_generated/session-plans.md")
#: The cell of an activity whose notebook has no record in the report.
NOT_RUN = "not run in this build"


@dataclass(frozen=True)
class Activity:
    """One step of a session: what happens, the minutes planned for it and the figure id of the
    notebook it runs (None: no notebook)."""

    what: str
    minutes: int
    figure: Optional[str] = None


@dataclass(frozen=True)
class Session:
    """A session plan: its length in minutes, a title and its activities in order."""

    minutes: int
    title: str
    activities: tuple


SESSIONS = (
    Session(45, "one layer by hand", (
        Activity("intro from {doc}`what-lrp-sees`: what a heatmap shows, and the castle", 8),
        Activity("open part 1 (Colab or the hub) and run its first cells", 5, "implement-lrp-1"),
        Activity("exercises 1–3 (part 1): LRP-0, LRP-ε, conservation as a self-check", 25),
        Activity("wrap-up: where z + ε breaks (the note of exercise 2, {doc}`when-lrp-breaks`)", 7),
    )),
    Session(90, "the rules, dense and convolutional", (
        Activity("intro from {doc}`what-lrp-sees`: what a heatmap shows, and the castle", 10),
        Activity("exercises 1–3 (part 1): LRP-0, LRP-ε, conservation", 25, "implement-lrp-1"),
        Activity("exercises 4–7 (part 2): convolutions, the gradient trick, LRP-γ, zᴮ", 35, "implement-lrp-2"),
        Activity("the denominators side by side on the cheat sheet", 10, "cheat-sheet"),
        Activity("wrap-up and questions", 10),
    )),
    Session(180, "from one layer to VGG-16, and a broken heatmap", (
        Activity("intro from {doc}`what-lrp-sees`: what a heatmap shows, and the castle", 10),
        Activity("exercises 1–3 (part 1): LRP-0, LRP-ε, conservation", 25, "implement-lrp-1"),
        Activity("exercises 4–7 (part 2): convolutions, the gradient trick, LRP-γ, zᴮ", 35, "implement-lrp-2"),
        Activity("break", 10),
        Activity("exercises 8–11 (part 3): max-pooling, the composite's loop, run part 3 on VGG-16, "
                 "Pixel-Flipping", 45, "implement-lrp-3"),
        Activity("debug a broken heatmap (exercise 12, part 4): the detector, the culprit, the fix", 25,
                 "implement-lrp-4"),
        Activity("heatmaps that mean something: the network with a ground truth ({doc}`a-network-we-can-check`)",
                 15, "ground-truth-network"),
        Activity("wrap-up and questions", 15),
    )),
)


def session_plans_markdown(records: Sequence[Mapping]) -> str:
    """The plans of :data:`SESSIONS` as Markdown: one table per session, with the machine time of
    each notebook from ``records`` (``"5.4 s on cpu, quick profile, 2026-12-06"``, or
    ``"not run in this build"`` for a notebook without a record) and the totals.

    Parameters
    ----------
    records : sequence of mapping
        The build's execution report, one mapping per figure notebook with at least ``figure``,
        ``seconds``, ``device``, ``profile``, ``status`` and ``date`` (the last record of a figure
        counts).

    Raises
    ------
    ValueError
        A record without one of those keys, or with seconds that are not a number.
    """
    by_figure = {}
    for record in records:
        missing = [key for key in ("figure", "seconds", "device", "profile", "status", "date") if key not in record]
        if missing:
            raise ValueError(f"record {dict(record)!r} of the execution report has no {missing[0]!r}")
        if isinstance(record["seconds"], bool) or not isinstance(record["seconds"], (int, float)):
            raise ValueError(f"record of figure {record['figure']!r} has seconds {record['seconds']!r}; "
                             "expected a number")
        by_figure[record["figure"]] = record
    parts = ["The minutes are planned for the students, not measured; the machine time is what each notebook "
             "took when this book was built (papermill's duration: starting its kernel and running every cell), on the device and with the profile "
             "named."]
    for session in SESSIONS:
        parts.append(_table(session, by_figure))
    return "\n\n".join(parts) + "\n"


def _table(session: Session, by_figure: Mapping) -> str:
    lines = [f"### {session.minutes} minutes: {session.title}", "",
             "| # | activity | student minutes | notebook | machine time |", "| --- | --- | --- | --- | --- |"]
    seconds, absent = 0.0, []
    for number, activity in enumerate(session.activities, 1):
        record = by_figure.get(activity.figure)
        if activity.figure is None:
            machine = "—"
        elif record is None:
            machine, absent = NOT_RUN, absent + [activity.figure]
        else:
            seconds += float(record["seconds"])
            machine = _machine(record)
        lines.append(f"| {number} | {activity.what} | {activity.minutes} | {activity.figure or '—'} | {machine} |")
    total = f"{seconds:.1f} s" + (f" ({len(absent)} notebook{'s' if len(absent) > 1 else ''} {NOT_RUN}: "
                                  f"{', '.join(absent)})" if absent else "")
    lines.append(f"| | **total** | **{sum(a.minutes for a in session.activities)}** | | **{total}** |")
    return "\n".join(lines)


def _machine(record: Mapping) -> str:
    cached = " (cache hit)" if record["status"] == "cache hit" else ""
    return (f"{float(record['seconds']):.1f} s on {record['device']}, {record['profile']} profile, "
            f"{str(record['date'])[:10]}{cached}")


def write_session_plans(root, records: Sequence[Mapping]) -> Path:
    """Write :func:`session_plans_markdown` to ``<root>/book/_generated/session-plans.md``, under a
    temporary name first and renamed when complete; returns the path."""
    text = session_plans_markdown(records)
    target = Path(root) / PAGE
    target.parent.mkdir(parents=True, exist_ok=True)
    from ..experiment.store import write_atomic

    write_atomic(target, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return target
