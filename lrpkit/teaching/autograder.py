"""Otter-Grader autograders for the chapter's exercises: one zip per part, one question per exercise.

Each question wraps the exercise's own check (:data:`lrpkit.teaching.EXERCISES`): its test runs
``teaching.check_<function>(env["<function>"])`` on the function the student's notebook defined
and fails with the check's one-sentence verdict, so a grader reads the same sentence the student
saw under the check cell. The zips are made by otter itself (``otter.generate``, the back end of
``otter generate``) from these test files, an ``otter_config.json`` and lrpkit as a requirement
(:data:`REQUIREMENT`, which otter puts into the zip's ``environment.yml``).
``otter run -a implement-lrp-1-autograder.zip notebook.ipynb`` grades a notebook locally, and the
same zip is a Gradescope autograder.

The graded submission is the student version of a part's notebook
(``python -m lrpkit.teaching student``) with the functions filled in. The notebook is run from top
to bottom by otter and its errors are ignored (a student's failing cell costs the exercises that
need it, not the others).

Example
-------
>>> write_autograders("autograder")                  # doctest: +SKIP
[PosixPath('autograder/implement-lrp-1-autograder.zip'), ...]
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from .exercises import EXERCISES, Exercise

__all__ = ["REQUIREMENT", "CONFIG", "PARTS", "autograder_name", "test_file", "write_autograders"]

#: What the grading machine installs (Gradescope; ``otter run`` uses the current environment).
REQUIREMENT = "lrpkit[book] @ git+https://github.com/lrpkit/lrpkit"
#: otter's configuration (``otter_config.json``): the checks are formative, so students see every
#: question's verdict and the notebook's printed output.
CONFIG = {"lang": "python", "show_stdout": True, "show_all_public": True}
#: The parts of the chapter, each a notebook and an autograder.
PARTS = tuple(sorted({e.part for e in EXERCISES.values()}))

_TEST = '''"""Exercise {number}: {title} (part {part}): lrpkit.teaching.check_{function}."""
from otter.test_files import test_case

OK_FORMAT = False

name = {function!r}
points = {points}


@test_case(points={points}, failure_message={hint!r})
def check(env):
    from lrpkit import teaching

    verdict = teaching.check_{function}(env.get({function!r}))
    assert verdict, verdict.message
'''


def autograder_name(part: int) -> str:
    """The file name of part ``part``'s autograder, ``implement-lrp-<part>-autograder.zip``."""
    return f"implement-lrp-{part}-autograder.zip"


def test_file(exercise: Exercise) -> str:
    """The otter test file (exception format) of one exercise: one test case worth its points,
    which asserts the exercise's check and fails with the check's verdict."""
    number = list(EXERCISES).index(exercise.function) + 1
    hint = f"run teaching.check_{exercise.function}({exercise.function}) in the notebook for the same verdict"
    return _TEST.format(number=number, title=exercise.title, part=exercise.part, function=exercise.function,
                        points=exercise.points, hint=hint)


def write_autograders(out, *, parts: Optional[Sequence[int]] = None, force: bool = False) -> list:
    """Write the autograder zip of each part into the folder ``out``.

    Every target is checked before anything is written; each zip is written under a temporary name
    in ``out`` and renamed when complete, and an existing zip is replaced only with ``force=True``.

    Parameters
    ----------
    out : str or Path
        An existing folder.
    parts : sequence of int, optional
        The parts to write (default: all, :data:`PARTS`).
    force : bool
        Replace existing zips.

    Returns
    -------
    list of Path
        The zips, in part order.

    Raises
    ------
    FileNotFoundError, ValueError, FileExistsError, ImportError
        ``out`` is not a folder; an unknown part; a zip exists and ``force`` is False; otter-grader
        is not installed.
    """
    targets = _targets(out, parts, force)
    try:
        from otter.generate import main as generate
    except ImportError as exc:
        raise ImportError(f"otter-grader is not installed ({exc}); pip install 'lrpkit[teach]'") from None
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        config, requirements = scratch / "otter_config.json", scratch / "requirements.txt"
        config.write_text(json.dumps(CONFIG, indent=1) + "\n", encoding="utf-8")
        requirements.write_text(REQUIREMENT + "\n", encoding="utf-8")
        for part, target in targets:
            tests = scratch / f"tests-{part}"
            tests.mkdir()
            for exercise in (e for e in EXERCISES.values() if e.part == part):
                (tests / f"{exercise.function}.py").write_text(test_file(exercise), encoding="utf-8")
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            os.close(handle)
            try:
                generate(tests_dir=str(tests), output_path=temporary, config=str(config),
                         requirements=str(requirements), no_environment=True,
                         python_version=f"{sys.version_info.major}.{sys.version_info.minor}")
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            written.append(target)
    return written


def _targets(out, parts, force: bool) -> list:
    """``(part, zip path)`` of every zip to write, after every check (nothing written)."""
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"--out {str(out)!r} is not a folder; create it first")
    parts = PARTS if parts is None else tuple(parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"unknown part {unknown[0] if unknown else 'none'!r}; choose among "
                         f"{', '.join(map(str, PARTS))}")
    targets = [(part, out / autograder_name(part)) for part in sorted(set(parts))]
    existing = [str(t) for _, t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]!r} exists; pass --force to replace it")
    return targets
