"""Self-checking exercises for the book's chapter "Implement LRP yourself".

Each exercise asks for one function (an LRP rule for one layer, a pooling rule, the backward loop
of a composite, Pixel-Flipping). Its check runs that function on random float64 inputs of several
shapes and compares the result with lrpkit's own implementation -- :mod:`lrpkit.rules`,
:func:`lrpkit.rules.pool_relevance`, :func:`lrpkit.lrp.relevance`, :func:`lrpkit.pf.pixel_flipping`
-- under the ``"vanilla"`` denominator heuristic (the rule's plain formula: ``z + ε``, and a
quotient of 0 where a denominator is exactly 0). When they disagree the check says in one sentence
*what* is wrong: it recomputes the common mistakes (sign flipped, bias forgotten, ε in the wrong
place, γ on the negative weights, zᴮ bounds swapped, max-pooling read the wrong way, ...) and
names the one the student's output matches; failing that, it reports the wrong shape, the batch
handling, or whether the relevance is conserved as the rule demands.

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
from __future__ import annotations

import argparse
import ast
import html
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from . import canonical, lrp, pf
from .composites import Composite
from .rules import IMAGENET_MEAN, IMAGENET_STD, Epsilon, Gamma, ZBox, Zero, pool_relevance

__all__ = [
    "Verdict", "ExerciseError", "Exercise", "EXERCISES", "setup", "exercise_table", "solution_lines",
    "random_dense", "small_vgg", "student_notebook",
    "check_lrp_0_dense", "check_lrp_epsilon_dense", "check_absorbed", "check_lrp_epsilon_conv_autograd",
    "check_lrp_epsilon_conv", "check_lrp_gamma_conv", "check_zbox_conv", "check_maxpool_winner",
    "check_maxpool_average", "check_lrp_by_index", "check_pixel_flipping",
]

#: Agreement asked of a solution: relative to each value, and to the largest value of the case.
#: Loose enough for the tutorial's habit of adding 1e-9 to every denominator.
RTOL = 1e-5

_F64 = torch.float64


# --------------------------------------------------------------------------------------------------
# verdicts and the notebook set-up


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


def _finish(verdict: Verdict) -> Verdict:
    if _State.solutions and not verdict.passed:
        raise ExerciseError(str(verdict))
    return verdict


# --------------------------------------------------------------------------------------------------
# the judge


@dataclass
class _Case:
    """One random input of a check: the arguments, lrpkit's answer, and a description."""

    args: tuple
    kwargs: dict
    expected: torch.Tensor
    describe: str
    batch: int = 1
    extra: dict = field(default_factory=dict)   # what the mistakes need (layer, hyperparameters, ...)

    def call(self, fn):
        clone = lambda v: v.clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
        return fn(*(clone(v) for v in self.args), **{k: clone(v) for k, v in self.kwargs.items()})


#: A mistake: its one-sentence diagnosis, and what a function making it returns (None: not
#: computable for this case).
_Mistake = tuple[str, Callable[[_Case], Optional[torch.Tensor]]]


def _close(out: torch.Tensor, ref: torch.Tensor) -> bool:
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return bool(torch.allclose(out.to(_F64), ref.to(_F64), rtol=RTOL, atol=RTOL * max(scale, 1e-12)))


def _judge(name: str, fn, cases: Sequence[_Case], mistakes: Sequence[_Mistake], reference: str, *,
           things: str, shape_hint: Callable[[_Case, tuple], str] = None, no_grad: bool = False,
           signature: str = "", raise_hint: str = "") -> Verdict:
    if not callable(fn):
        return Verdict(name, False, f"expected a function, got {type(fn).__name__}; pass the function itself, "
                                    f"without calling it: check_{name}({name})")
    outputs = []
    for case in cases:
        try:
            if no_grad:
                with torch.no_grad():
                    out = case.call(fn)
            else:
                out = case.call(fn)
        except NotImplementedError:
            return Verdict(name, False, f"{name} is not written yet: replace its `raise NotImplementedError` "
                                        "with your code (the solution is folded under the exercise)")
        except TypeError as exc:
            if "argument" in str(exc):
                return Verdict(name, False, f"{name} cannot be called as {signature}: {exc}; keep the stub's "
                                            "signature")
            return Verdict(name, False, _raised(name, exc, case, raise_hint))
        except RuntimeError as exc:
            if no_grad and ("grad" in str(exc)):
                return Verdict(name, False, f"{name} failed without autograd ({exc}); compute the transposed "
                                            "product directly (F.conv_transpose2d), not with .backward()")
            if "does not require grad" in str(exc):
                return Verdict(name, False, f"{name}: autograd has nothing to differentiate ({exc}); make the "
                                            "input a leaf that needs a gradient, "
                                            "a = a.detach().requires_grad_(True), before the forward pass")
            return Verdict(name, False, _raised(name, exc, case, raise_hint))
        except Exception as exc:  # noqa: BLE001 -- any error of the student's code is reported
            return Verdict(name, False, _raised(name, exc, case, raise_hint))
        if out is None:
            return Verdict(name, False, f"{name} returns None: did you forget the `return`?")
        if not isinstance(out, torch.Tensor):
            return Verdict(name, False, f"{name} returns a {type(out).__name__}, not a torch.Tensor")
        outputs.append(out.detach())

    for case, out in zip(cases, outputs):
        if tuple(out.shape) != tuple(case.expected.shape):
            hint = shape_hint(case, tuple(out.shape)) if shape_hint else ""
            return Verdict(name, False, f"wrong shape: {name} returns {_shape(out.shape)} for {case.describe}, "
                                        f"expected {_shape(case.expected.shape)}" + (f"; {hint}" if hint else ""))
    for case, out in zip(cases, outputs):
        if out.dtype != case.expected.dtype:
            return Verdict(name, False, f"{name} returns {out.dtype} for float64 input; keep the dtype of the "
                                        "inputs (create new tensors with dtype=... or like an input)")
    nan = next(((case, out) for case, out in zip(cases, outputs)
                if not torch.isfinite(out).all() and torch.isfinite(case.expected).all()), None)
    if nan is not None:
        # 0/0 where a denominator is exactly 0 (no input): only inputs of activation 0 get NaN, whose
        # relevance is 0; read them as 0 to see whether anything else is wrong
        outputs = [out.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0) for out in outputs]
    nan_message = None if nan is None else (
        f"{name} returns NaN or Inf at {int((~torch.isfinite(nan[1])).sum())} of {nan[1].numel()} values for "
        f"{nan[0].describe}: a denominator is exactly 0 there (no input, no relevance); take the quotient as 0 "
        "(torch.nan_to_num) or add 1e-9 to the denominator as the tutorial does")

    if all(_close(out, case.expected) for case, out in zip(cases, outputs)):
        if nan_message:
            return Verdict(name, False, nan_message)
        err = max(float((out - case.expected).abs().max()) for case, out in zip(cases, outputs))
        return Verdict(name, True, f"correct: agrees with {reference} on {len(cases)} random {things}, "
                                   f"float64, largest difference {err:.1e}")

    for message, variant in [*mistakes, ("sign flipped: your relevance is the negative of the right one",
                                         lambda case: -case.expected)]:
        if _matches(outputs, cases, variant):
            return Verdict(name, False, message)
    if nan_message:
        return Verdict(name, False, nan_message)

    single = [_close(out, case.expected) for case, out in zip(cases, outputs) if case.batch == 1]
    batched = [_close(out, case.expected) for case, out in zip(cases, outputs) if case.batch > 1]
    if single and batched and all(single) and not all(batched):
        return Verdict(name, False, "right for one sample but wrong for a batch: every sample (row of the "
                                    "first dimension) must be computed on its own, never summed or mixed "
                                    "with the others")

    case, out = next((c, o) for c, o in zip(cases, outputs) if not _close(o, c.expected))
    dims = tuple(range(1, out.dim())) if out.dim() > 1 else ()
    got, want = _totals(out, dims), _totals(case.expected, dims)
    where = f"for {case.describe}"
    if not torch.allclose(got, want, rtol=RTOL, atol=RTOL * float(want.abs().max().clamp(min=1e-12))):
        return Verdict(name, False, f"not the right amount of relevance: yours sums to {_numbers(got)} {where} "
                                    f"where {reference} hands down {_numbers(want)}, so it does not conserve "
                                    f"what the rule conserves; compare each step with the formula")
    return Verdict(name, False, f"the total relevance is right but it is shared out differently: {where} the "
                                f"largest difference is {float((out - case.expected).abs().max()):.3g} (values "
                                f"up to {float(case.expected.abs().max()):.3g}); check which inputs receive "
                                "which share")


