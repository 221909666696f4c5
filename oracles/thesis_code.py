"""The thesis code's LRP (PyPI ``lrp-pf-auc`` 0.1.6, import name ``lrp``) as the oracle of lrpkit's
thesis-code composites. Used only by the tests, the benchmarks and the measurement scripts.

The rule maps are those of the code's ``experiments/script/batch_lrp_pf.py`` (LRP-Tutorial) and of
its Decreasing-γ runs (thesis Fig. 4.1, the code's grid experiment): a ``LayerFilter`` over torchvision's leaves with
the target types ``(Linear, AvgPool)``, so leaf 31 is the ``AdaptiveAvgPool2d``. ``shift=True``
replaces the code's ``stabilize`` by its form before 2022-03-21, ``dividend + 1e-6``.
"""
import contextlib

import torch

import lrp.core as lrp_core  # the thesis code
import lrp.rules
import lrp.zennit.core
from lrp.filter import LayerFilter
from lrp.rules import LrpEpsilonRule, LrpGammaRule, LrpZBoxRule, LrpZeroRule
from lrp.zennit.types import AvgPool, Linear

from lrpkit.imagenet import MEAN as IMAGENET_MEAN, STD as IMAGENET_STD  # constants only

COMPOSITES = ("tutorial", "decreasing_gamma", "zbox_gamma", "zbox_epsilon", "uniform_gamma", "uniform_epsilon")


def bounds(x):
    """z^B's bounds: normalize(0) and normalize(1) of one [1, 3, H, W] image, in x's dtype."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    zeros = torch.zeros((1, *x.shape[1:]), dtype=x.dtype)
    return (zeros - mean) / std, (zeros + 1 - mean) / std


def rule_map(model, x, composite, first, second=None):
    """The code's rule-layer map: LRP-Tutorial (γ on 1-16, ε on 17-30, LRP-0 from 31),
    Decreasing-γ (γ₁ on 1-17, γ₂ on 18-24, γ = 0 on 25-31, the classifier without a rule), or the
    grid notebook's sweeps (Fig. 3.3): γ or ε = ``first`` on leaves 1 and up, with z^B or no rule on
    leaf 0."""
    select = LayerFilter(model, (Linear, AvgPool))
    low, high = bounds(x)
    zbox = (select(lambda n: n == 0), LrpZBoxRule, {"low": low, "high": high})
    if composite in ("zbox_gamma", "uniform_gamma"):
        rest = (select(lambda n: n >= 1), LrpGammaRule, {"gamma": first})
    elif composite in ("zbox_epsilon", "uniform_epsilon"):
        rest = (select(lambda n: n >= 1), LrpEpsilonRule, {"epsilon": first})
    if composite.startswith("zbox"):
        return [zbox, rest]
    if composite.startswith("uniform"):
        return [rest]
    if composite == "tutorial":
        return [zbox,
                (select(lambda n: 1 <= n <= 16), LrpGammaRule, {"gamma": first}),
                (select(lambda n: 17 <= n <= 30), LrpEpsilonRule, {"epsilon": second}),
                (select(lambda n: 31 <= n), LrpZeroRule, {})]
    return [zbox,
            (select(lambda n: 1 <= n <= 17), LrpGammaRule, {"gamma": first}),
            (select(lambda n: 18 <= n <= 24), LrpGammaRule, {"gamma": second}),
            (select(lambda n: 25 <= n <= 31), LrpGammaRule, {"gamma": 0.0})]


@contextlib.contextmanager
def shifted_stabilizer():
    """The code's ``stabilize`` as it was before 2022-03-21: ``dividend + 1e-6`` (unsigned)."""
    original = lrp.zennit.core.stabilize
    lrp.zennit.core.stabilize = lambda dividend, epsilon=1e-6: dividend + epsilon
    try:
        yield
    finally:
        lrp.zennit.core.stabilize = original


def thesis_code_relevance(model, x, composite, first, second=None, target=None, shift=False):
    """Relevance ``[1, 3, H, W]`` of one image from the thesis code (one image per call: its z^B
    bounds' gradients are summed over the batch), with the target's logit of its wrapped model."""
    assert x.shape[0] == 1, "one image per call"
    explainer = lrp_core.LRP(model)
    explainer.convert_layers(rule_map(model, x, composite, first, second))
    label = None if target is None else torch.tensor([target])
    with shifted_stabilizer() if shift else contextlib.nullcontext():
        relevance = explainer.relevance(x.clone(), label)
        with torch.no_grad():
            logits = explainer.model(x)
    return relevance.detach(), logits
