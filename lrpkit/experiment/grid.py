"""The composite families of the thesis's grid search and their two hyperparameter axes.

Thesis §4.1 searches a 2-D grid for each of two composites (Tables 4.2 and 4.3):

- ``tutorial`` -- LRP-Tutorial (Table 2.4): axes ``gamma`` (γ of layers 1-16) and ``epsilon``
  (ε of layers 17-30); z^B at 0, LRP-0 from 31 on.
- ``decreasing-gamma`` -- LRP-Decreasing-γ, axes ``gamma1`` and ``gamma2``, in two variants:

  - ``table`` (the default): as Table 4.2 states it -- z^B at 0, γ = 0.5 fixed on layers 2-10,
    ``gamma1`` on 11-17, ``gamma2`` on 18-24, γ = 0 on 25-31, LRP-0 above;
  - ``thesis-code``: as the thesis code ran it (its ``_get_rule_layer_map_of_decreasing_gamma``):
    ``gamma1`` on layers 1-17 (no fixed γ = 0.5 block), ``gamma2`` on 18-24, γ = 0 on 25-31.
    The thesis code leaves the dense layers without a rule (plain gradient); here they get LRP-0
    with the heuristic's floor, as every layer a composite does not name.

A setting is a pair ``(i, j)`` of grid indices; settings are numbered ``n2 * i + j`` (``n2`` values
on the second axis), which for the thesis's 16 × 16 grid is its experiment id (``16 i + j``,
the number in the thesis code's result files).

The default axis is the thesis's ``{0} ∪ logspace(-4, 0, 15)`` (16 values).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import imagenet
from ..composites import Composite, decreasing_gamma, tutorial
from ..rules import Gamma, ZBox

__all__ = ["FAMILIES", "Family", "Axis", "default_axis", "logspace_axis", "build_composite", "settings"]


@dataclass(frozen=True)
class Axis:
    """One hyperparameter axis of a family: its name (a results column), symbol and layers."""

    name: str
    symbol: str
    layers: Tuple[int, int]

    def label(self) -> str:
        """E.g. ``"γ (layers 1-16)"``, for tables and plot axes."""
        return f"{self.symbol} (layers {self.layers[0]}-{self.layers[1]})"


@dataclass(frozen=True)
class Family:
    """A composite family: its thesis name, variants and, per variant, its two axes."""

    key: str
    name: str
    variants: Tuple[str, ...]
    axes: Dict[str, Tuple[Axis, Axis]]

    def axis_names(self) -> Tuple[str, str]:
        first = next(iter(self.axes.values()))
        return first[0].name, first[1].name


FAMILIES: Dict[str, Family] = {
    "tutorial": Family("tutorial", "LRP-Tutorial", ("table",), {
        "table": (Axis("gamma", "γ", (1, 16)), Axis("epsilon", "ε", (17, 30))),
    }),
    "decreasing-gamma": Family("decreasing-gamma", "LRP-Decreasing-γ", ("table", "thesis-code"), {
        "table": (Axis("gamma1", "γ", (11, 17)), Axis("gamma2", "γ", (18, 24))),
        "thesis-code": (Axis("gamma1", "γ", (1, 17)), Axis("gamma2", "γ", (18, 24))),
    }),
}


def logspace_axis(start: float, stop: float, num: int, zero: bool = True) -> List[float]:
    """``[0] + numpy.logspace(start, stop, num)`` (without the 0 if ``zero`` is False), as floats."""
    values = np.logspace(start, stop, num).tolist()
    return ([0.0] if zero else []) + [float(v) for v in values]


def default_axis() -> List[float]:
    """The thesis's grid axis: 0 and 15 values log-spaced in [1e-4, 1] (Tables 4.2, 4.3)."""
    return logspace_axis(-4, 0, 15)


def settings(first: Sequence[float], second: Sequence[float]) -> List[Tuple[int, int]]:
    """The grid's settings ``(i, j)`` in setting order ``n2 * i + j``."""
    return [(i, j) for i in range(len(first)) for j in range(len(second))]


def build_composite(family: str, variant: str, first, second, *, heuristic: str, maxpool: str,
                    mean: Sequence[float] = imagenet.MEAN, std: Sequence[float] = imagenet.STD) -> Composite:
    """The family's composite with the two axes' values.

    Parameters
    ----------
    family, variant : str
        A key of :data:`FAMILIES` and one of its variants.
    first, second : float or torch.Tensor
        Values of the first and second axis: floats, or 1-D tensors with one value per sample.
    heuristic, maxpool : str
        See :class:`lrpkit.composites.Composite`.
    """
    if family == "tutorial":
        return tutorial(gamma=first, epsilon=second, heuristic=heuristic, maxpool=maxpool, mean=mean, std=std)
    if family == "decreasing-gamma" and variant == "table":
        return decreasing_gamma(gammas=(0.5, first, second, 0.0), heuristic=heuristic, maxpool=maxpool, mean=mean,
                                std=std)
    if family == "decreasing-gamma" and variant == "thesis-code":
        return Composite({0: ZBox.from_normalization(mean, std), (1, 17): Gamma(first), (18, 24): Gamma(second),
                          (25, 31): Gamma(0.0)}, heuristic, maxpool, name="LRP-Decreasing-γ (thesis code)")
    raise ValueError(f"unknown composite family {family!r} with variant {variant!r}; choose one of "
                     f"{', '.join(f'{k} ({v})' for k, f in FAMILIES.items() for v in f.variants)}")


def grid_tensors(first: Sequence[float], second: Sequence[float], *, dtype: torch.dtype = torch.float32,
                 device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample values of both axes for every setting, in setting order (the first axis slowest)."""
    a = torch.tensor(list(first), dtype=torch.float64).repeat_interleave(len(second))
    b = torch.tensor(list(second), dtype=torch.float64).repeat(len(first))
    return a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)