def _matches(outputs, cases, variant) -> bool:
    applicable = 0
    for case, out in zip(cases, outputs):
        try:
            wrong = variant(case)
        except Exception:  # noqa: BLE001 -- a variant that cannot be built for this case does not apply
            wrong = None
        if wrong is None:
            continue
        wrong = wrong.detach().nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
        if wrong.shape != out.shape or not _close(out, wrong):
            return False
        applicable += 1
    return applicable > 0


def _totals(t: torch.Tensor, dims) -> torch.Tensor:
    return t.to(_F64).sum(dim=dims) if dims else t.to(_F64).reshape(-1)


def _numbers(t: torch.Tensor) -> str:
    values = [f"{v:.4g}" for v in t.reshape(-1).tolist()[:3]]
    return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _raised(name: str, exc: Exception, case: _Case, hint: str = "") -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    if not any(word in text for word in ("shape", "size", "dimension", "mat1", "broadcast")):
        hint = ""
    return f"{name} raised {type(exc).__name__} ({text}) for {case.describe}" + (f"; {hint}" if hint else "")


_LAYOUT = "check the layout: W is [outputs, inputs] as in torch.nn.Linear, so z = a @ W.T + b and c = s @ W"
_CONV_LAYOUT = ("pass stride= and padding= to every convolution, and with stride 2 give conv_transpose2d the "
                "output_padding (or padding) that recovers the size of a")


# --------------------------------------------------------------------------------------------------
# random layers


def _conditioned(draw: Callable[[torch.Generator], tuple], ok: Callable[[tuple], bool], seed: int) -> tuple:
    """The first draw (from ``seed`` on) whose denominators stay clear of zero."""
    for attempt in range(200):
        values = draw(torch.Generator().manual_seed(seed * 1000 + attempt))
        if ok(values):
            return values
    raise RuntimeError(f"no well-conditioned random layer for seed {seed}")  # pragma: no cover


def _activations(shape, g) -> torch.Tensor:
    """Non-negative activations with some exact zeros, as after a ReLU."""
    a = torch.rand(shape, generator=g, dtype=_F64)
    return a * (torch.rand(shape, generator=g, dtype=_F64) > 0.25)


def _dense_layer(W: torch.Tensor, b: torch.Tensor) -> canonical.Layer:
    return canonical.Layer(0, "dense", "linear", W, b)


def _conv_layer(W: torch.Tensor, b: torch.Tensor, stride: int, padding: int) -> canonical.Layer:
    options = dict(stride=(stride, stride), padding=(padding, padding), dilation=(1, 1), groups=1)
    return canonical.Layer(0, "conv", "conv", W, b, options)


def _rule(rule, layer: canonical.Layer, a: torch.Tensor, R: torch.Tensor, heuristic: str = "vanilla",
          z: Optional[torch.Tensor] = None) -> torch.Tensor:
    """lrpkit's rule on one layer (``z``: the denominator's pre-activation, default the layer's output)."""
    with torch.no_grad():
        return rule.relevance(layer, a, layer.forward(a) if z is None else z, R.clone(), heuristic)


def _with(layer: canonical.Layer, weight=None, bias=None) -> canonical.Layer:
    return canonical.Layer(layer.index, layer.name, layer.kind, layer.weight if weight is None else weight,
                           layer.bias if bias is None else bias, layer.options)


def _margin(z: torch.Tensor, *shifts: float) -> bool:
    """Whether every ``z + shift`` keeps 1e-3 away from 0 (a quotient near a pole would amplify rounding)."""
    return all(float((z + s).abs().min()) > 1e-3 for s in shifts)


_DENSE_SHAPES = ((1, 4, 3), (3, 5, 2), (2, 4, 4), (1, 7, 6))          # (batch, inputs, outputs)
_CONV_SHAPES = (  # (batch, C, H, W, K, kernel, stride, padding); stride 2 with sizes that need output_padding
    (1, 2, 6, 6, 3, 3, 1, 1), (2, 3, 7, 5, 2, 3, 2, 1), (1, 3, 5, 5, 4, 1, 1, 0), (1, 2, 9, 8, 3, 2, 2, 0),
    (1, 2, 6, 8, 3, 3, 2, 1))


def _dense_draws(epsilons: Sequence[float]):
    for i, (B, J, K) in enumerate(_DENSE_SHAPES):
        def draw(g, B=B, J=J, K=K):
            return (_activations((B, J), g), torch.randn(K, J, generator=g, dtype=_F64),
                    0.3 * torch.randn(K, generator=g, dtype=_F64), torch.randn(B, K, generator=g, dtype=_F64))

        def ok(v):
            a, W, b, _ = v
            z = F.linear(a, W, b)
            return _margin(z, 0.0, *epsilons, *(-e for e in epsilons)) and bool((z < 0).any())

        a, W, b, R = _conditioned(draw, ok, seed=i)
        yield a, W, b, R, _dense_layer(W, b), f"a batch of {B} with {J} inputs and {K} outputs", B


