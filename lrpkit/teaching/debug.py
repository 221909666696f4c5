"""Part 4 of the chapter: debug a broken heatmap with lrpkit's diagnostics.

The student's ``debug_heatmap(model, x, target, composite)`` confirms that a heatmap is broken
(:func:`lrpkit.diagnostics.instability`), names the layer and the channel of the neuron whose
near-zero denominator sends down the extra relevance (:func:`lrpkit.diagnostics.culprits`) and
explains again with the same rules under a stabilizing denominator heuristic
(:mod:`lrpkit.heuristics`). The check recomputes all three with lrpkit on the same inputs, so it
holds for any weights: its own small networks, one of them broken on purpose (a bias set so that
one neuron's ``z`` lies in ``(-1e-6, 0)``, where the thesis code's unsigned ``z + 1e-6`` flips its
sign), and any network, image and composite the notebook passes (VGG-16 on the castle, the network
trained on the ground-truth task).
"""
from __future__ import annotations

import numbers
from typing import Optional

import torch

from .. import canonical, diagnostics, lrp
from ..composites import Composite
from ..rules import Epsilon, Gamma, ZBox, Zero
from .judge import close
from .network import pixels, small_vgg
from .verdict import Verdict, finish

__all__ = ["ANSWERS", "check_debug_heatmap", "broken_small_vgg", "stabilized"]

#: The keys of the dict that ``debug_heatmap`` returns.
ANSWERS = ("unstable", "layer", "channel", "fixed")

_SIGNATURE = "debug_heatmap(model, x, target, composite)"
_EPSILON = 0.25
_BROKEN_LAYER = 5          # small_vgg's third convolution, an LRP-ε layer of _shift_composite


def _shift_composite() -> Composite:
    """Fig. 2.3's rules on :func:`small_vgg`'s layer indices, under the thesis code's unsigned shift."""
    return Composite({0: ZBox(), (1, 4): Gamma(0.0), (5, 7): Epsilon(_EPSILON), (8, None): Zero()}, "vanilla",
                     "max", name="the code's shift on small_vgg", forward="shift")


def broken_small_vgg(seed: int = 0, channel: int = 2):
    """A :func:`small_vgg`, an image, a target and a composite under the code's shift, with one
    neuron of layer 5 broken on purpose: its channel's bias is set so that its rule's denominator
    ``z = ε + W a + b`` is ``-5e-7`` at one position.

    Returns
    -------
    (model, x, target, composite)
    """
    model, composite = small_vgg(seed=seed), _shift_composite()
    x = pixels(1, 16, torch.Generator().manual_seed(700 + seed))
    forward = lrp.forward_pass(model, x, composite)
    layer = canonical.layers(model)[_BROKEN_LAYER]
    out = layer.forward(forward.activations[_BROKEN_LAYER])
    with torch.no_grad():
        model[_BROKEN_LAYER].bias[channel] -= out[0, channel, 1, 2] + _EPSILON + 5e-7
    with torch.no_grad():
        target = int(model(x).argmin())        # not the predicted class
    return model, x, target, composite


def stabilized(composite: Composite) -> dict:
    """The composite's rules and max-pooling under each stabilizing denominator: lrpkit's
    ``"zennit"`` and ``"tutorial"`` heuristics, and the thesis code's ``"zennit"`` stabilizer."""
    rules = [((start, stop), rule) for start, stop, rule in composite.assignments]
    return {
        "heuristic='zennit'": Composite(rules, "zennit", composite.maxpool, composite.name),
        "heuristic='tutorial'": Composite(rules, "tutorial", composite.maxpool, composite.name),
        "the thesis code's zennit stabilizer": Composite(rules, "vanilla", composite.maxpool, composite.name,
                                                         forward="zennit", avgpool=composite.avgpool),
    }


