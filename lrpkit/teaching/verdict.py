"""Verdicts of the checks, and the set-up of a notebook of the chapter (solutions on or off)."""
from __future__ import annotations

import ast
import html
from dataclasses import dataclass

__all__ = ["Verdict", "ExerciseError", "setup", "finish"]


class ExerciseError(AssertionError):
    """A check failed while solutions are on (the book build): the solution is wrong."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: whether the function passed and one sentence saying why."""

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'✓' if self.passed else '✗'} {self.exercise}: {self.message}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour, background = ("#1a5e20", "#e8f5e9") if self.passed else ("#8b1a1a", "#fdecea")
        status = "passed" if self.passed else "not yet"
        return (f'<div class="lrpkit-check lrpkit-check-{status.replace(" ", "-")}" style="border-left:4px solid '
                f'{colour};background:{background};padding:0.4em 0.8em;margin:0.3em 0">'
                f'<strong style="color:{colour}">{"✓" if self.passed else "✗"} <code>{html.escape(self.exercise)}'
                f'</code></strong>: {html.escape(self.message)}</div>')


class _State:
    solutions = False


def setup(solutions: bool = False) -> None:
    """Prepare a notebook of the chapter.

    Parameters
    ----------
    solutions : bool
        True (the book build): the cells starting with ``%%solution`` run, and a failed check raises
        :class:`ExerciseError`. False (a student's notebook): solution cells are skipped, so that
        the checks test the student's own functions, and a failed check only reports.
    """
    if not isinstance(solutions, bool):
        raise TypeError(f"solutions must be True or False, got {solutions!r}")
    _State.solutions = solutions
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: no cell magics to register
        return
    shell = get_ipython()
    if shell is not None:
        shell.register_magic_function(_solution_magic, magic_kind="cell", magic_name="solution")


def _solution_magic(line: str, cell: str) -> None:
    """``%%solution``: run the cell only when solutions are on."""
    from IPython import get_ipython

    if _State.solutions:
        shell = get_ipython()
        exec(compile(cell, "<solution>", "exec"), shell.user_ns)  # noqa: S102 -- the notebook's own cell
        return
    names = [node.name for node in ast.parse(cell).body if isinstance(node, ast.FunctionDef)]
    which = f" of {', '.join(names)}" if names else ""
    print(f"solution{which} not run (solutions = False): the check below tests your own function")


def finish(verdict: Verdict) -> Verdict:
    if _State.solutions and not verdict.passed:
        raise ExerciseError(str(verdict))
    return verdict
