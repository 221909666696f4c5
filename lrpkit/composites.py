"""Composites: LRP rules assigned to ranges of layer indices (thesis Tables 2.3 and 2.4).

A :class:`Composite` maps inclusive index ranges of the canonical layer list
(:mod:`lrpkit.canonical`) to rules, and fixes the denominator heuristic and the treatment of
max-pooling. Layers it does not name get LRP-0 (with the heuristic's floor). A max-pool read as an
average pool in the backward pass uses the ε of the rule at its own index, as the tutorial does.

The named composites of the thesis:

- :func:`tutorial` -- LRP-Tutorial (Table 2.4): 0 → zᴮ, 1–16 → γ, 17–30 → ε, 31–n → LRP-0.
- :func:`decreasing_gamma` -- LRP-Decreasing-γ (Table 2.3, Eberle et al. 2022): 0 → zᴮ,
  2–10 → γ₁, 11–17 → γ₂, 18–24 → γ₃, 25–31 → γ₄.
- :func:`uniform` -- one rule everywhere, optionally zᴮ at the pixel layer.

A composite prints itself as the table the thesis prints (:meth:`Composite.table`), with the
concrete indices of a model (VGG-16's 31–37 where the thesis writes 31-n), so the book's tables
come from the code that computes the heatmaps. Ranges are written with an en dash, ``n`` standing
for the last layer where no model is given (reprs, error messages).
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence, Union

import torch

from ._checks import choice
from .heuristics import check_heuristic
from .imagenet import MEAN as IMAGENET_MEAN, STD as IMAGENET_STD
from .rules import POOLING, Epsilon, Gamma, Rule, Zero, ZBox

__all__ = ["Composite", "tutorial", "decreasing_gamma", "uniform", "UNIFORM_RULES"]

IndexRange = Union[int, tuple]  # an index, or an inclusive (start, stop) with stop=None for "to the end"

#: Layers of VGG-16's canonical list (:func:`lrpkit.canonical.layers`): the model of the thesis.
VGG16_LAYERS = 38


class Composite:
    """Rules by layer index, plus the denominator heuristic and the max-pool treatment.

    Parameters
    ----------
    assignments : mapping or iterable of (index range, Rule)
        Index ranges are an ``int`` or an inclusive ``(start, stop)`` pair; ``stop=None`` means
        "to the last layer". Ranges must not overlap.
    heuristic : str
        ``"vanilla"``, ``"zennit"`` or ``"tutorial"`` (:mod:`lrpkit.heuristics`).
    maxpool : str
        ``"avg"`` (tutorial: 2x2 average pooling in the backward pass) or ``"max"`` (winner takes all).
    name : str
        Shown in tables and reprs.

    Examples
    --------
    >>> from lrpkit.rules import Gamma, Epsilon, ZBox
    >>> comp = Composite({0: ZBox(), (1, 16): Gamma(0.25), (17, 30): Epsilon(0.25)})
    """

    def __init__(self, assignments: Union[Mapping[IndexRange, Rule], Iterable[tuple]], heuristic: str = "tutorial",
                 maxpool: str = "avg", name: str = "custom"):
        items = list(assignments.items() if isinstance(assignments, Mapping) else assignments)
        self.heuristic = check_heuristic(heuristic)
        self.maxpool = choice("maxpool treatment", maxpool, POOLING)
        self.name = name
        self.assignments: list[tuple[int, Optional[int], Rule]] = []
        for spec, rule in items:
            start, stop = _parse_range(spec)
            if not isinstance(rule, Rule):
                raise TypeError(f"the rule for layers {_format_range(start, stop)} must be an lrpkit.rules.Rule, got {rule!r}")
            if isinstance(rule, ZBox) and (start, stop) != (0, 0):
                raise ValueError(f"zᴮ is the pixel-layer rule: assign it to index 0 only, not {_format_range(start, stop)}")
            self.assignments.append((start, stop, rule))
        self.assignments.sort(key=lambda item: item[0])
        for (s1, e1, _), (s2, e2, _) in zip(self.assignments, self.assignments[1:]):
            if e1 is None or e1 >= s2:
                raise ValueError(f"layer ranges {_format_range(s1, e1)} and {_format_range(s2, e2)} overlap")
        sizes = {rule.batch_size for *_, rule in self.assignments} - {None}
        if len(sizes) > 1:
            raise ValueError(f"per-sample hyperparameters of different lengths {sorted(sizes)} in one composite")
        self.batch_size: Optional[int] = sizes.pop() if sizes else None

    def rule(self, index: int) -> Rule:
        """The rule of the layer at ``index`` (LRP-0 where the composite names none)."""
        for start, stop, rule in self.assignments:
            if start <= index and (stop is None or index <= stop):
                return rule
        return Zero()

    def check(self, n_layers: int) -> None:
        """Raise a ValueError if a range lies outside a model of ``n_layers`` layers."""
        for start, stop, _ in self.assignments:
            last = start if stop is None else stop
            if last >= n_layers:
                raise ValueError(f"layer range {_format_range(start, stop)} of composite '{self.name}' is out of range: "
                                 f"the model has layers 0–{n_layers - 1}")

    def take(self, index) -> "Composite":
        """The composite with per-sample hyperparameters restricted to the samples ``index``."""
        if self.batch_size is None:
            return self
        return Composite([((s, e), r.take(index)) for s, e, r in self.assignments], self.heuristic, self.maxpool, self.name)

    def table(self, n_layers: Optional[int] = None, *, model=None):
        """The composite as the thesis prints it, with the index ranges of a given model.

        Parameters
        ----------
        n_layers : int, optional
            Length of the model's canonical layer list (:func:`lrpkit.canonical.layers`): a range
            "to the last layer" prints as ``31–37`` for VGG-16's 38 layers. Default: 38 (VGG-16).
        model : torch.nn.Module, optional
            Take ``n_layers`` from this model instead.

        Returns
        -------
        pandas.DataFrame
            The columns ``Layer index``, ``Rule`` and ``Hyperparameters``.

        Raises
        ------
        ValueError
            If a range lies outside the model (see :meth:`check`).
        """
        import pandas as pd

        if model is not None:
            if n_layers is not None:
                raise ValueError(f"give n_layers or model, not both (got n_layers={n_layers!r})")
            from .canonical import layers
            n_layers = len(layers(model))
        elif n_layers is None:
            n_layers = VGG16_LAYERS
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
        self.check(n_layers)
        rows = [(_format_range(s, n_layers - 1 if e is None else e), r.label, r.hyperparameters())
                for s, e, r in self.assignments]
        return pd.DataFrame(rows, columns=["Layer index", "Rule", "Hyperparameters"])

    def __repr__(self) -> str:
        body = ", ".join(f"{_format_range(s, e)}: {r!r}" for s, e, r in self.assignments)
        return f"Composite('{self.name}', {{{body}}}, heuristic={self.heuristic!r}, maxpool={self.maxpool!r})"


def tutorial(gamma=0.25, epsilon=0.25, heuristic: str = "tutorial", maxpool: str = "avg",
             mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Composite:
    """LRP-Tutorial (thesis Table 2.4; Montavon's tutorial): zᴮ, then γ, then ε, then LRP-0.

    Parameters
    ----------
    gamma, epsilon : float or torch.Tensor
        γ of layers 1-16 and ε of layers 17-30 (floats, or 1-D tensors with one value per sample).
    heuristic, maxpool : str
        See :class:`Composite`.
    mean, std : sequence of float
        The input normalization, which sets the zᴮ bounds.
    """
    return Composite({
        0: ZBox.from_normalization(mean, std),
        (1, 16): Gamma(gamma),
        (17, 30): Epsilon(epsilon),
        (31, None): Zero(),
    }, heuristic, maxpool, name="LRP-Tutorial")


def decreasing_gamma(gammas=(0.5, 0.25, 0.1, 0.0), heuristic: str = "tutorial", maxpool: str = "avg",
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Composite:
    """LRP-Decreasing-γ (thesis Table 2.3; Eberle et al. 2022): zᴮ, then γ decreasing by block.

    Parameters
    ----------
    gammas : sequence of four floats or 1-D tensors
        γ of layers 2-10, 11-17, 18-24 and 25-31. Layers after 31 get LRP-0.
    """
    gammas = tuple(gammas)
    if len(gammas) != 4:
        raise ValueError(f"decreasing_gamma needs four γ values (layers 2-10, 11-17, 18-24, 25-31), got {len(gammas)}")
    blocks = [(2, 10), (11, 17), (18, 24), (25, 31)]
    return Composite({0: ZBox.from_normalization(mean, std), **{b: Gamma(g) for b, g in zip(blocks, gammas)}},
                     heuristic, maxpool, name="LRP-Decreasing-γ")


UNIFORM_RULES = ("zero", "epsilon", "gamma")


def uniform(rule: str = "zero", *, epsilon=0.25, gamma=0.25, zbox: bool = False, heuristic: str = "tutorial",
            maxpool: str = "avg", mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Composite:
    """One rule for every layer (uniform LRP), optionally with zᴮ at the pixel layer.

    Parameters
    ----------
    rule : str
        ``"zero"`` (LRP-0; without zᴮ and with ``maxpool="max"`` it equals Gradient × Input),
        ``"epsilon"`` or ``"gamma"``.
    epsilon, gamma : float or torch.Tensor
        The hyperparameter of the chosen rule.
    zbox : bool
        Use zᴮ at layer 0.
    """
    choice("rule", rule, UNIFORM_RULES)
    if rule == "zero":
        chosen = Zero()
    elif rule == "epsilon":
        chosen = Epsilon(epsilon)
    else:
        chosen = Gamma(gamma)
    assignments = {0: ZBox.from_normalization(mean, std), (1, None): chosen} if zbox else {(0, None): chosen}
    label = f"uniform {chosen.label}" + (f" with {ZBox.label}" if zbox else "")
    return Composite(assignments, heuristic, maxpool, name=label)


def _parse_range(spec) -> tuple[int, Optional[int]]:
    if isinstance(spec, bool):
        raise TypeError(f"layer index range must be an int or a (start, stop) pair, got {spec!r}")
    if isinstance(spec, int):
        start, stop = spec, spec
    elif isinstance(spec, range):
        start, stop = spec.start, spec.stop - 1
    elif isinstance(spec, tuple) and len(spec) == 2:
        start, stop = spec
    else:
        raise TypeError(f"layer index range must be an int or a (start, stop) pair, got {spec!r}")
    if not isinstance(start, int) or (stop is not None and not isinstance(stop, int)):
        raise TypeError(f"layer index range {spec!r} must hold ints")
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"layer index range {spec!r} is out of range: need 0 <= start <= stop")
    return start, stop


def _format_range(start: int, stop: Optional[int]) -> str:
    """``"0"``, ``"1–16"``, or ``"31–n"`` for a range to the last layer (n: no model given)."""
    if stop is None:
        return f"{start}–n"
    return str(start) if start == stop else f"{start}–{stop}"
