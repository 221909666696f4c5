"""The exercises of the chapter "Implement LRP yourself": one per function, with its check."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .conv import check_lrp_epsilon_conv, check_lrp_epsilon_conv_autograd, check_lrp_gamma_conv, check_zbox_conv
from .dense import check_absorbed, check_lrp_0_dense, check_lrp_epsilon_dense
from .network import check_lrp_by_index, check_maxpool_average, check_maxpool_winner, check_pixel_flipping
from .verdict import Verdict

__all__ = ["Exercise", "EXERCISES", "exercise_table", "solution_lines"]


@dataclass(frozen=True)
class Exercise:
    """One exercise of the chapter: its function, title, notebook part, check and prerequisites."""

    function: str
    title: str
    part: int
    check: Callable[..., Verdict]
    builds_on: tuple = ()


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
             ("lrp_epsilon_conv", "lrp_gamma_conv", "zbox_conv", "maxpool_winner", "maxpool_average")),
    Exercise("pixel_flipping", "Grading a heatmap with Pixel-Flipping", 3, check_pixel_flipping,
             ("lrp_by_index",)),
)}


def exercise_table(notebooks=None):
    """The exercises as a pandas DataFrame: part, exercise, function, what it builds on and, given
    the folder of the chapter's notebooks, the lines of its solution (non-blank lines of the
    ``%%solution`` cell that defines it)."""
    import pandas as pd

    rows = [(e.part, e.title, e.function, ", ".join(e.builds_on) or "—") for e in EXERCISES.values()]
    table = pd.DataFrame(rows, columns=["Part", "Exercise", "Function", "Builds on"])
    if notebooks is not None:
        lines = solution_lines(notebooks)
        table.insert(3, "Solution lines", [lines.get(e.function) for e in EXERCISES.values()])
    return table


def solution_lines(folder) -> dict:
    """Function name -> non-blank lines of the ``%%solution`` cell defining it, over the chapter's
    notebooks (``implement-lrp-*.ipynb``) in ``folder``."""
    import json

    paths = sorted(Path(folder).glob("implement-lrp-*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks implement-lrp-*.ipynb in {str(folder)!r}")
    found = {}
    for path in paths:
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] != "code" or not source.startswith("%%solution"):
                continue
            body = source.split("\n", 1)[1]
            names = [n.name for n in ast.parse(body).body if isinstance(n, ast.FunctionDef)]
            if names:
                found[names[0]] = sum(1 for line in body.splitlines() if line.strip())
    return found