def _conv_draws(epsilons: Sequence[float], seed: int = 100, gammas: Sequence[float] = ()):
    """Random convolutions whose denominators (z + ε for every ε given, z_γ for every γ) stay clear of 0."""
    for i, (B, C, H, Wd, K, k, stride, pad) in enumerate(_CONV_SHAPES):
        def draw(g, B=B, C=C, H=H, Wd=Wd, K=K, k=k):
            a = _activations((B, C, H, Wd), g)
            W = torch.randn(K, C, k, k, generator=g, dtype=_F64) / k
            b = 0.3 * torch.randn(K, generator=g, dtype=_F64)
            return a, W, b

        def ok(v, stride=stride, pad=pad):
            a, W, b = v
            z = F.conv2d(a, W, b, stride=stride, padding=pad)
            boosted = [F.conv2d(a, W + g * W.clamp(min=0), b + g * b.clamp(min=0), stride=stride, padding=pad)
                       for g in gammas]
            return (_margin(z, 0.0, *epsilons, *(-e for e in epsilons)) and bool((z < 0).any())
                    and all(_margin(zg, 0.0) for zg in boosted))

        a, W, b = _conditioned(draw, ok, seed=seed + i)
        layer = _conv_layer(W, b, stride, pad)
        g = torch.Generator().manual_seed(seed + 50 + i)
        R = torch.randn(layer.forward(a).shape, generator=g, dtype=_F64)
        describe = (f"a batch of {B} {C}×{H}×{Wd} inputs, {K} filters {k}×{k}, stride {stride}, padding {pad}")
        yield a, W, b, R, layer, describe, B, stride, pad


def random_dense(seed: int = 0, batch: int = 2, inputs: int = 5, outputs: int = 3) -> tuple:
    """A random dense layer to try a function on: ``(a, W, b, R)`` in float64, the activations
    ``a`` non-negative with some zeros (as after a ReLU), ``W`` ``[outputs, inputs]``, ``R`` at the
    output ``[batch, outputs]``."""
    g = torch.Generator().manual_seed(seed)
    return (_activations((batch, inputs), g), torch.randn(outputs, inputs, generator=g, dtype=_F64),
            0.3 * torch.randn(outputs, generator=g, dtype=_F64), torch.randn(batch, outputs, generator=g, dtype=_F64))


# --------------------------------------------------------------------------------------------------
# the ε family: mistakes shared by LRP-0 and LRP-ε on dense and convolutional layers


def _epsilon_rule(epsilon: float):
    return Zero() if epsilon == 0 else Epsilon(epsilon)


def _epsilon_mistakes(epsilon_of: Callable[[_Case], float]) -> list:
    """Mistakes of LRP-0 / LRP-ε, each recomputed with lrpkit's rule on modified inputs."""
    def lrp(case, **change):
        x = case.extra
        return _rule(change.get("rule", _epsilon_rule(epsilon_of(case))), change.get("layer", x["layer"]),
                     x["a"], change.get("R", x["R"]), change.get("heuristic", "vanilla"), change.get("z"))

    def z_of(case):
        return case.extra["layer"].forward(case.extra["a"])

    def bias(case):
        return case.extra["layer"].bias.view(1, -1, *([1] * (z_of(case).dim() - 2)))

    def only_if_epsilon(compute):
        return lambda case: compute(case) if epsilon_of(case) > 0 else None

    def bias_forgotten(case):
        return lrp(case, z=z_of(case) - bias(case) + epsilon_of(case), rule=Zero())

    def missing_a(case):
        x = case.extra
        c = _rule(_epsilon_rule(epsilon_of(case)), x["layer"], torch.ones_like(x["a"]), x["R"],
                  z=z_of(case))  # a = 1 in the numerator: c itself
        return c

    def transposed(case):
        W = case.extra["layer"].weight
        if W.dim() != 2 or W.shape[0] != W.shape[1]:
            return None
        layer = _with(case.extra["layer"], weight=W.t())
        return _rule(_epsilon_rule(epsilon_of(case)), layer, case.extra["a"], case.extra["R"])

    return [
        ("bias forgotten: the denominator must be the layer's full output z = W a + b (plus ε), bias included",
         bias_forgotten),
        ("ε has no effect: you compute LRP-0; LRP-ε adds ε to the denominator, z + ε",
         only_if_epsilon(lambda case: lrp(case, rule=Zero()))),
        ("ε applied to the wrong term: it is subtracted from the denominator (z - ε) instead of added",
         only_if_epsilon(lambda case: lrp(case, rule=Zero(), z=z_of(case) - epsilon_of(case)))),
        ("ε applied as ε·sign(z) (zennit's stabilizer); this exercise's LRP-ε adds ε itself: z + ε",
         only_if_epsilon(lambda case: lrp(case, heuristic="zennit"))),
        ("ε scaled by the root mean square of z (the tutorial's heuristic, lrpkit's default); this exercise "
         "adds the plain ε: z + ε", only_if_epsilon(lambda case: lrp(case, heuristic="tutorial"))),
        ("ε applied to the wrong term: it is added to the relevance R instead of to the denominator z",
         only_if_epsilon(lambda case: lrp(case, rule=Zero(), R=case.extra["R"] + epsilon_of(case)))),
        ("ε applied to the wrong term: it is added to the result instead of to the denominator z",
         only_if_epsilon(lambda case: lrp(case, rule=Zero()) + epsilon_of(case))),
        ("the activations are missing: you return c = Wᵀs; multiply it by the layer's input a (step 4)",
         missing_a),
        ("W used the wrong way round: it is [outputs, inputs] as in torch.nn.Linear, so z = a @ W.T + b and "
         "c = s @ W",
         transposed),
    ]


def _dense_cases(epsilon: float) -> list[_Case]:
    cases = []
    for a, W, b, R, layer, describe, B in _dense_draws([epsilon]):
        expected = _rule(_epsilon_rule(epsilon), layer, a, R)
        args = (a, W, b, R) if epsilon == 0 else (a, W, b, R, epsilon)
        cases.append(_Case(args, {}, expected, describe, B, dict(layer=layer, a=a, R=R, epsilon=epsilon)))
    return cases


def _dense_shape_hint(case: _Case, got: tuple) -> str:
    a, R = case.extra["a"], case.extra["R"]
    if got == tuple(R.shape):
        return "that is the shape of R at the output; return the relevance of the inputs, shaped like a"
    if got == tuple(a.shape[::-1]):
        return "transposed; keep samples in rows"
    return "one relevance value per input neuron and sample, shaped like a"