class _Truth:
    """What lrpkit's diagnostics find for one input, computed when first asked."""

    def __init__(self, model, x, target, composite, describe):
        self.args, self.describe = (model, x, target, composite), describe
        self.explanation = lrp.explain(model, x, target, composite)
        self.report = diagnostics.instability(self.explanation)
        self.unstable = bool(self.report.unstable[0])
        self.culprit = diagnostics.culprits(model, x, composite, target, count=1)[0]
        self.fixes = {}
        for name, fix in stabilized(composite).items():
            explanation = lrp.explain(model, x, target, fix)
            self.fixes[name] = (explanation.relevance, bool(diagnostics.instability(explanation).unstable[0]))

    def vanilla(self):
        model, x, target, composite = self.args
        rules = [((start, stop), rule) for start, stop, rule in composite.assignments]
        return lrp.relevance(model, x, target, Composite(rules, "vanilla", composite.maxpool))

    def predicted_culprit(self):
        model, x, _, composite = self.args
        return diagnostics.culprits(model, x, composite, None, count=1)[0]


def check_debug_heatmap(fn, *, model: Optional[torch.nn.Module] = None, x: Optional[torch.Tensor] = None,
                        target: Optional[int] = None, composite: Optional[Composite] = None) -> Verdict:
    """Check ``fn(model, x, target, composite)`` -> ``{"unstable": bool, "layer": int, "channel":
    int, "fixed": relevance [1, C, H, W]}`` against lrpkit's own diagnostics on the same inputs.

    Parameters
    ----------
    fn : callable
        The student's ``debug_heatmap``.
    model, x, target, composite : optional
        One more input to check on, besides the check's own small networks (give all four): a
        model, one image ``[1, C, H, W]``, the class to explain (int) and a composite with one
        value per hyperparameter.
    """
    name = "debug_heatmap"
    given = [v is not None for v in (model, x, target, composite)]
    if any(given) and not all(given):
        raise ValueError("give model, x, target and composite together, or none of them")
    if not callable(fn):
        return finish(Verdict(name, False, f"expected a function, got {type(fn).__name__}; pass the function "
                                           f"itself, without calling it: check_{name}({name})"))
    inputs = [(*broken_small_vgg(seed=0), "a small_vgg with one neuron broken on purpose"),
              (*_stable_small_vgg(), "a small_vgg whose heatmap is stable")]
    if all(given):
        inputs.append((model, x, int(target), composite, f"the given {type(model).__name__} and image"))
    for *args, describe in inputs:
        answers, problem = _answers(fn, args, describe)
        if problem is None:
            problem = _compare(answers, _Truth(*args, describe))
        if problem is not None:
            return finish(Verdict(name, False, problem))
    return finish(Verdict(name, True, f"correct: agrees with lrpkit's diagnostics on {len(inputs)} inputs "
                                      f"({'; '.join(d for *_, d in inputs)}): the detector's verdict, the layer and "
                                      "channel of the neuron of largest gain, and a stabilized heatmap"))


def _stable_small_vgg():
    model, composite = small_vgg(seed=1), _shift_composite()
    x = pixels(1, 16, torch.Generator().manual_seed(701))
    return model, x, 1, composite


def _answers(fn, args, describe):
    """The student's answers for one input, or a one-sentence problem."""
    name = "debug_heatmap"
    try:
        out = fn(*args)
    except NotImplementedError:
        return None, (f"{name} is not written yet: replace its `raise NotImplementedError` with your code (the "
                      "solution is folded under the exercise)")
    except Exception as exc:  # noqa: BLE001 -- any error of the student's code is reported
        text = str(exc).splitlines()[0] if str(exc) else ""
        return None, f"{name} raised {type(exc).__name__} ({text}) for {describe}; its signature is {_SIGNATURE}"
    if out is None:
        return None, f"{name} returns None: did you forget the `return`?"
    if not isinstance(out, dict):
        return None, f"{name} returns a {type(out).__name__}; return a dict with the keys {', '.join(ANSWERS)}"
    missing = [key for key in ANSWERS if key not in out]
    if missing:
        return None, f"the dict {name} returns has no key {missing[0]!r}; it needs {', '.join(ANSWERS)}"
    return out, None


