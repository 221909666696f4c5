"""Self-checking exercises for the book's chapter "Implement LRP yourself".

Each exercise asks for one function (an LRP rule for one layer, a pooling rule, the backward loop
of a composite, Pixel-Flipping, the debugging of a broken heatmap). Its check runs that function on random float64 inputs of several
shapes and compares the result with lrpkit's own implementation -- :mod:`lrpkit.rules`,
:func:`lrpkit.rules.pool_relevance`, :func:`lrpkit.lrp.relevance`, :func:`lrpkit.pf.pixel_flipping`
-- under the ``"vanilla"`` denominator heuristic (the rule's plain formula: ``z + ε``, and a
quotient of 0 where a denominator is exactly 0). When they disagree the check says in one sentence
*what* is wrong: it recomputes the common mistakes (sign flipped, bias forgotten, ε in the wrong
place, γ on the negative weights, zᴮ bounds swapped, max-pooling read the wrong way, ...) and
names the one the student's output matches; failing that, it reports the wrong shape, the batch
handling, or whether the relevance is conserved as the rule demands.

The debugging exercise (:mod:`.debug`) is checked against lrpkit's diagnostics instead:
:func:`lrpkit.diagnostics.instability`, :func:`lrpkit.diagnostics.culprits` and the stabilizing
denominator heuristics, recomputed on the same inputs.

For instructors: :func:`student_notebook` writes the notebooks without their solutions,
:mod:`.autograder` the Otter-Grader autograders that wrap the checks, and :mod:`.sessions` the
session plans timed from a build's execution report (``python -m lrpkit.teaching``, :mod:`.cli`).

A check returns a :class:`Verdict`, shown in a notebook as a green or red line. After
``setup(solutions=True)`` (the book build) the cells marked ``%%solution`` run and a failed check
raises :class:`ExerciseError`, so that a wrong solution fails the build; with
``setup(solutions=False)`` (a student's notebook) solution cells are skipped and checks only report.

Conventions
-----------
Tensors are float64. Dense layers follow ``torch.nn.Linear``: ``W`` is ``[outputs, inputs]``,
activations ``a`` are ``[B, inputs]``, relevance ``R`` at the output ``[B, outputs]``. Convolutions
follow ``torch.nn.functional.conv2d``: ``a`` is ``[B, C, H, W]``, ``W`` is ``[K, C, kh, kw]``.
Every rule returns the relevance of the layer's *input*, shaped like ``a``.

References
----------
G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Müller, *Layer-Wise Relevance Propagation:
An Overview*, in Explainable AI, LNCS 11700 (2019), §10.2 (the rules and the gradient trick).
G. Montavon, *LRP tutorial* (2021), https://git.tu-berlin.de/gmontavon/lrp-tutorial
W. Samek et al., *Evaluating the visualization of what a deep neural network has learned*, IEEE
TNNLS 28(11) (2017) (Pixel-Flipping).
R. Bermudez Schettino, *In-Depth Hyperparameter Selection for Layer-Wise Relevance Propagation*,
master's thesis, TU Berlin (2022), §2.1-2.3.
"""
from .autograder import write_autograders
from .cases import random_dense
from .cli import main
from .conv import check_lrp_epsilon_conv, check_lrp_epsilon_conv_autograd, check_lrp_gamma_conv, check_zbox_conv
from .debug import check_debug_heatmap
from .dense import check_absorbed, check_lrp_0_dense, check_lrp_epsilon_dense
from .exercises import EXERCISES, Exercise, exercise_table, lines_to_write, solution_lines
from .judge import RTOL
from .network import check_lrp_by_index, check_maxpool_average, check_maxpool_winner, check_pixel_flipping, small_vgg
from .student import student_notebook
from .verdict import ExerciseError, Verdict, setup

__all__ = [
    "Verdict", "ExerciseError", "Exercise", "EXERCISES", "setup", "exercise_table", "solution_lines",
    "lines_to_write", "random_dense", "small_vgg", "student_notebook", "write_autograders", "main", "RTOL",
    "check_lrp_0_dense", "check_lrp_epsilon_dense", "check_absorbed", "check_lrp_epsilon_conv_autograd",
    "check_lrp_epsilon_conv", "check_lrp_gamma_conv", "check_zbox_conv", "check_maxpool_winner",
    "check_maxpool_average", "check_lrp_by_index", "check_pixel_flipping", "check_debug_heatmap",
]
