"""The thesis's qualitative grid searches: one hyperparameter swept on one image (thesis §3.2).

Before its quantitative experiments the thesis looks at heatmaps of the castle image over a sweep
of one hyperparameter, {0} ∪ 19 values log-spaced in [1e-5, 10], for six composites of its code
(Figure 3.3; the same on castle2 in Figure B.1, and with the code's early unsigned stabilizer in
Figure 2.5). A :class:`Sweep` names one of those composites; :func:`run` explains an image at every
value of it in batched grid calls and checks every heatmap with
:func:`lrpkit.diagnostics.instability`.

The six sweeps (:data:`SWEEPS`, in the order of the thesis code's notebook), on the thesis code's
composites (:func:`lrpkit.composites.thesis_code_uniform`, :func:`~lrpkit.composites.thesis_code_tutorial`):

=====================  ==========================================================================
``zbox-gamma``         z^B on layer 0, γ = v on every layer above
``zbox-epsilon``       z^B on layer 0, ε = v on every layer above
``composite-gamma``    LRP-Tutorial as the code computes it, γ = v on 1-16, ε = 0.25 on 17-30
``composite-epsilon``  the same with γ = 0.25 and ε = v on 17-30
``uniform-gamma``      γ = v on every layer above layer 0, which has no rule (gradient × input)
``uniform-epsilon``    the same with ε = v
=====================  ==========================================================================

Conventions
-----------
- The values are per-sample tensors of one composite (:mod:`lrpkit.composites`), so that one
  :func:`lrpkit.lrp.explain` call computes a whole sweep. The thesis code's rules change the
  forward pass, so every setting still needs its own forward pass above the first varied layer;
  the batch shares the layers below it (``bench/sweep_speed.py`` measures the gain).
- The explained class is given (``target``): under the code's rule-modified forward pass each
  setting has its own logits, and with random weights their argmax changes from tile to tile.
- The thesis code's notebook titles the uniform sweeps "layers 17-30"; that is a mistake of its
  titles; the rules cover every layer above the pixel layer.

Example
-------
>>> from lrpkit import data, models, sweeps
>>> model = models.vgg16(weights="auto")                                     # doctest: +SKIP
>>> x = data.load_image(data.image_set("castle")[0].path)                    # doctest: +SKIP
>>> result = sweeps.run(model, x, "zbox-gamma", target=483)                 # doctest: +SKIP
>>> result.relevance.shape, result.report.unstable.sum()                     # doctest: +SKIP

References
----------
R. Bermudez Schettino, *In-Depth Hyperparameter Selection for Layer-Wise Relevance
Propagation*, master's thesis, TU Berlin (2022), §3.1-3.2, Figures 2.5, 3.3, B.1; code: PyPI
``lrp-pf-auc`` 0.1.6, ``experiments/notebooks/7-grid-search-rerun/grid-search.ipynb`` and
``1-grid-search/basic-grid-search.ipynb``.
M. Eberle et al., *Building and interpreting deep similarity models*, IEEE TPAMI 44 (2022)
(γ matters most near zero, hence the log spacing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from . import composites, diagnostics, lrp
from .composites import Composite
from .heuristics import STABILIZERS

__all__ = ["Sweep", "SWEEPS", "SweepResult", "values", "sweep", "run"]

#: The thesis's sweep: {0} and this many values log-spaced from ``LOW`` to ``HIGH`` (20 in all).
LOW, HIGH, COUNT = 1e-5, 10.0, 20


@dataclass(frozen=True)
class Sweep:
    """One of the thesis's six sweeps: a composite of the thesis code with one hyperparameter varied.

    Attributes
    ----------
    key : str
        E.g. ``"zbox-gamma"`` (:data:`SWEEPS`).
    title : str
        The thesis code's plot title, e.g. ``"Composite zᴮ and LRP-γ"``.
    parameter : str
        ``"gamma"`` or ``"epsilon"``.
    layers : str
        Which layers get which rule, in words (with the layer indices of the thesis's tables).
    """

    key: str
    title: str
    parameter: str
    layers: str

    @property
    def symbol(self) -> str:
        """``"γ"`` or ``"ε"``."""
        return {"gamma": "γ", "epsilon": "ε"}[self.parameter]

    def composite(self, value: Union[float, torch.Tensor], heuristic: str = "zennit") -> Composite:
        """The sweep's composite at ``value`` (a float, or a 1-D tensor with one value per sample).

        ``heuristic`` is the thesis code's stabilizer: ``"zennit"`` (every figure of its chapters 3
        and 4) or ``"shift"`` (its early unsigned ``z + 1e-6``, Figures 2.3-2.5 and B.1).
        """
        family, _ = self.key.split("-")
        varied = {self.parameter: value}
        if family == "composite":   # the other hyperparameter at its default
            return composites.named("thesis-code-tutorial").composite(**varied, heuristic=heuristic)
        return composites.named("thesis-code-uniform").composite(rule=self.parameter, **varied, zbox=family == "zbox",
                                                                  heuristic=heuristic)


def _tutorial_layers(varied: str) -> str:
    """Which layers get which rule in a sweep of LRP-Tutorial varying ``varied``, from the registry."""
    gamma, epsilon = composites.TUTORIAL_GAMMA, composites.TUTORIAL_EPSILON

    def part(p):
        return f"{p.symbol}{'' if p.name == varied else f' = {p.default:g}'} on {p.span().replace('-', '–')}"
    return f"zᴮ on 0, {part(gamma)}, {part(epsilon)}, LRP-0 on {composites.TUTORIAL_ZERO[0]}–n"


#: The six sweeps of thesis Figure 3.3, by key, in the order of the thesis code's notebook.
SWEEPS = {s.key: s for s in (
    Sweep("zbox-gamma", "Composite zᴮ and LRP-γ", "gamma", "zᴮ on 0, γ on 1–n"),
    Sweep("zbox-epsilon", "Composite zᴮ and LRP-ε", "epsilon", "zᴮ on 0, ε on 1–n"),
    Sweep("composite-gamma", "Composite LRP-γ", "gamma", _tutorial_layers("gamma")),
    Sweep("composite-epsilon", "Composite LRP-ε", "epsilon", _tutorial_layers("epsilon")),
    Sweep("uniform-gamma", "Uniform LRP-γ", "gamma", "no rule on 0 (gradient), γ on 1–n"),
    Sweep("uniform-epsilon", "Uniform LRP-ε", "epsilon", "no rule on 0 (gradient), ε on 1–n"),
)}


def values(count: int = COUNT, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The sweep's values: 0, then ``count - 1`` values log-spaced from 1e-5 to 10 (both included).

    ``count=20`` (the default) gives the thesis's grid, 0, 1e-5, 2.15e-5, ..., 4.64, 10; fewer values
    cover the same range more coarsely (``count=3``, the least: 0, 1e-5, 10).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 3:
        raise ValueError(f"count must be an int >= 3 (0, 1e-5 and 10 at least), got {count!r}")
    logs = torch.logspace(torch.log10(torch.tensor(LOW)).item(), torch.log10(torch.tensor(HIGH)).item(), count - 1,
                          dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), logs]).to(dtype)


def sweep(key: Union[str, Sweep]) -> Sweep:
    """The :class:`Sweep` of ``key`` (a key of :data:`SWEEPS`, or a Sweep, returned as is)."""
    if isinstance(key, Sweep):
        return key
    if key not in SWEEPS:
        raise ValueError(f"unknown sweep {key!r}; choose one of {', '.join(map(repr, SWEEPS))}")
    return SWEEPS[key]


@dataclass
class SweepResult:
    """The result of :func:`run`: one heatmap per value, and the detector's report on each.

    Attributes
    ----------
    sweep : Sweep
    values : torch.Tensor
        ``[N]``, the swept values.
    heuristic : str
        The thesis code's stabilizer the sweep ran with.
    explanation : lrp.Explanation
        ``relevance`` ``[N, C, H, W]``, logits, targets and layer sums of every setting.
    report : diagnostics.InstabilityReport
        :func:`lrpkit.diagnostics.instability` of ``explanation``: a verdict per heatmap.
    """

    sweep: Sweep
    values: torch.Tensor
    heuristic: str
    explanation: lrp.Explanation
    report: diagnostics.InstabilityReport

    @property
    def relevance(self) -> torch.Tensor:
        """``[N, C, H, W]``, one heatmap per value."""
        return self.explanation.relevance

    def titles(self) -> list:
        """One tile title per value, e.g. ``"γ = 1e-05"`` (three significant digits)."""
        return [f"{self.sweep.symbol} = {v:.3g}" for v in self.values.tolist()]

    def flagged(self) -> list:
        """The values whose heatmap the detector flags as unstable."""
        return [v for v, bad in zip(self.values.tolist(), self.report.unstable.tolist()) if bad]

    def table(self):
        """A pandas DataFrame, one row per value: the value, Σ R / logit at the pixels, the verdict and
        the detector's reason."""
        import pandas as pd

        e = self.explanation
        logits = e.logits.gather(1, e.target[:, None])[:, 0].double()
        return pd.DataFrame({
            self.sweep.symbol: self.values.tolist(),
            "Σ R / logit": (e.layer_sums[0].double() / logits).tolist(),
            "unstable": self.report.unstable.tolist(),
            "reason": [r or "" for r in self.report.reasons],
        })