def check_lrp_0_dense(fn) -> Verdict:
    """Check ``fn(a, W, b, R)``: LRP-0 for a dense layer, against :class:`lrpkit.rules.Zero`."""
    cases = _dense_cases(0.0)
    return _finish(_judge("lrp_0_dense", fn, cases, _epsilon_mistakes(lambda c: 0.0), "lrpkit's rules.Zero",
                          things="dense layers (1-3 samples, 4-7 inputs, 2-6 outputs)",
                          shape_hint=_dense_shape_hint, signature="lrp_0_dense(a, W, b, R)",
                          raise_hint=_LAYOUT))


def check_lrp_epsilon_dense(fn, epsilon: float = 0.25) -> Verdict:
    """Check ``fn(a, W, b, R, epsilon)``: LRP-ε for a dense layer, against :class:`lrpkit.rules.Epsilon`."""
    cases = _dense_cases(epsilon) + [_rename(c, f" (ε = {2 * epsilon:g})") for c in _dense_cases(2 * epsilon)]
    return _finish(_judge("lrp_epsilon_dense", fn, cases, _epsilon_mistakes(lambda c: c.extra["epsilon"]),
                          "lrpkit's rules.Epsilon", things="dense layers (ε = "
                          f"{epsilon:g} and {2 * epsilon:g}; 1-3 samples, 4-7 inputs, 2-6 outputs)",
                          shape_hint=_dense_shape_hint, signature="lrp_epsilon_dense(a, W, b, R, epsilon)",
                          raise_hint=_LAYOUT))


def _rename(case: _Case, suffix: str) -> _Case:
    case.describe += suffix
    return case


# --------------------------------------------------------------------------------------------------
# conservation as a self-check


def check_absorbed(fn, epsilon: float = 0.25) -> Verdict:
    """Check ``fn(a, W, b, R, epsilon)``: the relevance of each sample that LRP-ε does *not* hand
    down to the inputs, ``Σ_k R_k - Σ_j R_j``, computed from the bias and ε shares ``[B]``.

    lrpkit's answer is ``R.sum() - Epsilon(ε).relevance(...).sum()`` per sample.
    """
    cases = []
    for a, W, b, R, layer, describe, B in _dense_draws([epsilon]):
        expected = R.sum(1) - _rule(Epsilon(epsilon), layer, a, R).sum(1)
        cases.append(_Case((a, W, b, R, epsilon), {}, expected, describe, B, dict(layer=layer, a=a, R=R)))

    def share(case, numerator, denominator_shift=epsilon):
        x = case.extra
        z = x["layer"].forward(x["a"])
        return (x["R"] * numerator(x["layer"].bias) / (z + denominator_shift)).sum(1)

    mistakes = [
        ("ε's share is missing: the denominator z + ε also holds ε, which keeps R_k·ε/(z_k + ε) of every output",
         lambda case: share(case, lambda b: b)),
        ("the bias's share is missing (bias forgotten): each output also keeps R_k·b_k/(z_k + ε)",
         lambda case: share(case, lambda b: epsilon + 0 * b)),
        ("you compute what LRP-0 absorbs, R_k·b_k/z_k; LRP-ε absorbs R_k·(b_k + ε)/(z_k + ε)",
         lambda case: share(case, lambda b: b, 0.0)),
        ("you return the relevance that reaches the inputs, Σ_j R_j; the exercise asks for what is absorbed, "
         "Σ_k R_k - Σ_j R_j", lambda case: case.extra["R"].sum(1) - case.expected),
    ]

    def shape_hint(case, got):
        if got == ():
            return "one number per sample: sum over the outputs (dim=1), not over the batch"
        return "one number per sample"

    return _finish(_judge("absorbed", fn, cases, mistakes, "lrpkit (Σ R_out - Σ R_in of rules.Epsilon)",
                          things=f"dense layers (ε = {epsilon:g})", shape_hint=shape_hint,
                          signature="absorbed(a, W, b, R, epsilon)",
                          raise_hint=_LAYOUT))


# --------------------------------------------------------------------------------------------------
# convolutions


def _conv_cases(epsilons: Sequence[float]) -> list[_Case]:
    cases = []
    for epsilon in epsilons:
        for a, W, b, R, layer, describe, B, stride, pad in _conv_draws(epsilons):
            expected = _rule(_epsilon_rule(epsilon), layer, a, R)
            cases.append(_Case((a, W, b, R, epsilon), dict(stride=stride, padding=pad), expected,
                               describe + f", ε = {epsilon:g}", B,
                               dict(layer=layer, a=a, R=R, epsilon=epsilon, stride=stride)))
    return cases


def _conv_shape_hint(case: _Case, got: tuple) -> str:
    want = tuple(case.expected.shape)
    if got == tuple(case.extra["R"].shape):
        return "that is the shape of R at the output; return the relevance of the input a"
    if case.extra["stride"] > 1 and got[:2] == want[:2]:
        return ("with stride 2 several input sizes give the same output size, so conv_transpose2d needs "
                "output_padding = (size of a) - (size it computes)")
    return "the relevance of the input has the shape of a"


def _undetached(case: _Case) -> torch.Tensor:
    """The gradient trick with s = R / z left attached to the graph."""
    x, epsilon = case.extra, case.extra["epsilon"]
    a = x["a"].clone().requires_grad_(True)
    with torch.enable_grad():
        z = x["layer"].forward(a) + epsilon
        s = x["R"] / z
        (z * s).sum().backward()
    return (x["a"] * a.grad).detach()


def _zero_filled(case: _Case) -> Optional[torch.Tensor]:
    """The rule with Wᵀs from conv_transpose2d without output_padding, the missing rows filled with 0."""
    x = case.extra
    layer, a = x["layer"], x["a"]
    s = x["R"] / (layer.forward(a) + x["epsilon"])
    opts = layer.options
    c = F.conv_transpose2d(s, layer.weight, stride=opts["stride"], padding=opts["padding"])
    if c.shape == a.shape:
        return None
    return a * F.pad(c, (0, a.shape[3] - c.shape[3], 0, a.shape[2] - c.shape[2]))


def _conv_mistakes() -> list:
    return [*_epsilon_mistakes(lambda c: c.extra["epsilon"]),
            ("the last rows or columns of the input get no relevance although the convolution reads them: with "
             "stride 2, conv_transpose2d needs output_padding = (size of a) - (size it computes), not a zero fill",
             _zero_filled),
            ("s was not detached: autograd also differentiated s = R/z; take s = (R / z).detach() before "
             "(z * s).sum().backward()", _undetached)]


def check_lrp_epsilon_conv_autograd(fn) -> Verdict:
    """Check ``fn(a, W, b, R, epsilon, stride=1, padding=0)``: LRP-ε (ε = 0: LRP-0) for a
    convolution, computed with the gradient trick, against :class:`lrpkit.rules.Epsilon`."""
    cases = _conv_cases((0.0, 0.25))
    return _finish(_judge("lrp_epsilon_conv_autograd", fn, cases, _conv_mistakes(), "lrpkit's rules.Epsilon",
                          things="convolutions (ε = 0 and 0.25; strides 1-2, paddings 0-1, kernels 1-3)",
                          shape_hint=_conv_shape_hint,
                          signature="lrp_epsilon_conv_autograd(a, W, b, R, epsilon, stride=..., padding=...)",
                          raise_hint=_CONV_LAYOUT))


