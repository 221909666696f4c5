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

And the two composites of the thesis's own code (PyPI ``lrp-pf-auc`` 0.1.6), which differ from the
tutorial's mathematics (constant ε, winner-takes-all max-pooling, a rule-modified forward pass):
:func:`thesis_code_tutorial`, :func:`thesis_code_decreasing_gamma` and, for its grid searches,
:func:`thesis_code_uniform`.

A composite prints itself as the table the thesis prints (:meth:`Composite.table`), with the
concrete indices of a model (VGG-16's 31–37 where the thesis writes 31-n), so the book's tables
come from the code that computes the heatmaps. Ranges are written with an en dash, ``n`` standing
for the last layer where no model is given (reprs, error messages).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

from ._checks import choice
from .canonical import VGG16_LAYERS
from .heuristics import STABILIZERS, check_heuristic, check_stabilizer
from .imagenet import MEAN as IMAGENET_MEAN, STD as IMAGENET_STD
from .rules import POOLING, RULES, Epsilon, Gamma, Gradient, Rule, Zero, ZBox, named_rule

__all__ = ["Composite", "tutorial", "decreasing_gamma", "uniform", "UNIFORM_RULES", "thesis_code_tutorial",
           "thesis_code_decreasing_gamma", "thesis_code_uniform", "Parameter", "NamedComposite", "COMPOSITES",
           "named"]

IndexRange = Union[int, tuple]  # an index, or an inclusive (start, stop) with stop=None for "to the end"


@dataclass(frozen=True)
class Parameter:
    """A hyperparameter of a named composite: its keyword (and the experiment's results column),
    its symbol, the layers it sets (inclusive; ``None`` for "to the last layer") and its default."""

    name: str
    symbol: str
    layers: tuple
    default: float

    def span(self) -> str:
        """E.g. ``"1-16"``, or ``"1-n"`` to the last layer."""
        return f"{self.layers[0]}-{'n' if self.layers[1] is None else self.layers[1]}"

    def label(self) -> str:
        """E.g. ``"γ (layers 1-16)"``, for tables and plot axes."""
        return f"{self.symbol} (layers {self.span()})"


# The layer ranges and defaults of the thesis's composites, each written here once.
TUTORIAL_GAMMA = Parameter("gamma", "γ", (1, 16), 0.25)              # Table 2.4
TUTORIAL_EPSILON = Parameter("epsilon", "ε", (17, 30), 0.25)
TUTORIAL_ZERO = (31, None)                                           # LRP-0 on the classifier
DECREASING_GAMMA = (                                                 # Table 2.3; a grid varies 1 and 2
    Parameter("gamma0", "γ", (2, 10), 0.5),
    Parameter("gamma1", "γ", (11, 17), 0.25),
    Parameter("gamma2", "γ", (18, 24), 0.1),
    Parameter("gamma3", "γ", (25, 31), 0.0),
)
CODE_DECREASING_GAMMA = (                                            # the thesis code's map (§4.1.1)
    Parameter("gamma1", "γ", (1, 17), 0.25),
    Parameter("gamma2", "γ", (18, 24), 0.1),
)
CODE_DECREASING_ZERO = (25, 30)                                      # its γ = 0 block (and its leaf 31)
UNIFORM_GAMMA = Parameter("gamma", "γ", (1, None), 0.25)              # and layer 0 where it has no zᴮ
UNIFORM_EPSILON = Parameter("epsilon", "ε", (1, None), 0.25)


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
    forward : None, "zennit" or "shift"
        None (default): LRP on the model's own forward pass. A stabilizer of
        :data:`lrpkit.heuristics.STABILIZERS`: the thesis code's rule-modified forward pass, in which
        every layer the code wraps in a rule outputs ``z · (out / stabilize(z))`` instead of ``out``
        (``z`` the rule's pre-activation, :meth:`lrpkit.rules.Rule.preactivation`): each
        convolution and dense layer with a rule other than :class:`~lrpkit.rules.Gradient`, and
        the ``AdaptiveAvgPool2d`` before a VGG's classifier if ``avgpool`` gives it a rule.
        Every activation above the first such layer changes, the logits included. The code's
        gradient then divides by the exact ``z``: ``forward`` needs ``heuristic="vanilla"``.
    avgpool : Zero, Gamma, Epsilon or None
        Under ``forward``: the rule of torchvision's ``AdaptiveAvgPool2d`` between a VGG's features
        and classifier (the identity for 224x224 inputs, absent from lrpkit's layer list; the
        thesis code's leaf 31). Its ``z`` is ``ε + a`` (γ has no parameter to act on); in the
        backward pass the relevance entering layer 31 from above is multiplied by ``a / z`` on its
        way down. None: the pool is left alone, as the code leaves a leaf without a rule.

    Examples
    --------
    >>> from lrpkit.rules import Gamma, Epsilon, ZBox
    >>> comp = Composite({0: ZBox(), (1, 16): Gamma(0.25), (17, 30): Epsilon(0.25)})
    """

    def __init__(self, assignments: Union[Mapping[IndexRange, Rule], Iterable[tuple]], heuristic: str = "tutorial",
                 maxpool: str = "avg", name: str = "custom", *, forward: Optional[str] = None,
                 avgpool: Optional[Rule] = None):
        items = list(assignments.items() if isinstance(assignments, Mapping) else assignments)
        self.heuristic = check_heuristic(heuristic)
        self.forward = None if forward is None else check_stabilizer(forward)
        if forward is not None and heuristic != "vanilla":
            raise ValueError(f"forward={forward!r} needs heuristic='vanilla' (the thesis code's gradient divides by "
                             f"the exact z), got {heuristic!r}")
        if avgpool is not None and (forward is None or type(avgpool) not in (Zero, Gamma, Epsilon)):
            raise ValueError(f"avgpool={avgpool!r}: the avgpool rule is a Zero, Gamma or Epsilon rule of a composite "
                             "with a rule-modified forward (forward='zennit' or 'shift')")
        self.avgpool = avgpool
        self.maxpool = choice("maxpool treatment", maxpool, POOLING)
        self.name = name
        self.assignments: list[tuple[int, Optional[int], Rule]] = []
        for spec, rule in items:
            start, stop = _parse_range(spec)
            if not isinstance(rule, Rule):
                raise TypeError(f"the rule for layers {_format_range(start, stop)} must be an lrpkit.rules.Rule, got {rule!r}")
            if isinstance(rule, ZBox) and (start, stop) != (0, 0):
                raise ValueError(f"zᴮ is the pixel-layer rule: assign it to index 0 only, not {_format_range(start, stop)}")
            if forward is not None and len(rule.parts()) > 1:
                raise ValueError(f"{rule.label} (layers {_format_range(start, stop)}) sums several modified passes and "
                                 f"has no single pre-activation: a rule-modified forward (forward={forward!r}) cannot "
                                 "use it")
            self.assignments.append((start, stop, rule))
        self.assignments.sort(key=lambda item: item[0])
        for (s1, e1, _), (s2, e2, _) in zip(self.assignments, self.assignments[1:]):
            if e1 is None or e1 >= s2:
                raise ValueError(f"layer ranges {_format_range(s1, e1)} and {_format_range(s2, e2)} overlap")
        sizes = {rule.batch_size for *_, rule in self.assignments + [(0, 0, avgpool or Zero())]} - {None}
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
        return Composite([((s, e), r.take(index)) for s, e, r in self.assignments], self.heuristic, self.maxpool,
                         self.name, forward=self.forward, avgpool=self.avgpool and self.avgpool.take(index))

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
        forward = "" if self.forward is None else f", forward={self.forward!r}, avgpool={self.avgpool!r}"
        return f"Composite('{self.name}', {{{body}}}, heuristic={self.heuristic!r}, maxpool={self.maxpool!r}{forward})"


def tutorial(gamma=TUTORIAL_GAMMA.default, epsilon=TUTORIAL_EPSILON.default, heuristic: str = "tutorial",
             maxpool: str = "avg",
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
    return Composite(_tutorial_map(gamma, epsilon, mean, std), heuristic, maxpool, name="LRP-Tutorial")


def _tutorial_map(gamma, epsilon, mean, std) -> dict:
    """LRP-Tutorial's rules by layer range: zᴮ, γ, ε, LRP-0."""
    return {0: ZBox.from_normalization(mean, std), TUTORIAL_GAMMA.layers: Gamma(gamma),
            TUTORIAL_EPSILON.layers: Epsilon(epsilon), TUTORIAL_ZERO: Zero()}


def decreasing_gamma(gammas=tuple(p.default for p in DECREASING_GAMMA), heuristic: str = "tutorial",
                     maxpool: str = "avg",
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Composite:
    """LRP-Decreasing-γ (thesis Table 2.3; Eberle et al. 2022): zᴮ, then γ decreasing by block.

    Parameters
    ----------
    gammas : sequence of four floats or 1-D tensors
        γ of layers 2-10, 11-17, 18-24 and 25-31. Layers after 31 get LRP-0.
    """
    gammas = tuple(gammas)
    if len(gammas) != len(DECREASING_GAMMA):
        raise ValueError(f"decreasing_gamma needs four γ values (layers "
                         f"{', '.join(p.span() for p in DECREASING_GAMMA)}), got {len(gammas)}")
    return Composite({0: ZBox.from_normalization(mean, std),
                      **{p.layers: Gamma(g) for p, g in zip(DECREASING_GAMMA, gammas)}},
                     heuristic, maxpool, name="LRP-Decreasing-γ")


def decreasing_gamma_code_layers(gamma1=CODE_DECREASING_GAMMA[0].default, gamma2=CODE_DECREASING_GAMMA[1].default,
                                 heuristic: str = "tutorial", maxpool: str = "avg",
                                 mean: Sequence[float] = IMAGENET_MEAN,
                                 std: Sequence[float] = IMAGENET_STD) -> Composite:
    """LRP-Decreasing-γ on the thesis code's layer map, computed with lrpkit's rules (the grid
    search's ``thesis-code`` variant): zᴮ, ``gamma1`` on 1-17, ``gamma2`` on 18-24, γ = 0 on
    25-31 (no fixed γ = 0.5 block); the dense layers above get LRP-0 with the heuristic's floor,
    where the code leaves them their plain gradient (:func:`thesis_code_decreasing_gamma`)."""
    first, second = CODE_DECREASING_GAMMA
    zero = DECREASING_GAMMA[-1]
    return Composite({0: ZBox.from_normalization(mean, std), first.layers: Gamma(gamma1), second.layers: Gamma(gamma2),
                      zero.layers: Gamma(zero.default)}, heuristic, maxpool, name="LRP-Decreasing-γ (thesis code)")


#: The rules a uniform composite takes by name (:data:`lrpkit.rules.RULES`).
UNIFORM_RULES = tuple(RULES)
#: The rules of the thesis code's uniform composites.
THESIS_CODE_RULES = ("zero", "epsilon", "gamma")


def uniform(rule: str = "zero", *, epsilon=UNIFORM_EPSILON.default, gamma=UNIFORM_GAMMA.default, zbox: bool = False,
            heuristic: str = "tutorial",
            maxpool: str = "avg", mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Composite:
    """One rule for every layer (uniform LRP), optionally with zᴮ at the pixel layer.

    Parameters
    ----------
    rule : str
        A name of :data:`lrpkit.rules.RULES`: ``"zero"`` (LRP-0; without zᴮ and with
        ``maxpool="max"`` it equals Gradient × Input), ``"epsilon"``, ``"gamma"``, ``"zplus"``,
        ``"alpha2-beta1"`` or ``"alpha1-beta0"``.
    epsilon, gamma : float or torch.Tensor
        The hyperparameter of the chosen rule.
    zbox : bool
        Use zᴮ at layer 0.
    """
    chosen = named_rule(rule, epsilon=epsilon, gamma=gamma)
    assignments = {0: ZBox.from_normalization(mean, std), (1, None): chosen} if zbox else {(0, None): chosen}
    label = f"uniform {chosen.label}" + (f" with {ZBox.label}" if zbox else "")
    return Composite(assignments, heuristic, maxpool, name=label)


def thesis_code_tutorial(gamma=TUTORIAL_GAMMA.default, epsilon=TUTORIAL_EPSILON.default, heuristic: str = "zennit", *,
                         mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Composite:
    """LRP-Tutorial as the thesis code computes it (``lrp-pf-auc`` 0.1.6, thesis Chapter 4 and Fig. 2.3).

    Layers 0 → z^B, 1-16 → γ, 17-30 → ε, 31-n → LRP-0, with winner-takes-all max-pooling, a
    constant ε and the code's rule-modified forward pass (:class:`Composite`, ``forward``). Agrees
    with ``lrp-pf-auc`` on real images to 4e-15 of the largest relevance in float64 and 3e-6 in
    float32, logits bit for bit (``tests/test_thesis_code.py``), one image per call of the code:
    see the Notes for its batches.

    Parameters
    ----------
    gamma, epsilon : float or torch.Tensor
        γ of layers 1-16 and ε of layers 17-30 (floats, or 1-D tensors with one value per sample;
        a grid over one image then runs one forward pass per setting, since the forward pass
        depends on the rules).
    heuristic : {"zennit", "shift"}
        The code's ``stabilize``: ``"zennit"`` (every grid, Pixel-Flipping and docs figure of the
        thesis) or ``"shift"``, the unsigned ``z + 1e-6`` of the code's early "vanilla" (Figures
        2.3-2.5, B.1), which makes the instability patches. lrpkit's own ``"vanilla"`` heuristic
        (divide by z) is another thing: use :func:`tutorial` for it.
    mean, std : sequence of float
        The input normalization, which sets the z^B bounds.

    Notes
    -----
    What differs from :func:`tutorial`:

    - ε is constant, not the tutorial's ε · RMS(z);
    - max-pools pass relevance to the winner (gradient), not as 2x2 average pools;
    - the code's layer indices count torchvision's ``AdaptiveAvgPool2d`` as leaf 31, so its
      classifier's Linear layers are 32, 35, 38 (lrpkit's 31, 34, 37). Its "31+ → LRP-0" covers the
      avgpool and the three Linear layers, so the boundaries fall where the tutorial's do;
    - every wrapped layer's forward output is ``z · (out / stabilize(z))``; the logits it explains
      are those of this modified network (``Explanation.logits``), which the code's Pixel-Flipping
      also scores;
    - Fig. 2.3's notebook ran this map with γ = 0, not Table 2.4's 0.25.

    Not reproduced: in a batch of several images the code's z^B adds every image's bound terms to
    each heatmap (its bounds are one ``[1, 3, H, W]`` tensor each, whose gradients sum over the
    batch; measured with random weights: castle and common newt in one batch differ from their
    single-image heatmaps by 1.2 and 0.34 of the largest relevance). lrpkit explains each image
    on its own.

    References
    ----------
    R. Bermudez Schettino, *In-Depth Hyperparameter Selection for Layer-Wise Relevance
    Propagation*, TU Berlin (2022), Table 2.4, §2.1.5, Chapter 4; code: PyPI ``lrp-pf-auc`` 0.1.6
    (``lrp/rules.py``, ``lrp/zennit/core.py``), github.com/rodrigobdz/lrp.
    """
    return Composite(_tutorial_map(gamma, epsilon, mean, std), "vanilla", "max", name="thesis code LRP-Tutorial",
                     forward=_thesis_stabilizer(heuristic), avgpool=Zero())


def thesis_code_decreasing_gamma(gamma1=CODE_DECREASING_GAMMA[0].default, gamma2=CODE_DECREASING_GAMMA[1].default,
                                 heuristic: str = "zennit", *,
                                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Composite:
    """LRP-Decreasing-γ as the thesis code computes it (``lrp-pf-auc`` 0.1.6; thesis Fig. 4.1, Table 4.2).

    Layers 0 → z^B, 1-17 → γ₁, 18-24 → γ₂, 25-30 → γ = 0 (and the code's avgpool, leaf 31), the
    classifier without a rule (:class:`~lrpkit.rules.Gradient`), winner-takes-all max-pooling and the
    code's rule-modified forward pass (:class:`Composite`, ``forward``).

    Parameters
    ----------
    gamma1, gamma2 : float or torch.Tensor
        γ of layers 1-17 and 18-24 (floats, or 1-D tensors with one value per sample).
    heuristic : {"zennit", "shift"}
        The code's ``stabilize`` (see :func:`thesis_code_tutorial`).
    mean, std : sequence of float
        The input normalization, which sets the z^B bounds.

    Notes
    -----
    What differs from the thesis's Tables 2.3, 4.2 and 4.4 and from :func:`decreasing_gamma`
    (the thesis code against its own text):

    - γ₁ covers layers 1-17: there is no fixed γ = 0.5 block on 2-10;
    - the code's "25-31 γ = 0" ends at its leaf 31, torchvision's ``AdaptiveAvgPool2d``; the
      classifier's Linear layers (the code's 32, 35, 38) get no rule at all: their plain gradient,
      LRP-0 without a stabilizer, on the model's own forward pass;
    - as in :func:`thesis_code_tutorial`: winner-takes-all max-pooling and the modified forward pass.

    References
    ----------
    R. Bermudez Schettino (2022), Tables 2.3, 4.2, 4.4, §4.1.1; PyPI ``lrp-pf-auc`` 0.1.6,
    ``experiments/script/batch_lrp_pf.py``. M. Eberle et al., *Building and interpreting deep
    similarity models*, IEEE TPAMI 44 (2022) (the Decreasing-γ composite).
    """
    first, second = CODE_DECREASING_GAMMA
    return Composite({
        0: ZBox.from_normalization(mean, std),
        first.layers: Gamma(gamma1),
        second.layers: Gamma(gamma2),
        CODE_DECREASING_ZERO: Gamma(0.0),
        (CODE_DECREASING_ZERO[1] + 1, None): Gradient(),
    }, "vanilla", "max", name="thesis code LRP-Decreasing-γ", forward=_thesis_stabilizer(heuristic),
        avgpool=Gamma(0.0))


def thesis_code_uniform(rule: str = "gamma", *, gamma=UNIFORM_GAMMA.default, epsilon=UNIFORM_EPSILON.default,
                        zbox: bool = True, heuristic: str = "zennit",
                        mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Composite:
    """One rule on every layer above the pixel layer, as the thesis code's grid searches ran it (Fig. 3.3, B.1).

    The code's leaves 1 and up get the rule: every convolution, its avgpool (leaf 31) and the
    classifier's Linear layers; leaf 0 gets z^B, or no rule at all (its plain gradient).
    Winner-takes-all max-pooling and the code's rule-modified forward pass (:class:`Composite`,
    ``forward``).

    Parameters
    ----------
    rule : {"gamma", "epsilon", "zero"}
        The rule of layers 1 and up.
    gamma, epsilon : float or torch.Tensor
        Its hyperparameter (floats, or 1-D tensors with one value per sample).
    zbox : bool
        z^B at layer 0 (Fig. 3.3's "Composite ZBox and LRP-γ/ε"); False leaves it without a rule
        (its "Uniform LRP-γ/ε", whose titles in the code say "layers 17-30" by mistake).
    heuristic : {"zennit", "shift"}
        The code's ``stabilize`` (see :func:`thesis_code_tutorial`).
    mean, std : sequence of float
        The input normalization, which sets the z^B bounds.

    Notes
    -----
    With ε on the avgpool (leaf 31), the relevance entering the classifier is multiplied by
    ``a / (a + ε)`` on its way down: the code's uniform ε absorbs there too.

    References
    ----------
    R. Bermudez Schettino (2022), §3.2, Figures 3.3 and B.1; PyPI ``lrp-pf-auc`` 0.1.6,
    ``experiments/notebooks/7-grid-search-rerun/grid-search.ipynb``.
    """
    chosen = named_rule(choice("rule of the thesis code", rule, THESIS_CODE_RULES), epsilon=epsilon, gamma=gamma)
    first = ZBox.from_normalization(mean, std) if zbox else Gradient()
    label = f"thesis code {'zᴮ and ' if zbox else 'uniform '}{chosen.label}"
    return Composite({0: first, (1, None): chosen}, "vanilla", "max", name=label, forward=_thesis_stabilizer(heuristic),
                     avgpool=chosen)


def _thesis_stabilizer(heuristic: str) -> str:
    if heuristic not in STABILIZERS:
        raise ValueError(f"unknown heuristic {heuristic!r} of the thesis code; choose 'zennit' (its stabilizer from "
                         "2022-03-21 on) or 'shift' (its early vanilla, z + 1e-6)")
    return heuristic


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


@dataclass(frozen=True)
class NamedComposite:
    """A composite of :data:`COMPOSITES`: its thesis name, how to build it and its hyperparameters.

    ``build`` takes the hyperparameters by :attr:`Parameter.name` and the options of its function
    (``heuristic``, ``maxpool``, ``mean``, ``std``; the thesis code's composites take ``heuristic``
    as their stabilizer and no ``maxpool``). ``command_line``: offered by ``lrpkit explain
    --composite``. ``thesis_code``: computed as the thesis code computes it (its forward pass).
    """

    key: str
    name: str
    build: Callable[..., Composite]
    parameters: tuple
    command_line: bool = False
    thesis_code: bool = False

    def parameter(self, name: str) -> Parameter:
        """The hyperparameter ``name``."""
        found = {p.name: p for p in self.parameters}
        return found[choice(f"hyperparameter of composite {self.key!r}", name, tuple(found))]

    def composite(self, **values) -> Composite:
        """The composite with ``values`` (hyperparameters by name and options); defaults elsewhere."""
        return self.build(**values)


def _decreasing_gamma_by_block(gamma0=DECREASING_GAMMA[0].default, gamma1=DECREASING_GAMMA[1].default,
                               gamma2=DECREASING_GAMMA[2].default, gamma3=DECREASING_GAMMA[3].default,
                               **options) -> Composite:
    return decreasing_gamma((gamma0, gamma1, gamma2, gamma3), **options)


#: The named composites, registered once: read by the command line, the experiment's grid
#: (:mod:`lrpkit.experiment.grid`), the sweeps (:mod:`lrpkit.sweeps`) and the cheat sheet.
COMPOSITES = {c.key: c for c in (
    NamedComposite("tutorial", "LRP-Tutorial", tutorial, (TUTORIAL_GAMMA, TUTORIAL_EPSILON), command_line=True),
    NamedComposite("decreasing-gamma", "LRP-Decreasing-γ", _decreasing_gamma_by_block, DECREASING_GAMMA,
                   command_line=True),
    NamedComposite("uniform", "uniform LRP", uniform, (UNIFORM_GAMMA, UNIFORM_EPSILON), command_line=True),
    NamedComposite("decreasing-gamma-code-layers", "LRP-Decreasing-γ (thesis code)", decreasing_gamma_code_layers,
                   CODE_DECREASING_GAMMA),
    NamedComposite("thesis-code-tutorial", "thesis code LRP-Tutorial", thesis_code_tutorial,
                   (TUTORIAL_GAMMA, TUTORIAL_EPSILON), thesis_code=True),
    NamedComposite("thesis-code-decreasing-gamma", "thesis code LRP-Decreasing-γ", thesis_code_decreasing_gamma,
                   CODE_DECREASING_GAMMA, thesis_code=True),
    NamedComposite("thesis-code-uniform", "thesis code uniform", thesis_code_uniform, (UNIFORM_GAMMA, UNIFORM_EPSILON),
                   thesis_code=True),
)}


def named(key: str) -> NamedComposite:
    """The composite ``key`` of :data:`COMPOSITES` (one line naming the choices if there is none)."""
    return COMPOSITES[choice("composite", key, tuple(COMPOSITES))]