def _compare(answers: dict, truth: _Truth) -> Optional[str]:
    """The first answer that differs from lrpkit's, as a one-sentence problem (None: all agree)."""
    where = f"for {truth.describe}"
    unstable = answers["unstable"]
    if not isinstance(unstable, (bool, torch.Tensor)) or (isinstance(unstable, torch.Tensor)
                                                          and unstable.numel() != 1):
        return (f"'unstable' is a {type(unstable).__name__}; give the detector's verdict as True or False: "
                "diagnostics.instability(explanation).unstable[0]")
    if bool(unstable) != truth.unstable:
        return (f"'unstable' is {bool(unstable)} {where} but the detector says {truth.unstable}: explain with "
                "lrp.explain (not lrp.relevance: the detector's conservation check needs its layer sums) and read "
                "diagnostics.instability(explanation).unstable[0]")
    problem = _integer(answers, "layer") or _integer(answers, "channel")
    if problem:
        return problem
    top, layer, channel = truth.culprit, int(answers["layer"]), int(answers["channel"])
    if (layer, channel) != (top.layer, top.unit[0]):
        other = truth.predicted_culprit()
        if (layer, channel) == (other.layer, other.unit[0]):
            return (f"you searched for the predicted class, not the target given {where}: pass target to "
                    "diagnostics.culprits(model, x, composite, target)")
    if layer != top.layer:
        if layer == truth.report.first_layer[0]:
            return (f"layer {layer} is where Σ R first leaves the conservation band (report.first_layer) {where}, "
                    "not the layer of the neuron of largest gain; ask diagnostics.culprits(model, x, composite, "
                    "target) and read the .layer of its first entry")
        return (f"layer {layer} is not the layer of the neuron of largest gain {where}; ask diagnostics.culprits("
                "model, x, composite, target) and read the .layer of its first entry")
    if channel != top.unit[0]:
        position = {top.unit[i]: word for i, word in ((2, "column"), (1, "row")) if len(top.unit) > i}
        if channel in position:
            return (f"{channel} is the neuron's {position[channel]} {where}; its unit is (channel, row, column), "
                    "so the channel is .unit[0]")
        return (f"channel {channel} is not the channel of the neuron of largest gain {where}; read .unit[0] of "
                "the first entry of diagnostics.culprits(model, x, composite, target)")
    return _compare_fixed(answers["fixed"], truth, where)


def _integer(answers, key) -> Optional[str]:
    value = answers[key]
    if isinstance(value, tuple):
        return (f"'{key}' is a tuple {value}; give one int (a neuron's unit is (channel, row, column): its "
                "channel is .unit[0])")
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"'{key}' is a {type(value).__name__} ({value!r}); give an int"
    return None


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Agreement to :data:`~lrpkit.teaching.judge.RTOL` on the scale of either (a broken heatmap's
    scale would hide any difference)."""
    return close(a, b) and close(b, a)


def _compare_fixed(fixed, truth: _Truth, where: str) -> Optional[str]:
    broken = truth.explanation.relevance
    if not isinstance(fixed, torch.Tensor):
        if isinstance(fixed, lrp.Explanation):
            return "'fixed' is an Explanation; give its relevance, explanation.relevance (or use lrp.relevance)"
        return f"'fixed' is a {type(fixed).__name__}; give the fixed heatmap's relevance, a tensor shaped like x"
    fixed = fixed.detach()
    if tuple(fixed.shape) != tuple(broken.shape):
        return f"'fixed' has shape {list(fixed.shape)} {where}; the relevance of x has shape {list(broken.shape)}"
    matched = [name for name, (relevance, _) in truth.fixes.items() if _same(fixed, relevance)]
    if not matched:
        if _same(fixed, broken):
            return ("'fixed' is the heatmap you were given: explain again with the same rules under a stabilizing "
                    "heuristic, e.g. Composite(rules, heuristic='zennit', maxpool=composite.maxpool)")
        if _same(fixed, truth.vanilla()):
            return ("'fixed' uses heuristic='vanilla', which divides by the exact z: nothing keeps a denominator "
                    "near 0 away from 0; choose 'zennit' (ε·sign(z)) or 'tutorial'")
        return (f"'fixed' is none of lrpkit's stabilized heatmaps of the same rules {where}: keep the composite's "
                "rules (composite.assignments) and max-pooling, and change only the denominator heuristic, "
                "heuristic='zennit' or 'tutorial'")
    stable = [name for name, (_, unstable) in truth.fixes.items() if not unstable]
    if stable and all(truth.fixes[name][1] for name in matched):
        return (f"'fixed' ({matched[0]}) is still flagged by the detector {where}; {stable[0]} gives a stable "
                "heatmap")
    return None
