"""lrpkit.teaching.sessions: the session plans add up, and their machine times are the report's."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lrpkit.teaching import sessions

REPO = Path(__file__).resolve().parents[1]


def record(figure, seconds, device="cpu", profile="quick", status="ran", date="2026-12-06T10:00:00"):
    return dict(figure=figure, title=figure, chapter="book/implement-lrp", notebook=f"{figure}.ipynb",
                profile=profile, device=device, status=status, seconds=seconds, date=date)


def rows(markdown: str, minutes: int) -> list:
    """The table rows (cells) of the session of ``minutes`` minutes, the total row last."""
    section = markdown.split(f"### {minutes} minutes")[1].split("###")[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|") and not line.startswith("| #") and not line.startswith("| ---")]


def test_the_planned_minutes_add_up_to_the_session():
    assert [s.minutes for s in sessions.SESSIONS] == [45, 90, 180]
    for session in sessions.SESSIONS:
        assert sum(a.minutes for a in session.activities) == session.minutes, session.title
        figures = [a.figure for a in session.activities if a.figure]
        assert len(figures) == len(set(figures)), session.title     # a notebook's time counts once


def test_every_figure_is_a_notebook_of_the_book_or_the_new_part_4():
    registry = yaml.safe_load((REPO / "notebooks" / "figures.yml").read_text())
    known = set(registry["figures"]) | {"implement-lrp-4"}
    for session in sessions.SESSIONS:
        for activity in session.activities:
            assert activity.figure is None or activity.figure in known, activity


def test_machine_times_are_the_records_seconds():
    figures = {a.figure for s in sessions.SESSIONS for a in s.activities if a.figure}
    seconds = {figure: 1.25 + 3 * i for i, figure in enumerate(sorted(figures))}
    records = [record(f, s, device="cuda", profile="full") for f, s in seconds.items()]
    records.append(record("fig-2-2", 99.0))                 # a figure no plan runs
    text = sessions.session_plans_markdown(records)
    for session in sessions.SESSIONS:
        table = rows(text, session.minutes)
        assert len(table) == len(session.activities) + 1
        for activity, cells in zip(session.activities, table):
            assert cells[1] == activity.what and int(cells[2]) == activity.minutes
            if activity.figure:
                assert cells[3] == activity.figure
                assert cells[4] == f"{seconds[activity.figure]:.1f} s on cuda, full profile, 2026-12-06"
            else:
                assert cells[4] == "—"
        total = table[-1]
        assert total[2] == f"**{session.minutes}**"
        expected = sum(seconds[a.figure] for a in session.activities if a.figure)
        assert total[4] == f"**{expected:.1f} s**"


def test_a_missing_record_says_not_run_in_this_build():
    records = [record("implement-lrp-1", 5.4), record("implement-lrp-2", 7.0, status="cache hit")]
    text = sessions.session_plans_markdown(records)
    table = rows(text, 180)
    by_figure = {cells[3]: cells[4] for cells in table[:-1]}
    assert by_figure["implement-lrp-1"] == "5.4 s on cpu, quick profile, 2026-12-06"
    assert by_figure["implement-lrp-2"] == "7.0 s on cpu, quick profile, 2026-12-06 (cache hit)"
    for figure in ("implement-lrp-3", "implement-lrp-4", "ground-truth-network"):
        assert by_figure[figure] == "not run in this build"
    assert re.fullmatch(r"\*\*12\.4 s \(3 notebooks not run in this build: .*\)\*\*", table[-1][4])
    assert "not run in this build" in rows(sessions.session_plans_markdown([]), 45)[1][4]


@pytest.mark.parametrize("bad, message", [
    ({"figure": "implement-lrp-1"}, "has no 'seconds'"),
    (record("implement-lrp-1", "5 s"), "expected a number"),
])
def test_bad_records_are_named(bad, message):
    with pytest.raises(ValueError, match=message) as info:
        sessions.session_plans_markdown([bad])
    assert "\n" not in str(info.value)


def test_write_session_plans_replaces_the_page_whole(tmp_path):
    page = tmp_path / sessions.PAGE
    page.parent.mkdir(parents=True)
    page.write_text("an older build's plans")
    path = sessions.write_session_plans(tmp_path, [record("implement-lrp-1", 5.4)])
    assert path == page
    assert path.read_text() == sessions.session_plans_markdown([record("implement-lrp-1", 5.4)])
    assert sorted(p.name for p in page.parent.iterdir()) == ["session-plans.md"]     # no temporary left
