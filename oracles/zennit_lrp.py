"""zennit 0.5.1 configured to compute lrpkit's composites exactly, and zennit's own rules.

:func:`tutorial_oracle` is LRP-Tutorial (thesis Table 2.4) with Montavon's tutorial heuristic, built
from zennit's rules on torchvision's VGG-16 by module name: zᴮ (``ZBox``) at ``features.0`` with
the box of ImageNet's normalized pixel range, LRP-γ on the convolutions of layers 2-16, LRP-ε on
those of layers 17-30 with ``ε · rms(z)`` (the root mean square of the layer's output per sample),
LRP-0 on the three dense layers, the max-pools read as 2x2 average pools (layers up to
16 with no ε, later ones with the ε block's), and the adaptive average pool under LRP-0. Every
denominator adds the tutorial's 1e-9 floor. :func:`zennit_rules_oracle` and :func:`gamma_oracle`
use zennit's own stabilizer (1e-6) and leave max-pools to the gradient (winner takes all).

Used by ``tests/test_lrp.py`` (agreement) and ``bench/lrp_speed.py`` (speed). Only the ImageNet
constants come from lrpkit.
"""
import torch
from torch.nn import functional as F
from zennit.attribution import Gradient
from zennit.composites import NameMapComposite
from zennit.core import Hook
from zennit.rules import Epsilon, Gamma, Norm, ZBox

from lrpkit.imagenet import MEAN, STD

CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
POOLS = [4, 9, 16, 23, 30]


def bounds(x):
    mean = torch.tensor(MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)
    return ((0 - mean) / std).expand_as(x), ((1 - mean) / std).expand_as(x)


def rms(z):
    return z.pow(2).mean(dim=tuple(range(1, z.dim())), keepdim=True).sqrt()


class AvgPoolHook(Hook):
    """Relevance through a max-pool read as 2x2 average pooling, with a given stabilizer."""

    def __init__(self, stabilizer):
        super().__init__()
        self.stabilizer = stabilizer

    def copy(self):
        return AvgPoolHook(self.stabilizer)

    def forward(self, module, input, output):
        self.stored_tensors["input"] = input

    def backward(self, module, grad_input, grad_output):
        a = self.stored_tensors["input"][0].detach().requires_grad_(True)
        with torch.enable_grad():
            z = F.avg_pool2d(a, 2)
            (c,) = torch.autograd.grad(z, a, grad_outputs=grad_output[0] / self.stabilizer(z))
        return (a * c,)


def exact(z):
    """LRP-0's denominator without a stabilizer (where z = 0 the relevance is 0 anyway)."""
    return torch.where(z == 0, torch.ones_like(z), z)


#: The adaptive average pool as zennit's composites treat it: a layer of its own with LRP-0 (``Norm``);
#: the identity for 224x224 inputs.
AVGPOOL = (["avgpool"], Norm(stabilizer=exact))


def _attribute(model, x, target, name_map):
    onehot = F.one_hot(target, 1000).to(x)
    with Gradient(model, NameMapComposite(name_map)) as attributor:
        _, attribution = attributor(x, lambda out: out * onehot)
    return attribution


def tutorial_oracle(model, x, target, gamma=0.25, epsilon=0.25):
    """LRP-Tutorial (Table 2.4, Montavon's tutorial heuristic) in zennit: see the module docstring."""
    low, high = bounds(x)
    floor = lambda z: z + 1e-9  # noqa: E731
    eps = lambda z: z + 1e-9 + epsilon * rms(z)  # noqa: E731
    name_map = [
        (["features.0"], ZBox(low, high, stabilizer=floor)),
        ([f"features.{i}" for i in CONVS if 2 <= i <= 16], Gamma(gamma, stabilizer=floor)),
        ([f"features.{i}" for i in CONVS if 17 <= i <= 30], Epsilon(epsilon=eps)),
        (["classifier.0", "classifier.3", "classifier.6"], Epsilon(epsilon=floor)),
        ([f"features.{i}" for i in POOLS if i <= 16], AvgPoolHook(floor)),
        ([f"features.{i}" for i in POOLS if i > 16], AvgPoolHook(eps)),
        AVGPOOL,
    ]
    return _attribute(model, x, target, name_map)


def zennit_rules_oracle(model, x, target, gamma=0.25, epsilon=0.25):
    """The tutorial's layout with zennit's own ZBox/Gamma/Epsilon and their default stabilizer
    (1e-6); max-pools left to the gradient (winner takes all)."""
    low, high = bounds(x)
    name_map = [
        (["features.0"], ZBox(low, high)),
        ([f"features.{i}" for i in CONVS if 2 <= i <= 16], Gamma(gamma)),
        ([f"features.{i}" for i in CONVS if 17 <= i <= 30], Epsilon(epsilon)),
        (["classifier.0", "classifier.3", "classifier.6"], Epsilon(1e-6)),
    ]
    return _attribute(model, x, target, name_map)


def gamma_oracle(model, x, target, gamma=0.25):
    """LRP-0 (zennit's stabilizer) at the pixel layer and the logits, zennit's LRP-γ at every other
    convolution and dense layer, max-pools left to the gradient, the adaptive pool under LRP-0."""
    name_map = [
        (["features.0", "classifier.6"], Epsilon(1e-6)),
        ([f"features.{i}" for i in CONVS if i > 0] + ["classifier.0", "classifier.3"], Gamma(gamma)),
        AVGPOOL,
    ]
    return _attribute(model, x, target, name_map)


def signed_oracle(model, x, target, rule):
    """zᴮ (zennit's stabilizer) at the pixel layer and zennit's ``rule`` (``ZPlus()`` or
    ``AlphaBeta(α, β)``) at every other convolution and dense layer; max-pools left to the
    gradient, the adaptive pool under LRP-0."""
    low, high = bounds(x)
    name_map = [
        (["features.0"], ZBox(low, high)),
        ([f"features.{i}" for i in CONVS if i > 0] + ["classifier.0", "classifier.3", "classifier.6"], rule),
        AVGPOOL,
    ]
    return _attribute(model, x, target, name_map)
