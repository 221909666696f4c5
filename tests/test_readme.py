"""Every code block of the README works as written.

- ```` ```python ```` blocks run in order, as one session, in a fresh interpreter (a later block
  may use what an earlier one defined, as a reader following the README would). They run
  offline: ``LRPKIT_OFFLINE=1`` and an empty ``TORCH_HOME`` (so any ``lrpkit.models`` call gets
  seeded random weights), images copied from ``$LRPKIT_DATA_MIRROR`` into a temporary cache.
- ```` ```bash ```` lines are parsed, not run (they build the book or explain images: minutes to
  hours): ``lrpkit ...`` by the parser of lrpkit's command line, ``python -m lrpkit.book ...`` by
  the book's, and ``make ...`` by ``make -n``, whose printed ``lrpkit.book`` command is parsed in
  turn and must carry every ``VAR=value`` of the line (make ignores variables it does not use).
  A line with any other command fails the test, so that a new kind of command gets a check.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lrpkit import book, cli
from lrpkit.teaching import cli as teaching_cli

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)


def readme_blocks(lang: str) -> list[tuple[int, str]]:
    """(line number, dedented text) of every fenced block of ``lang`` in the README."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, textwrap.dedent(m["body"]))
            for m in FENCE.finditer(text) if m["lang"] == lang]


def test_readme_blocks_are_found():
    """The fence pattern finds every block (indented ones inside a list included)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for lang in ("python", "bash"):
        blocks = readme_blocks(lang)
        assert len(blocks) == text.count(f"```{lang}") > 0
        assert all(body.strip() for _, body in blocks)


def test_readme_python_blocks_run_in_order(tmp_path):
    mirror = os.environ.get("LRPKIT_DATA_MIRROR")
    if not mirror:
        pytest.fail("set LRPKIT_DATA_MIRROR to the folder of the book's images (the Makefile does)")
    script = ["import sys", "_ns = {'__name__': '__main__'}"]
    for line, body in readme_blocks("python"):
        script.append(f"print('README.md line {line}', file=sys.stderr, flush=True)")
        script.append(f"exec(compile({body!r}, 'README.md line {line}', 'exec'), _ns)")
    env = {**os.environ, "LRPKIT_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch-home"),
           "LRPKIT_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", "\n".join(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _parse(parser_factory, args: list[str], line: str) -> None:
    try:
        parser_factory().parse_args(args)
    except SystemExit as exit_:                       # argparse's own error (book's parser)
        raise AssertionError(f"README: {line!r} does not parse (exit {exit_.code})") from None
    except Exception as err:                          # noqa: BLE001 -- lrpkit's one-line usage error
        raise AssertionError(f"README: {line!r} does not parse: {err}") from None


def _bash_commands() -> list[tuple[int, str, list[str]]]:
    commands = []
    for start, body in readme_blocks("bash"):
        for offset, line in enumerate(body.splitlines(), start=1):
            words = shlex.split(line, comments=True)
            if words:
                commands.append((start + offset, line.split("#")[0].strip(), words))
    return commands


@pytest.mark.parametrize("number, line, words", _bash_commands(),
                         ids=[f"line{n}" for n, _, _ in _bash_commands()])
def test_readme_bash_lines_parse(number, line, words):
    if words[0] == "lrpkit":
        _parse(cli.build_parser, words[1:], line)
    elif words[:3] == ["python", "-m", "lrpkit.book"]:
        _parse(book.parser, words[3:], line)
    elif words[0] == "make":
        proc = subprocess.run(["make", "-n", "-s", *words[1:]], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, f"README line {number}: {line!r}: {proc.stderr}"
        builds = [shlex.split(out) for out in proc.stdout.splitlines() if "lrpkit.book" in out]
        for build in builds:
            _parse(book.parser, build[build.index("lrpkit.book") + 1:], line)
        for assignment in (w for w in words[1:] if "=" in w):
            value = assignment.split("=", 1)[1]
            assert builds and any(value in build for build in builds), (
                f"README line {number}: {line!r}: make does not pass {assignment!r} on")
    elif words[0] == "mkdir":
        assert words[1:] and all(not w.startswith("-") for w in words[1:]), f"README line {number}: {line!r}"
    elif words[:3] == ["python", "-m", "lrpkit.teaching"]:
        _parse(teaching_cli.build_parser, words[3:], line)
    elif words[:2] == ["otter", "run"]:      # grading for real: tests/test_teaching_autograder.py
        from otter.cli import cli as otter

        options = {o for p in otter.commands["run"].params for o in p.opts}
        unknown = [w for w in words[2:] if w.startswith("-") and w not in options]
        assert not unknown, f"README line {number}: {line!r}: otter run has no option {unknown}"
    else:
        pytest.fail(f"README line {number}: {line!r}: no check for this command (add one to "
                    "tests/test_readme.py)")