def run(model: torch.nn.Module, x: torch.Tensor, which: Union[str, Sweep], sweep_values: Optional[Sequence] = None, *,
        target: lrp.Target = None, heuristic: str = "zennit", chunk_size: int = 20) -> SweepResult:
    """Explain one image at every value of a sweep, in batched grid calls, and check every heatmap.

    Parameters
    ----------
    model : torch.nn.Module
        A torchvision VGG-16 (or its canonical ``nn.Sequential``) in eval mode.
    x : torch.Tensor
        One normalized image, ``[1, C, H, W]``, on the model's device and dtype.
    which : str or Sweep
        A key of :data:`SWEEPS` (e.g. ``"zbox-gamma"``).
    sweep_values : sequence of float or 1-D tensor, optional
        The values of the swept hyperparameter; default :func:`values` (the thesis's 20). Each must
        be a valid γ or ε (finite, non-negative).
    target : None, int or torch.Tensor
        The class to explain (as for :func:`lrpkit.lrp.explain`); None takes each setting's own
        argmax, which under the code's modified forward pass can differ between settings.
    heuristic : {"zennit", "shift"}
        The thesis code's stabilizer (:meth:`Sweep.composite`).
    chunk_size : int
        Settings per batched call (bounds memory: each setting holds its own activations above
        the first varied layer).

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        An unknown sweep or heuristic, ``x`` not one image, or no values.
    """
    chosen = sweep(which)
    if heuristic not in STABILIZERS:
        raise ValueError(f"unknown heuristic {heuristic!r} of the thesis code; choose one of "
                         f"{', '.join(map(repr, STABILIZERS))}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be one image [1, C, H, W], got {shape}; run one sweep per image")
    swept = values(dtype=x.dtype) if sweep_values is None else torch.as_tensor(sweep_values, dtype=x.dtype).flatten()
    if swept.numel() == 0:
        raise ValueError("sweep_values is empty; give at least one value (default: sweeps.values())")
    swept = swept.to(x.device)
    explanation = lrp.explain(model, x, target, chosen.composite(swept, heuristic), chunk_size=chunk_size)
    return SweepResult(chosen, swept.cpu(), heuristic, explanation, diagnostics.instability(explanation))