def check_lrp_epsilon_conv(fn) -> Verdict:
    """Check ``fn(a, W, b, R, epsilon, stride=1, padding=0)``: LRP-ε for a convolution computed
    directly (a transposed convolution, no autograd: it is called under ``torch.no_grad()``)."""
    cases = _conv_cases((0.0, 0.25))
    return _finish(_judge("lrp_epsilon_conv", fn, cases, _conv_mistakes(), "lrpkit's rules.Epsilon",
                          things="convolutions (ε = 0 and 0.25; strides 1-2, paddings 0-1, kernels 1-3), "
                          "without autograd", shape_hint=_conv_shape_hint, no_grad=True,
                          signature="lrp_epsilon_conv(a, W, b, R, epsilon, stride=..., padding=...)",
                          raise_hint=_CONV_LAYOUT))


def check_lrp_gamma_conv(fn, gamma: float = 0.25) -> Verdict:
    """Check ``fn(a, W, b, R, gamma, stride=1, padding=0)``: LRP-γ for a convolution, against
    :class:`lrpkit.rules.Gamma` (``ρ(p) = p + γp⁺`` on weights and bias)."""
    cases = []
    for g in (gamma, 4 * gamma):
        for a, W, b, R, layer, describe, B, stride, pad in _conv_draws([], seed=200, gammas=(g,)):
            cases.append(_Case((a, W, b, R, g), dict(stride=stride, padding=pad), _rule(Gamma(g), layer, a, R),
                               describe + f", γ = {g:g}", B, dict(layer=layer, a=a, R=R, gamma=g, stride=stride)))

    def rho(case, weight, bias, numerator=True, denominator=True, times_a=True):
        x = case.extra
        layer = _with(x["layer"], weight=weight(x["layer"].weight, x["gamma"]), bias=bias(x["layer"].bias, x["gamma"]))
        z = layer.forward(x["a"]) if denominator else x["layer"].forward(x["a"])
        a = x["a"] if times_a else torch.ones_like(x["a"])
        return _rule(Zero(), layer if numerator else x["layer"], a, x["R"], z=z)

    plus = lambda p, g: p + g * p.clamp(min=0)  # noqa: E731
    same = lambda p, g: p  # noqa: E731
    mistakes = [
        ("γ applied to the negative weights: ρ(w) = w + γ·w⁺ boosts the positive ones (clamp(min=0))",
         lambda case: rho(case, lambda p, g: p + g * p.clamp(max=0), lambda p, g: p + g * p.clamp(max=0))),
        ("γ applied to the negative weights and biases: ρ(w) = w + γ·w⁺ boosts the positive ones",
         lambda case: rho(case, lambda p, g: p + g * p.clamp(max=0), plus)),
        ("ρ applied to the weights but not to the bias: the γ-rule uses b + γ·b⁺ too",
         lambda case: rho(case, plus, same)),
        ("bias forgotten: the denominator is ρ(W) a + ρ(b), bias included",
         lambda case: rho(case, plus, lambda p, g: 0 * p)),
        ("γ has no effect: you compute LRP-0; use ρ(w) = w + γ·w⁺ in numerator and denominator",
         lambda case: rho(case, same, same)),
        ("γ used in the denominator only: the numerator needs ρ(W) as well (c = ρ(W)ᵀ s)",
         lambda case: rho(case, plus, plus, numerator=False)),
        ("γ used in the numerator only: the denominator needs ρ(W) a + ρ(b) as well",
         lambda case: rho(case, plus, plus, denominator=False)),
        ("you keep only the positive weights (w⁺, the z⁺ rule, γ → ∞); LRP-γ uses w + γ·w⁺",
         lambda case: rho(case, lambda p, g: p.clamp(min=0), lambda p, g: p.clamp(min=0))),
        ("the activations are missing: you return c = ρ(W)ᵀs; multiply it by the input a",
         lambda case: rho(case, plus, plus, times_a=False)),
    ]
    return _finish(_judge("lrp_gamma_conv", fn, cases, mistakes, "lrpkit's rules.Gamma",
                          things=f"convolutions (γ = {gamma:g} and {4 * gamma:g})", shape_hint=_conv_shape_hint,
                          signature="lrp_gamma_conv(a, W, b, R, gamma, stride=..., padding=...)",
                          raise_hint=_CONV_LAYOUT))


def _box(x, W, b, R, lp, hm, stride, padding, *, bias=False, sign=-1.0, bounds_in_numerator=True):
    """zᴮ written out, with switches for its mistakes: ``lp`` pairs with W⁺, ``hm`` with W⁻."""
    conv = lambda t, w, bb=None: F.conv2d(t, w, bb, stride=stride, padding=padding)  # noqa: E731
    wp, wm = W.clamp(min=0), W.clamp(max=0)
    z = conv(x, W, b if bias else None) + sign * (conv(lp, wp) + conv(hm, wm))
    s = R / z

    def t(w):
        size = [(s.shape[2 + d] - 1) * stride - 2 * padding + w.shape[2 + d] for d in range(2)]
        return F.conv_transpose2d(s, w, stride=stride, padding=padding,
                                  output_padding=(x.shape[2] - size[0], x.shape[3] - size[1]))

    out = x * t(W)
    if bounds_in_numerator:
        out = out + sign * (lp * t(wp) + hm * t(wm))
    return out


