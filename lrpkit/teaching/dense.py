"""Part 1 of the chapter, dense layers: LRP-0, LRP-ε, and what LRP-ε absorbs.

The mistakes of the ε family (:func:`epsilon_mistakes`) are shared with the convolutions of part 2.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..rules import Epsilon, Zero
from .cases import dense_draws, replaced, rule_relevance
from .judge import LAYOUT, Case, judge, renamed
from .verdict import Verdict, finish

__all__ = ["check_lrp_0_dense", "check_lrp_epsilon_dense", "check_absorbed", "epsilon_rule", "epsilon_mistakes"]


def epsilon_rule(epsilon: float):
    return Zero() if epsilon == 0 else Epsilon(epsilon)


def epsilon_mistakes(epsilon_of: Callable[[Case], float]) -> list:
    """Mistakes of LRP-0 / LRP-ε, each recomputed with lrpkit's rule on modified inputs."""
    def lrp(case, **change):
        x = case.extra
        return rule_relevance(change.get("rule", epsilon_rule(epsilon_of(case))), change.get("layer", x["layer"]),
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
        c = rule_relevance(epsilon_rule(epsilon_of(case)), x["layer"], torch.ones_like(x["a"]), x["R"],
                  z=z_of(case))  # a = 1 in the numerator: c itself
        return c

    def transposed(case):
        W = case.extra["layer"].weight
        if W.dim() != 2 or W.shape[0] != W.shape[1]:
            return None
        layer = replaced(case.extra["layer"], weight=W.t())
        return rule_relevance(epsilon_rule(epsilon_of(case)), layer, case.extra["a"], case.extra["R"])

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


def _dense_cases(epsilon: float) -> list[Case]:
    cases = []
    for a, W, b, R, layer, describe, B in dense_draws([epsilon]):
        expected = rule_relevance(epsilon_rule(epsilon), layer, a, R)
        args = (a, W, b, R) if epsilon == 0 else (a, W, b, R, epsilon)
        cases.append(Case(args, {}, expected, describe, B, dict(layer=layer, a=a, R=R, epsilon=epsilon)))
    return cases


def _dense_shape_hint(case: Case, got: tuple) -> str:
    a, R = case.extra["a"], case.extra["R"]
    if got == tuple(R.shape):
        return "that is the shape of R at the output; return the relevance of the inputs, shaped like a"
    if got == tuple(a.shape[::-1]):
        return "transposed; keep samples in rows"
    return "one relevance value per input neuron and sample, shaped like a"


def check_lrp_0_dense(fn) -> Verdict:
    """Check ``fn(a, W, b, R)``: LRP-0 for a dense layer, against :class:`lrpkit.rules.Zero`."""
    cases = _dense_cases(0.0)
    return finish(judge("lrp_0_dense", fn, cases, epsilon_mistakes(lambda c: 0.0), "lrpkit's rules.Zero",
                          things="dense layers (1-3 samples, 4-7 inputs, 2-6 outputs)",
                          shape_hint=_dense_shape_hint, signature="lrp_0_dense(a, W, b, R)",
                          raise_hint=LAYOUT))


def check_lrp_epsilon_dense(fn, epsilon: float = 0.25) -> Verdict:
    """Check ``fn(a, W, b, R, epsilon)``: LRP-ε for a dense layer, against :class:`lrpkit.rules.Epsilon`."""
    cases = _dense_cases(epsilon) + [renamed(c, f" (ε = {2 * epsilon:g})") for c in _dense_cases(2 * epsilon)]
    return finish(judge("lrp_epsilon_dense", fn, cases, epsilon_mistakes(lambda c: c.extra["epsilon"]),
                          "lrpkit's rules.Epsilon", things="dense layers (ε = "
                          f"{epsilon:g} and {2 * epsilon:g}; 1-3 samples, 4-7 inputs, 2-6 outputs)",
                          shape_hint=_dense_shape_hint, signature="lrp_epsilon_dense(a, W, b, R, epsilon)",
                          raise_hint=LAYOUT))


# --------------------------------------------------------------------------------------------------
# conservation as a self-check


def check_absorbed(fn, epsilon: float = 0.25) -> Verdict:
    """Check ``fn(a, W, b, R, epsilon)``: the relevance of each sample that LRP-ε does *not* hand
    down to the inputs, ``Σ_k R_k - Σ_j R_j``, computed from the bias and ε shares ``[B]``.

    lrpkit's answer is ``R.sum() - Epsilon(ε).relevance(...).sum()`` per sample.
    """
    cases = []
    for a, W, b, R, layer, describe, B in dense_draws([epsilon]):
        expected = R.sum(1) - rule_relevance(Epsilon(epsilon), layer, a, R).sum(1)
        cases.append(Case((a, W, b, R, epsilon), {}, expected, describe, B, dict(layer=layer, a=a, R=R)))

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

    return finish(judge("absorbed", fn, cases, mistakes, "lrpkit (Σ R_out - Σ R_in of rules.Epsilon)",
                          things=f"dense layers (ε = {epsilon:g})", shape_hint=shape_hint,
                          signature="absorbed(a, W, b, R, epsilon)",
                          raise_hint=LAYOUT))
