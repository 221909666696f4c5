"""The judge of every check: run a student's function on cases, compare with lrpkit, and name the
mistake when they differ.

A check hands :func:`judge` its random cases (:class:`Case`: the arguments and lrpkit's answer) and
the common mistakes of its exercise (:data:`Mistake`: a diagnosis and what a function making it
returns). The verdict says "correct" with the largest difference, or the first of: the function
is not written, cannot be called, raises, returns the wrong type, shape or dtype, matches a
mistake, is right for one sample but not for a batch, or hands down the wrong amount of relevance
or shares it out differently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from .verdict import Verdict

__all__ = ["RTOL", "F64", "Case", "Mistake", "judge", "close", "renamed", "LAYOUT", "CONV_LAYOUT"]

#: Agreement asked of a solution: relative to each value, and to the largest value of the case.
#: Loose enough for the tutorial's habit of adding 1e-9 to every denominator.
RTOL = 1e-5

F64 = torch.float64


@dataclass
class Case:
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
Mistake = tuple[str, Callable[[Case], Optional[torch.Tensor]]]


def close(out: torch.Tensor, ref: torch.Tensor) -> bool:
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return bool(torch.allclose(out.to(F64), ref.to(F64), rtol=RTOL, atol=RTOL * max(scale, 1e-12)))


def judge(name: str, fn, cases: Sequence[Case], mistakes: Sequence[Mistake], reference: str, *,
           things: str, shape_hint: Callable[[Case, tuple], str] = None, no_grad: bool = False,
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
            if _blank_left(exc):
                return Verdict(name, False, _BLANK.format(name=name))
            if "argument" in str(exc):
                return Verdict(name, False, f"{name} cannot be called as {signature}: {exc}; keep the stub's "
                                            "signature")
            return Verdict(name, False, _raised(name, exc, case, raise_hint))
        except RuntimeError as exc:
            if _blank_left(exc):
                return Verdict(name, False, _BLANK.format(name=name))
            if no_grad and ("grad" in str(exc)):
                return Verdict(name, False, f"{name} failed without autograd ({exc}); compute the transposed "
                                            "product directly (F.conv_transpose2d), not with .backward()")
            if "does not require grad" in str(exc):
                return Verdict(name, False, f"{name}: autograd has nothing to differentiate ({exc}); make the "
                                            "input a leaf that needs a gradient, "
                                            "a = a.detach().requires_grad_(True), before the forward pass")
            return Verdict(name, False, _raised(name, exc, case, raise_hint))
        except Exception as exc:  # noqa: BLE001 -- any error of the student's code is reported
            if _blank_left(exc):
                return Verdict(name, False, _BLANK.format(name=name))
            return Verdict(name, False, _raised(name, exc, case, raise_hint))
        if out is None:
            return Verdict(name, False, f"{name} returns None: did you forget the `return`?")
        if out is Ellipsis:
            return Verdict(name, False, _BLANK.format(name=name))
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

    if all(close(out, case.expected) for case, out in zip(cases, outputs)):
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

    single = [close(out, case.expected) for case, out in zip(cases, outputs) if case.batch == 1]
    batched = [close(out, case.expected) for case, out in zip(cases, outputs) if case.batch > 1]
    if single and batched and all(single) and not all(batched):
        return Verdict(name, False, "right for one sample but wrong for a batch: every sample (row of the "
                                    "first dimension) must be computed on its own, never summed or mixed "
                                    "with the others")

    case, out = next((c, o) for c, o in zip(cases, outputs) if not close(o, c.expected))
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


_BLANK = "a blank of {name}'s skeleton is still `...`: fill in every blank marked `...` with your code"


def _blank_left(exc: Exception) -> bool:
    """Whether ``exc`` comes from a blank ``...`` (Python's Ellipsis) left in a skeleton."""
    return "ellipsis" in str(exc)


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
        if wrong.shape != out.shape or not close(out, wrong):
            return False
        applicable += 1
    return applicable > 0


def _totals(t: torch.Tensor, dims) -> torch.Tensor:
    return t.to(F64).sum(dim=dims) if dims else t.to(F64).reshape(-1)


def _numbers(t: torch.Tensor) -> str:
    values = [f"{v:.4g}" for v in t.reshape(-1).tolist()[:3]]
    return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _raised(name: str, exc: Exception, case: Case, hint: str = "") -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    if not any(word in text for word in ("shape", "size", "dimension", "mat1", "broadcast")):
        hint = ""
    return f"{name} raised {type(exc).__name__} ({text}) for {case.describe}" + (f"; {hint}" if hint else "")


LAYOUT = "check the layout: W is [outputs, inputs] as in torch.nn.Linear, so z = a @ W.T + b and c = s @ W"
CONV_LAYOUT = ("pass stride= and padding= to every convolution, and with stride 2 give conv_transpose2d the "
                "output_padding (or padding) that recovers the size of a")


def renamed(case: Case, suffix: str) -> Case:
    """``case`` with ``suffix`` added to its description."""
    case.describe += suffix
    return case