def check_zbox_conv(fn) -> Verdict:
    """Check ``fn(x, W, b, R, low, high, stride=1, padding=0)``: the zᴮ rule on the pixel layer
    (``low``, ``high``: per-channel bounds ``[C]``), against :class:`lrpkit.rules.ZBox`."""
    cases = []
    for i, (B, C, H, Wd, K, k, stride, pad) in enumerate(_CONV_SHAPES):
        g = torch.Generator().manual_seed(300 + i)
        low = -1.0 - torch.rand(C, generator=g, dtype=_F64)
        high = 1.0 + torch.rand(C, generator=g, dtype=_F64)
        x = low.view(1, -1, 1, 1) + (high - low).view(1, -1, 1, 1) * torch.rand(B, C, H, Wd, generator=g, dtype=_F64)
        W = torch.randn(K, C, k, k, generator=g, dtype=_F64) / k
        b = 0.3 * torch.randn(K, generator=g, dtype=_F64)
        layer = _conv_layer(W, b, stride, pad)
        R = torch.randn(layer.forward(x).shape, generator=g, dtype=_F64)
        rule = ZBox(low.tolist(), high.tolist())
        expected = _rule(rule, layer, x, R)
        describe = f"a batch of {B} {C}×{H}×{Wd} images, {K} filters {k}×{k}, stride {stride}, padding {pad}"
        lo, hi = (v.view(1, -1, 1, 1).expand_as(x) for v in (low, high))
        cases.append(_Case((x, W, b, R, low, high), dict(stride=stride, padding=pad), expected, describe, B,
                           dict(layer=layer, x=x, W=W, b=b, R=R, lo=lo, hi=hi, stride=stride, pad=pad)))

    def box(case, swap=False, **switches):
        e = case.extra
        lp, hm = (e["hi"], e["lo"]) if swap else (e["lo"], e["hi"])
        return _box(e["x"], e["W"], e["b"], e["R"], lp, hm, e["stride"], e["pad"], **switches)

    mistakes = [
        ("zᴮ bounds swapped: the lowest value l goes with the positive weights (W⁺) and the highest h with "
         "the negative ones (W⁻)", lambda case: box(case, swap=True)),
        ("the bias is in the denominator: in zᴮ it cancels, z = W x - W⁺ l - W⁻ h",
         lambda case: box(case, bias=True)),
        ("the bound terms have the wrong sign: z = W x - W⁺ l - W⁻ h and R = x·c - l·c⁺ - h·c⁻",
         lambda case: box(case, sign=1.0)),
        ("the numerator misses the bound terms: R = x·c - l·c⁺ - h·c⁻, not x·c alone",
         lambda case: box(case, bounds_in_numerator=False)),
        ("you compute LRP-0 on the pixels: zᴮ also subtracts the bound terms W⁺ l and W⁻ h",
         lambda case: _rule(Zero(), case.extra["layer"], case.extra["x"], case.extra["R"])),
        ("you compute LRP-0 without the bias on the pixels: zᴮ also subtracts the bound terms W⁺ l and W⁻ h",
         lambda case: box(case, sign=0.0)),
    ]
    return _finish(_judge("zbox_conv", fn, cases, mistakes, "lrpkit's rules.ZBox",
                          things="pixel layers (1-4 channels, strides 1-2, paddings 0-1)",
                          shape_hint=lambda case, got: "the relevance of the pixels has the shape of x",
                          signature="zbox_conv(x, W, b, R, low, high, stride=..., padding=...)",
                          raise_hint="reshape the per-channel bounds to [1, C, 1, 1] (low.view(1, -1, 1, 1)); " + _CONV_LAYOUT))


# --------------------------------------------------------------------------------------------------
# max-pooling


_POOL_SHAPES = ((1, 2, 6, 6, 2), (2, 3, 7, 5, 2), (1, 2, 9, 9, 3))   # (batch, C, H, W, kernel = stride)


def _pool_cases(epsilon: float = 0.0, zero_window: bool = False) -> list[_Case]:
    """Random pooling inputs; with ``zero_window`` the first window of every map is all zeros (after a
    ReLU that happens, and its average is a 0/0)."""
    cases = []
    for i, (B, C, H, Wd, k) in enumerate(_POOL_SHAPES):
        g = torch.Generator().manual_seed(400 + i)
        a = _activations((B, C, H, Wd), g)
        if zero_window:
            a[:, :, :k, :k] = 0
        layer = canonical.Layer(0, "pool", "maxpool", options=dict(kernel_size=k, stride=k, padding=0, ceil_mode=False))
        R = torch.randn(layer.forward(a).shape, generator=g, dtype=_F64)
        describe = f"a batch of {B} {C}×{H}×{Wd} inputs, {k}×{k} windows"
        cases.append(_Case((a, R), dict(kernel_size=k, stride=k), None, describe, B,
                           dict(layer=layer, a=a, R=R, k=k, epsilon=epsilon)))
    return cases


def _pool(case: _Case, mode: str, epsilon=None) -> torch.Tensor:
    x = case.extra
    with torch.no_grad():
        return pool_relevance(x["layer"], x["a"], x["R"].clone(), mode, epsilon, "vanilla")


def _evenly(case: _Case) -> torch.Tensor:
    x, k = case.extra, case.extra["k"]
    out = F.interpolate(x["R"] / (k * k), scale_factor=k, mode="nearest")
    return F.pad(out, (0, x["a"].shape[3] - out.shape[3], 0, x["a"].shape[2] - out.shape[2]))


def _pool_shape_hint(case: _Case, got: tuple) -> str:
    if got == tuple(case.extra["R"].shape):
        return "that is the pooled shape of R; return the relevance of the pool's input a"
    return "the relevance of the input has the shape of a (rows and columns the windows miss get 0)"


def check_maxpool_winner(fn) -> Verdict:
    """Check ``fn(a, R, kernel_size=2, stride=2)``: a max-pooling layer, winner takes all, against
    :func:`lrpkit.rules.pool_relevance` (``mode="max"``)."""
    cases = _pool_cases()
    for case in cases:
        case.expected = _pool(case, "max")
    mistakes = [
        ("pooling treated as average pooling: the relevance is spread over the window in proportion to the "
         "activations, but winner-takes-all gives all of it to the window's maximum", lambda c: _pool(c, "avg")),
        ("relevance split evenly over each window; winner-takes-all gives all of it to the window's maximum",
         _evenly),
    ]
    return _finish(_judge("maxpool_winner", fn, cases, mistakes, "lrpkit's rules.pool_relevance(mode='max')",
                          things="max-pooling layers (2×2 and 3×3 windows, sizes the window does and does not "
                          "divide)", shape_hint=_pool_shape_hint,
                          signature="maxpool_winner(a, R, kernel_size=..., stride=...)"))


def check_maxpool_average(fn) -> Verdict:
    """Check ``fn(a, R, kernel_size=2, stride=2, epsilon=0.0)``: a max-pooling layer read as
    average pooling in the backward pass (the tutorial), against
    :func:`lrpkit.rules.pool_relevance` (``mode="avg"``)."""
    cases = _pool_cases(0.0, zero_window=True) + [_rename(c, ", ε = 0.25") for c in _pool_cases(0.25)]
    for case in cases:
        epsilon = case.extra["epsilon"]
        case.kwargs["epsilon"] = epsilon
        case.expected = _pool(case, "avg", epsilon or None)
    mistakes = [
        ("pooling treated as max (winner takes all) instead of average: the average pool shares each window's "
         "relevance among all its inputs, in proportion to their activations", lambda c: _pool(c, "max")),
        ("relevance split evenly over each window: LRP on the average pool shares it in proportion to the "
         "activations, R_j = a_j / Σ a · R", _evenly),
        ("ε has no effect: the pooled z of the average pool gets + ε too",
         lambda c: _pool(c, "avg") if c.extra["epsilon"] else None),
        ("relevance k² times too large: the transpose of the average pool divides by the window size, as the "
         "pool does", lambda c: _pool(c, "avg", c.extra["epsilon"] or None) * c.extra["k"] ** 2),
    ]
    return _finish(_judge("maxpool_average", fn, cases, mistakes, "lrpkit's rules.pool_relevance(mode='avg')",
                          things="max-pooling layers read as average pooling (2×2 and 3×3 windows, ε = 0 and "
                          "0.25)", shape_hint=_pool_shape_hint,
                          signature="maxpool_average(a, R, kernel_size=..., stride=..., epsilon=...)"))


