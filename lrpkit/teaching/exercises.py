"""The exercises of the chapter "Implement LRP yourself": one per function, with its check."""
from __future__ import annotations

import ast
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .conv import check_lrp_epsilon_conv, check_lrp_epsilon_conv_autograd, check_lrp_gamma_conv, check_zbox_conv
from .debug import check_debug_heatmap
from .dense import check_absorbed, check_lrp_0_dense, check_lrp_epsilon_dense
from .network import check_lrp_by_index, check_maxpool_average, check_maxpool_winner, check_pixel_flipping
from .verdict import Verdict

__all__ = ["Exercise", "EXERCISES", "exercise_table", "solution_lines", "lines_to_write"]


@dataclass(frozen=True)
class Exercise:
    """One exercise of the chapter: its function, title, notebook part, check, prerequisites and
    the points it is worth in the autograder (:mod:`lrpkit.teaching.autograder`)."""

    function: str
    title: str
    part: int
    check: Callable[..., Verdict]
    builds_on: tuple = ()
    points: int = 1


EXERCISES = {e.function: e for e in (
    Exercise("lrp_0_dense", "LRP-0 for a dense layer", 1, check_lrp_0_dense),
    Exercise("lrp_epsilon_dense", "LRP-ε for a dense layer", 1, check_lrp_epsilon_dense, ("lrp_0_dense",)),
    Exercise("absorbed", "Conservation as a self-check", 1, check_absorbed, ("lrp_epsilon_dense",)),
    Exercise("lrp_epsilon_conv_autograd", "LRP-ε for a convolution, by the gradient trick", 2,
             check_lrp_epsilon_conv_autograd, ("lrp_epsilon_dense",)),
    Exercise("lrp_epsilon_conv", "LRP-ε for a convolution, directly", 2, check_lrp_epsilon_conv,
             ("lrp_epsilon_conv_autograd",)),
    Exercise("lrp_gamma_conv", "LRP-γ", 2, check_lrp_gamma_conv, ("lrp_epsilon_conv",)),
    Exercise("zbox_conv", "zᴮ on the pixel layer", 2, check_zbox_conv, ("lrp_epsilon_conv",)),
    Exercise("maxpool_winner", "Max-pooling, winner takes all", 3, check_maxpool_winner),
    Exercise("maxpool_average", "Max-pooling read as average pooling", 3, check_maxpool_average,
             ("lrp_epsilon_dense",)),
    Exercise("lrp_by_index", "A composite by layer index", 3, check_lrp_by_index,
             ("lrp_epsilon_conv", "lrp_gamma_conv", "zbox_conv", "maxpool_winner", "maxpool_average"), points=2),
    Exercise("pixel_flipping", "Grading a heatmap with Pixel-Flipping", 3, check_pixel_flipping,
             ("lrp_by_index",), points=2),
    Exercise("debug_heatmap", "Debugging a broken heatmap", 4, check_debug_heatmap, points=2),
)}


def exercise_table(notebooks=None):
    """The exercises as a pandas DataFrame: part, exercise, function, what it builds on and, given
    the folder of the chapter's notebooks, the lines of its solution (:func:`solution_lines`) and
    the lines a student writes into the cell given (:func:`lines_to_write`)."""
    import pandas as pd

    rows = [(e.part, e.title, e.function, ", ".join(e.builds_on) or "—") for e in EXERCISES.values()]
    table = pd.DataFrame(rows, columns=["Part", "Exercise", "Function", "Builds on"])
    if notebooks is not None:
        lines, to_write = solution_lines(notebooks), lines_to_write(notebooks)
        table.insert(3, "Solution lines", [lines.get(e.function) for e in EXERCISES.values()])
        table.insert(4, "Lines to write", [to_write.get(e.function) for e in EXERCISES.values()])
    return table


def solution_lines(folder) -> dict:
    """Function name -> non-blank lines of the ``%%solution`` cell defining it, over the chapter's
    notebooks (``implement-lrp-*.ipynb``) in ``folder``."""
    return {name: sum(1 for line in solution.splitlines() if line.strip())
            for name, (_, solution) in _cells(folder).items()}


def lines_to_write(folder) -> dict:
    """Function name -> the lines a student writes: the non-blank lines of the solution that the
    cell given to the student does not already hold (comments neither counted nor compared). For a stub (a
    signature, a docstring, ``raise NotImplementedError``) that is the solution's body; for a
    skeleton with blanks (``...``) it is what fills the blanks."""
    counts = {}
    for name, (given, solution) in _cells(folder).items():
        given_lines, solution_lines_ = _code_lines(given), _code_lines(solution)
        matcher = difflib.SequenceMatcher(None, given_lines, solution_lines_, autojunk=False)
        counts[name] = len(solution_lines_) - sum(block.size for block in matcher.get_matching_blocks())
    return counts


def _cells(folder) -> dict:
    """Function name -> (the student's cell defining it, the body of its ``%%solution`` cell)."""
    paths = sorted(Path(folder).glob("implement-lrp-*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks implement-lrp-*.ipynb in {str(folder)!r}")
    given, found = {}, {}
    for path in paths:
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"])
            solution = source.startswith("%%solution")
            if cell["cell_type"] != "code" or source.startswith("%") and not solution:
                continue
            if solution:
                source = source.split("\n", 1)[1]
            if not source.startswith("def ") and "\ndef " not in source:
                continue                   # no function here (and perhaps IPython's magics)
            names = [n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
            if names and solution:
                found[names[0]] = (given.get(names[0], ""), source)
            elif names:
                given[names[0]] = source
    return found


def _code_lines(source: str) -> list:
    """The non-blank lines of ``source``, stripped, without trailing comments."""
    lines = (line.split("  #")[0].strip() for line in source.splitlines())
    return [line for line in lines if line and not line.startswith("#")]
