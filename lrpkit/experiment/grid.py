"""The composite families of the thesis's grid search and their two hyperparameter axes.

Thesis §4.1 searches a 2-D grid for each of two composites (Tables 4.2 and 4.3). A
:class:`Family` names the two hyperparameters its grid varies and, per variant, the named composite
of :data:`lrpkit.composites.COMPOSITES` it builds, whose :class:`~lrpkit.composites.Parameter`
objects hold the layers and defaults (written there once):

- ``tutorial`` -- LRP-Tutorial (Table 2.4), axes ``gamma`` and ``epsilon``;
- ``decreasing-gamma`` -- LRP-Decreasing-γ, axes ``gamma1`` and ``gamma2``, in two variants:
  ``table`` (the default) as Table 4.2 states it (:func:`lrpkit.composites.decreasing_gamma`, its
  other blocks at their defaults), and ``thesis-code`` on the layer map the thesis code ran
  (:func:`lrpkit.composites.decreasing_gamma_code_layers`).

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
from ..composites import COMPOSITES, Composite, Parameter

__all__ = ["FAMILIES", "Family", "Axis", "default_axis", "logspace_axis", "build_composite", "settings"]

#: One hyperparameter axis of a family: a :class:`lrpkit.composites.Parameter` (name, symbol,
#: layers, default), the same object the composite is built from.
Axis = Parameter


@dataclass(frozen=True)
class Family:
    """A composite family of the grid search: its thesis name, the two hyperparameters its grid
    varies (the results' columns) and, per variant, the named composite of
    :data:`lrpkit.composites.COMPOSITES` it builds (the others keep their defaults)."""

    key: str
    name: str
    axis_pair: Tuple[str, str]
    composites: Dict[str, str]

    @property
    def variants(self) -> Tuple[str, ...]:
        return tuple(self.composites)

    @property
    def axes(self) -> Dict[str, Tuple[Axis, Axis]]:
        """The two axes of each variant, from its composite's parameters."""
        return {variant: tuple(COMPOSITES[key].parameter(name) for name in self.axis_pair)
                for variant, key in self.composites.items()}

    def axis_names(self) -> Tuple[str, str]:
        return self.axis_pair


FAMILIES: Dict[str, Family] = {
    "tutorial": Family("tutorial", "LRP-Tutorial", ("gamma", "epsilon"), {"table": "tutorial"}),
    "decreasing-gamma": Family("decreasing-gamma", "LRP-Decreasing-γ", ("gamma1", "gamma2"), {
        "table": "decreasing-gamma", "thesis-code": "decreasing-gamma-code-layers"}),
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
    chosen = FAMILIES.get(family)
    if chosen is None or variant not in chosen.composites:
        raise ValueError(f"unknown composite family {family!r} with variant {variant!r}; choose one of "
                         f"{', '.join(f'{k} ({v})' for k, f in FAMILIES.items() for v in f.variants)}")
    values = dict(zip(chosen.axis_pair, (first, second)))
    return COMPOSITES[chosen.composites[variant]].composite(**values, heuristic=heuristic, maxpool=maxpool, mean=mean,
                                                            std=std)


def grid_tensors(first: Sequence[float], second: Sequence[float], *, dtype: torch.dtype = torch.float32,
                 device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample values of both axes for every setting, in setting order (the first axis slowest)."""
    a = torch.tensor(list(first), dtype=torch.float64).repeat_interleave(len(second))
    b = torch.tensor(list(second), dtype=torch.float64).repeat(len(first))
    return a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)