# --------------------------------------------------------------------------------------------------
# a composite by layer index: the backward loop


def small_vgg(seed: int = 0, classes: int = 5) -> nn.Sequential:
    """A VGG-shaped ``nn.Sequential`` for 3×16×16 inputs, float64, random weights and biases, in eval
    mode: its canonical layers are 0 conv, 1 ReLU, 2 conv, 3 ReLU, 4 max-pool, 5 conv, 6 ReLU,
    7 max-pool, 8 flatten, 9 linear, 10 ReLU, 11 dropout, 12 linear."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(6 * 4 * 4, 8), nn.ReLU(), nn.Dropout(), nn.Linear(8, classes))
    with torch.no_grad():
        for p in model.parameters():
            scale = (2 / p[0].numel()) ** 0.5 if p.dim() > 1 else 0.1   # He init; small random biases
            p.copy_(scale * torch.randn(p.shape, generator=generator))
    return model.double().eval()


def _pixels(B: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Random images in pixel range [0, 1], normalized as ImageNet images are."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=_F64).view(1, -1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=_F64).view(1, -1, 1, 1)
    return (torch.rand(B, 3, size, size, generator=g, dtype=_F64) - mean) / std


def _composites() -> list[Composite]:
    return [
        Composite({0: ZBox(), (1, 4): Gamma(0.25), (5, 7): Epsilon(0.25), (8, None): Zero()}, "vanilla", "avg",
                  name="tutorial-like"),
        Composite({0: ZBox(), (1, 5): Gamma(0.5), (6, 9): Epsilon(0.1)}, "vanilla", "max", name="winner-takes-all"),
        Composite({(0, 3): Epsilon(0.2), (4, 12): Gamma(0.1)}, "vanilla", "avg", name="ε then γ"),
    ]


def check_lrp_by_index(fn) -> Verdict:
    """Check ``fn(model, x, target, composite)``: the LRP backward pass of a whole network, each
    layer with the rule its composite assigns to its index (``composite.rule(index)``) and
    max-pooling as ``composite.maxpool`` says, against :func:`lrpkit.lrp.relevance` (``"vanilla"``
    composites on small random VGG-shaped networks, :func:`small_vgg`)."""
    cases = []
    for i, composite in enumerate(_composites()):
        model = small_vgg(seed=i)
        B = 1 + i % 2
        x = _pixels(B, 16, torch.Generator().manual_seed(500 + i))
        target = i % 5
        expected = lrp.relevance(model, x, target, composite)
        cases.append(_Case((model, x, target, composite), {}, expected,
                           f"a batch of {B} images, composite {composite!r}", B,
                           dict(model=model, x=x, target=target, composite=composite)))

    def other(case, composite=None, target="same", start=None):
        e = case.extra
        composite = composite or e["composite"]
        tgt = e["target"] if target == "same" else target
        if start == "all":
            logits = e["model"](e["x"])
            return sum(lrp.relevance(e["model"], e["x"], c, composite) for c in range(logits.shape[1]))
        out = lrp.relevance(e["model"], e["x"], tgt, composite)
        if start == "one":
            return out / e["model"](e["x"])[:, e["target"]].view(-1, 1, 1, 1)
        return out

    def remap(case, change):
        c = case.extra["composite"]
        assignments = change(c)
        return None if assignments is None else Composite(assignments, c.heuristic, c.maxpool, c.name)

    def pooling(case, mode):
        c = case.extra["composite"]
        return None if c.maxpool == mode else Composite([((s, e), r) for s, e, r in c.assignments], c.heuristic,
                                                         mode, c.name)

    def pool_without_epsilon(c):
        layers = canonical.layers(small_vgg())
        pools = [l.index for l in layers if l.kind == "maxpool" and c.rule(l.index).epsilon]
        if not pools or c.maxpool != "avg":
            return None
        return [(i, Zero() if i in pools else c.rule(i)) for i in range(len(layers))]

    def shifted(c):   # layer i gets the rule of layer i + 1
        n = len(canonical.layers(small_vgg()))
        return [(i, c.rule(i + 1)) for i in range(n) if not isinstance(c.rule(i + 1), ZBox)]

    def without_zbox(c):
        if not isinstance(c.rule(0), ZBox):
            return None
        return [((s, e), Zero() if isinstance(r, ZBox) else r) for s, e, r in c.assignments]

    def variant(change):
        def compute(case):
            composite = change(case)
            return None if composite is None else other(case, composite)
        return compute

    mistakes = [
        ("max-pooling treated as average pooling where the composite says winner takes all (composite.maxpool "
         "== 'max')", variant(lambda case: pooling(case, "avg"))),
        ("max-pooling treated as max (winner takes all) where the composite says average pooling "
         "(composite.maxpool == 'avg')", variant(lambda case: pooling(case, "max"))),
        ("the average pool inside an ε block ignores ε: it takes the ε of the rule at its own index",
         variant(lambda case: remap(case, pool_without_epsilon))),
        ("layer 0 does not use zᴮ: the rule at index 0 is rules.ZBox, with the bounds rule.low and rule.high",
         variant(lambda case: remap(case, without_zbox))),
        ("the rules are shifted by one layer: layer i gets the rule of index i + 1; ask composite.rule(layer.index)",
         variant(lambda case: remap(case, shifted))),
        ("relevance starts from every logit: start from the target's logit alone (zero for the other classes)",
         lambda case: other(case, start="all")),
        ("relevance starts from 1 instead of the target's logit", lambda case: other(case, start="one")),
        ("you explain the predicted class, not the target given",
         lambda case: None if bool((case.extra["model"](case.extra["x"]).argmax(1) == case.extra["target"]).all())
         else other(case, target=None)),
    ]
    return _finish(_judge("lrp_by_index", fn, cases, mistakes, "lrpkit's lrp.relevance",
                          things="networks (lrpkit.teaching.small_vgg, three composites of 'vanilla' rules)",
                          signature="lrp_by_index(model, x, target, composite)"))


# --------------------------------------------------------------------------------------------------
# Pixel-Flipping


def check_pixel_flipping(fn) -> Verdict:
    """Check ``fn(model, x, R, target, patch_size, counts, fill)``: the Pixel-Flipping curve of one
    image ``x`` ``[1, C, H, W]`` and its heatmap ``R`` (same shape): the target's logit before any
    change and after the ``counts[k]`` most relevant patches (sum of ``R`` over the patch) are set
    to ``fill`` (``[C]``, normalized units), ``[len(counts) + 1]``; against
    :func:`lrpkit.pf.pixel_flipping` (``order="morf"``, ``mode="gray"``)."""
    cases = []
    setups = ((16, 4, [1, 4, 9, 16]), (16, 4, [2, 5, 16]), (16, 8, [1, 2, 3, 4]))
    for i, (size, patch, counts) in enumerate(setups):
        model = small_vgg(seed=10 + i)
        g = torch.Generator().manual_seed(600 + i)
        x = _pixels(1, size, g)
        R = torch.randn(x.shape, generator=g, dtype=_F64)
        target = i % 5
        gray = 0.5
        fill = (gray - torch.tensor(IMAGENET_MEAN, dtype=_F64)) / torch.tensor(IMAGENET_STD, dtype=_F64)
        extra = dict(model=model, x=x, R=R, target=target, patch=patch, counts=counts)
        case = _Case((model, x, R, target, patch, counts, fill), {}, None,
                     f"a {size}×{size} image with {patch}×{patch} patches and counts {counts}", 1, extra)
        case.expected = _curve(case)
        cases.append(case)

    def non_cumulative(case):   # step k flips only the patches new in step k
        e = case.extra
        order = pf.flip_order(pf.patch_scores(e["R"], e["patch"]), "morf")[0]
        height, width = e["x"].shape[2:]
        grid = (-(-height // e["patch"]), -(-width // e["patch"]))
        fill = case.args[-1].view(1, -1, 1, 1)
        images, previous = [e["x"]], 0
        for count in e["counts"]:
            new = torch.zeros(grid[0] * grid[1], dtype=torch.bool)
            new[order[previous:count]] = True
            pixels = new.view(*grid).repeat_interleave(e["patch"], 0).repeat_interleave(e["patch"], 1)
            images.append(torch.where(pixels[:height, :width], fill, e["x"]))
            previous = count
        with torch.no_grad():
            return e["model"](torch.cat(images))[:, e["target"]]

    mistakes = [
        ("you flip the least relevant patches first (LRF); Pixel-Flipping for grading starts with the most "
         "relevant (MoRF: sort descending)", lambda case: _curve(case, order="lrf")),
        ("you rank the patches by |R|; MoRF ranks them by their signed relevance (negative evidence last)",
         lambda case: _curve(case, relevance=case.extra["R"].abs())),
        ("you record softmax probabilities; the curve is of the target's logit (the model's raw output)",
         lambda case: _curve(case, score="softmax")),
        ("you fill with 0 (the ImageNet mean after normalization) instead of the gray value `fill`",
         lambda case: _curve(case, gray_value=IMAGENET_MEAN)),
        ("earlier patches are restored at every step: step k must show all of the first counts[k] patches "
         "flipped, not only the new ones", non_cumulative),
    ]

    def shape_hint(case, got):
        if got == (len(case.extra["counts"]),):
            return "the curve starts with the unperturbed image's score (step 0), then one score per count"
        return "one score for the unperturbed image and one per count, as a 1-D tensor"

    return _finish(_judge("pixel_flipping", fn, cases, mistakes, "lrpkit's pf.pixel_flipping (MoRF, gray)",
                          things="images (small_vgg networks, 4×4 and 8×8 patches, several schedules)",
                          shape_hint=shape_hint,
                          signature="pixel_flipping(model, x, R, target, patch_size, counts, fill)"))


def _curve(case: _Case, order: str = "morf", relevance=None, score: str = "logit", gray_value=0.5) -> torch.Tensor:
    e = case.extra
    result = pf.pixel_flipping(e["model"], e["x"], e["R"] if relevance is None else relevance, e["target"],
                               e["patch"], order=order, mode="gray", schedule=e["counts"], score=score,
                               gray_value=gray_value, workers=0, progress=False)
    return result.scores[0, :-1]   # without the gray step pixel_flipping appends


# --------------------------------------------------------------------------------------------------
# the exercises


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


# --------------------------------------------------------------------------------------------------
# student versions of the notebooks


def student_notebook(source, target, *, force: bool = False) -> Path:
    """Write the student's version of a chapter notebook: the cells tagged ``solution`` removed,
    outputs cleared. ``target`` is a file or an existing folder (the file keeps its name).

    The notebook is read and checked before anything is written; the file is written under a
    temporary name in the target's folder and renamed when complete, and an existing file is
    replaced only with ``force=True``.

    Raises
    ------
    FileNotFoundError, ValueError, FileExistsError
        No such notebook or folder; not a notebook of the chapter (no solution cells) or the target
        is the source; the target exists and ``force`` is False.
    """
    nb, target = _student_version(source, target, force)
    import nbformat

    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            nbformat.write(nb, out)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def _student_version(source, target, force: bool):
    """The student version of ``source`` and where it goes, after every check (nothing written)."""
    import nbformat

    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"notebook {str(source)!r} not found")
    if target.is_dir():
        target = target / source.name
    if not target.parent.is_dir():
        raise FileNotFoundError(f"folder {str(target.parent)!r} does not exist; create it first")
    if target.resolve() == source.resolve():
        raise ValueError(f"the student version would overwrite its source {str(source)!r}; choose another folder")
    nb = nbformat.read(source, as_version=4)
    kept = [c for c in nb.cells if "solution" not in c.get("metadata", {}).get("tags", [])]
    if len(kept) == len(nb.cells):
        raise ValueError(f"{str(source)!r} has no cell tagged 'solution'; student versions are made from the "
                         "notebooks of the chapter 'Implement LRP yourself' (notebooks/implement-lrp-*.ipynb)")
    if target.exists() and not force:
        raise FileExistsError(f"{str(target)!r} exists; pass --force to replace it")
    nb.cells = kept
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb, target


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m lrpkit.teaching student NOTEBOOK... --out FOLDER [--force]``."""
    parser = argparse.ArgumentParser(prog="python -m lrpkit.teaching",
                                     description="Tools for teaching with the chapter 'Implement LRP yourself'.")
    sub = parser.add_subparsers(dest="command", required=True)
    student = sub.add_parser("student", help="write student versions of the notebooks (solutions removed)")
    student.add_argument("notebooks", nargs="+", help="notebooks/implement-lrp-*.ipynb")
    student.add_argument("--out", required=True, help="an existing folder for the student versions")
    student.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    if not Path(args.out).is_dir():
        print(f"error: --out {args.out!r} is not a folder; create it first", file=sys.stderr)
        return 2
    try:
        for name in args.notebooks:          # check every notebook before writing any
            _student_version(name, args.out, args.force)
        for name in args.notebooks:
            print(student_notebook(name, args.out, force=args.force))
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
