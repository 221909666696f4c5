"""Automated checks of a heatmap's numerical stability (thesis §2.1.4).

The thesis shows heatmaps broken by the denominator of the LRP rules: relevance concentrated in
one round "patch" with everything else near zero (its Figures 2.3-2.5), and asks for automated
verification in the implementation. :func:`instability` checks an :func:`lrpkit.lrp.explain`
result, one verdict per heatmap, from three measurements:

conservation
    Σ R at the input of every layer over the target's logit (where relevance starts). A rule that
    divides by a pre-activation close to zero multiplies the relevance that passes it; the first
    layer, from the top, whose Σ R leaves :data:`CONSERVATION_BAND` is named. The band is measured
    in units of the output's size, ``max(|target logit|, max_c |logit_c|)``: the biases of a
    trained network add or absorb relevance on the scale of its outputs, not of the target's logit,
    which can be near 0 (or negative) for an image the network gets wrong.
concentration
    ``max |R|`` over the :data:`CONCENTRATION_QUANTILE` quantile of ``|R|``, and the share of
    ``Σ |R|`` held by the top :data:`TOP_FRACTION` of the pixels.
patches
    Connected regions of extreme ``|R|``, more than :data:`PATCH_LEVEL` times the heatmap's median
    (OpenCV's ``connectedComponentsWithStats``, 8-connected, joined across gaps of
    :data:`PATCH_GAP` pixels) whose sign alternates (``|Σ R| / Σ |R|`` over the region at most
    :data:`PATCH_BALANCE`), each with its size, box, share of ``Σ |R|`` and balance. A score built
    on the 99th percentile of ``|R|`` misses a patch that covers more than 1 % of the image; its
    share does not. The sign is what tells a patch from an object: a trained network's relevance
    sits on the object, with a background near zero, so the object's pixels exceed the median
    many thousand times too, but with one sign.

``R`` here is the heatmap as the thesis code plots it: the relevance summed over the colour
channels. A heatmap is ``unstable`` when Σ R leaves the band at some layer, or one patch holds
more than :data:`PATCH_SHARE` of ``Σ |R|``, or ``max |R|`` exceeds :data:`CONCENTRATION_MAX`
times the quantile; the report gives a one-line reason for each flagged heatmap.

The thresholds come from two sets of measurements (each constant gives its numbers):

- random VGG-16 weights (``scripts/measure_instability.py``): the castle and the 84 ImageNet
  samples under the thesis code's early "vanilla" (Fig. 2.3's rule map, unsigned ``z + 1e-6``),
  which breaks 60 of the 85 heatmaps (52 on a CPU whose convolution kernels round differently:
  which heatmaps break turns on float32 rounding), and 595 stabilized heatmaps (lrpkit's three
  heuristics with LRP-Tutorial and with Fig. 2.3's map, and the thesis code's zennit stabilizer),
  none of which it flags (the same sets, before and after the trained network's measurements moved
  the conservation band and added :data:`PATCH_BALANCE`);
- a trained network (``scripts/measure_instability_trained.py``): VGG-16's layout trained on
  lrpkit's ground-truth task (64 px, 6 shapes, batch norm folded into the biases), 500 test
  images, target the true class. No stabilized heatmap is flagged (LRP-Tutorial with the tutorial,
  vanilla and zennit heuristics, Decreasing-γ, the thesis code's zennit stabilizer: 3,000
  heatmaps). Under the code's shift (``thesis_code_tutorial(0.25, 0.25, "shift")``) 30 of the 500
  heatmaps are broken (differing from the zennit stabilizer's by more than its ``max |R|``); 29
  are flagged (22 by conservation, the others by a patch or by concentration), and no other. LRP-0,
  which has no stabilizer, is flagged on 3 (its Σ R reaches 4.4 × the output's size); the code's
  zennit stabilizer with Fig. 2.3's map (LRP-0 in the convolutions) on 11, by a patch.

Trained weights give sparser heatmaps than random ones: ``max |R| / median |R|`` up to 5.6e4
(a median pixel is background), an object holding most of ``Σ |R|``, and a Σ R that can change
sign on the way down (down to -1.6 × the output's size). An earlier version flagged any sign
change and any region above :data:`PATCH_LEVEL` regardless of its sign; on the trained network it
flagged 57-74 of 100 stabilized heatmaps.

:func:`culprits` names the mechanism: the neurons whose division by a pre-activation within about
1e-6 of zero sends down far more relevance than their layer holds, with the pre-activation, the
thesis code's forward factor ``z / stabilize(z)`` and the receptive field
(:func:`receptive_field`) that the patch fills.

References
----------
R. Bermudez Schettino, *In-Depth Hyperparameter Selection for Layer-Wise Relevance
Propagation*, TU Berlin (2022), §2.1.4-2.1.5, Figures 2.3-2.5.
G. Montavon et al., *Layer-Wise Relevance Propagation: An Overview*, LNCS 11700 (2019)
(conservation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch

from . import canonical, lrp
from .composites import Composite
from .heuristics import stabilize

__all__ = [
    "CONSERVATION_BAND", "CONCENTRATION_QUANTILE", "CONCENTRATION_MAX", "TOP_FRACTION", "PATCH_LEVEL", "PATCH_GAP",
    "PATCH_SHARE", "PATCH_BALANCE", "Patch", "InstabilityReport", "instability", "Culprit", "culprits", "receptive_field",
]

#: Σ R at the input of every layer, over the output's size ``max(|target logit|, max_c |logit_c|)``,
#: allowed: ``low < Σ R / size <= high`` (:attr:`InstabilityReport.ratios` stays Σ R over the target's
#: logit). Measured, random VGG-16 (85 images, no biases): every stabilized heatmap keeps its ratios within
#: 0.0003-1 (the rules only absorb relevance); the thesis code's early vanilla leaves ±3 on 51 of the 52
#: heatmaps it breaks on a CPU that rounds differently from the 60-of-85 run (the others are caught by a patch or by concentration; the one closest
#: to the band, -4.0, has no other sign). Trained network (500 test images): the stabilized heatmaps stay
#: within -1.59 and 1.93 (Decreasing-γ; LRP-Tutorial -0.56 to 1.12, the code's zennit stabilizer -0.40 to
#: 1.14). Over the target's logit they reach -6.35 and 45.9, where the true class's logit is 0.44 or -0.05
#: (a misclassified image): hence the output's size as the unit. The code's shift breaks 30 of the
#: heatmaps; 22 leave the band (down to -1.45e4 or up to 170 × the output's size; 71 and 96 of the test
#: images at -395 and -1.45e4). LRP-0 (no stabilizer) reaches -2.85 and 4.44 (3 heatmaps flagged).
#: A sign change alone is no sign of breakage where biases add relevance.
CONSERVATION_BAND = (-3.0, 3.0)
#: The quantile of ``|R|`` that ``max |R|`` is compared with (:attr:`InstabilityReport.concentration`).
CONCENTRATION_QUANTILE = 0.99
#: A heatmap whose ``max |R|`` exceeds this multiple of its :data:`CONCENTRATION_QUANTILE` quantile is
#: flagged. Measured: at most 5.5 over the 595 stabilized heatmaps; the early vanilla's broken
#: heatmaps range from 2.3 to 23 (a patch larger than 1 % of the image holds the quantile itself),
#: so this alone misses most of them and catches the one whose damage is a single spot. Trained network:
#: at most 5.1 over its 3,000 stabilized heatmaps; 9 of the 30 its code's shift breaks exceed 10.
CONCENTRATION_MAX = 10.0
#: The fraction of the pixels whose share of ``Σ |R|`` is reported (:attr:`InstabilityReport.top_share`;
#: at most 0.047 for the stabilized heatmaps, 0.026-0.23 for the broken ones: reported, not a criterion).
TOP_FRACTION = 0.001
#: A pixel is extreme where ``|R|`` exceeds this multiple of the heatmap's median ``|R|``. Measured:
#: ``max |R| / median |R|`` is at most 625 over the 595 stabilized heatmaps of random weights (so none has
#: an extreme pixel) and 135 to 1.1e8 over the broken ones, all but one above 3,500. It does not hold for
#: trained weights, whose median pixel is background: stabilized heatmaps reach 5.6e4 (LRP-Tutorial 2.1e4,
#: Decreasing-γ 5.6e4), so their objects are "extreme"; :data:`PATCH_BALANCE` tells them from patches.
PATCH_LEVEL = 1000.0
#: Extreme pixels closer than this many pixels join one patch (the sign of ``R`` alternates inside a
#: patch, leaving gaps of small ``|R|``).
PATCH_GAP = 4
#: A heatmap is flagged when one patch holds more than this share of its ``Σ |R|``. Measured: 59 of
#: the 60 broken heatmaps have a patch holding 25 % or more (median 99 %); no stabilized heatmap of random
#: weights has a patch at all.
PATCH_SHARE = 0.25
#: A region of extreme ``|R|`` is a patch only where its sign alternates: ``|Σ R| / Σ |R|`` over the region
#: at most this. Measured: the regions holding more than :data:`PATCH_SHARE` of the early vanilla's broken
#: random-weight heatmaps have 0.002-0.51 (median 0.16; the 5 above 0.35 also leave the conservation band);
#: the objects of the trained network's stabilized heatmaps 0.42-1.0 (median 0.94; LRP-Tutorial with the
#: vanilla heuristic 0.42, Decreasing-γ 0.89 or more); the code's shift on the trained network makes regions
#: down to 0.035 (test image 33: 0.22, its only sign). Fig. 2.3's map with LRP-0 in the convolutions gives
#: trained objects of 0.04-0.41, 11 of 500 of them flagged.
PATCH_BALANCE = 0.35


@dataclass(frozen=True)
class Patch:
    """A connected region of extreme ``|R|`` in one heatmap.

    Attributes
    ----------
    size : int
        Pixels in the region (its extreme pixels and the gaps that join them).
    share : float
        Its share of the heatmap's ``Σ |R|``.
    box : tuple of int
        ``(top, left, bottom, right)``, inclusive pixel coordinates.
    balance : float
        ``|Σ R| / Σ |R|`` over the region: near 0 where the sign alternates, as in an instability
        patch; a region above :data:`PATCH_BALANCE` is not reported.
    """

    size: int
    share: float
    box: tuple
    balance: float = math.nan


@dataclass
class InstabilityReport:
    """The result of :func:`instability`, one entry per heatmap.

    Attributes
    ----------
    unstable : torch.Tensor
        ``[B]`` bool: the heatmap fails a check.
    reasons : list of str or None
        One line per flagged heatmap saying why (None for the others).
    ratios : torch.Tensor or None
        ``[L + 1, B]`` float64: Σ R at the input of every layer over the target's logit (the last
        row is 1); None when the input had no layer sums.
    first_layer : list of int or None
        The first layer, from the top, at whose input the ratio leaves :data:`CONSERVATION_BAND`
        (None where it never does or was not checked).
    concentration : torch.Tensor
        ``[B]`` float64: ``max |R|`` over the :data:`CONCENTRATION_QUANTILE` quantile of ``|R|``.
    top_share : torch.Tensor
        ``[B]`` float64: share of ``Σ |R|`` held by the top :data:`TOP_FRACTION` of the pixels.
    peak : torch.Tensor
        ``[B]`` float64: ``max |R|`` over the median ``|R|`` (a patch needs pixels above
        :data:`PATCH_LEVEL` times the median).
    patches : list of list of Patch
        Per heatmap, its regions of extreme ``|R|``, largest share first.
    unchecked : list of str
        What could not be checked, one line each (e.g. conservation without layer sums).
    layer_names : list of str or None
        ``"index (name, rule)"`` of every layer, when known.
    """

    unstable: torch.Tensor
    reasons: list
    ratios: Optional[torch.Tensor]
    first_layer: list
    concentration: torch.Tensor
    top_share: torch.Tensor
    peak: torch.Tensor
    patches: list
    unchecked: list
    layer_names: Optional[list] = None

    def __len__(self) -> int:
        return len(self.reasons)

    def verdict(self, sample: int) -> str:
        """One line: ``"stable"`` or ``"unstable: <reason>"``."""
        return f"unstable: {self.reasons[sample]}" if self.unstable[sample] else "stable"

    def table(self):
        """A pandas DataFrame, one row per heatmap: verdict, first layer out of the band, smallest and
        largest ratio, concentration, top share, largest patch (size, share) and reason."""
        import pandas as pd

        rows = []
        for b in range(len(self)):
            ratios = self.ratios[:, b] if self.ratios is not None else None
            largest = self.patches[b][0] if self.patches[b] else None
            rows.append({
                "unstable": bool(self.unstable[b]),
                "first layer": self.first_layer[b],
                "min ratio": float(ratios.min()) if ratios is not None else math.nan,
                "max ratio": float(ratios.max()) if ratios is not None else math.nan,
                "concentration": float(self.concentration[b]),
                "top share": float(self.top_share[b]),
                "peak / median": float(self.peak[b]),
                "patch size": largest.size if largest else 0,
                "patch share": largest.share if largest else 0.0,
                "reason": self.reasons[b] or "",
            })
        return pd.DataFrame(rows)


def instability(explanation: Union[lrp.Explanation, torch.Tensor]) -> InstabilityReport:
    """Check each heatmap of an LRP result for numerical instability.

    Parameters
    ----------
    explanation : lrp.Explanation or torch.Tensor
        An :func:`lrpkit.lrp.explain` result (a batch of images or a whole grid of settings), or a
        bare relevance ``[B, C, H, W]`` (or ``[B, H, W]``). Without layer sums the conservation
        check is skipped and :attr:`InstabilityReport.unchecked` says so.

    Returns
    -------
    InstabilityReport

    Raises
    ------
    TypeError
        Not an Explanation or a tensor.
    ValueError
        An empty batch, or a tensor of another shape.

    Notes
    -----
    A heatmap holding NaN or Inf is flagged unstable with the count of such pixels as its reason;
    its other measurements are NaN. A heatmap with a logit of exactly 0 has no conservation ratio
    (NaN), which :attr:`InstabilityReport.unchecked` reports.
    """
    relevance, sums, names, logits = _unpack(explanation)
    batch = relevance.shape[0]
    heat = (relevance.sum(1) if relevance.dim() == 4 else relevance).detach().to("cpu", torch.float64)
    finite = torch.isfinite(heat).flatten(1).all(1)
    unchecked = []
    ratios, first = None, [None] * batch
    if sums is None:
        unchecked.append("conservation: no layer sums (pass an lrp.explain result, not a bare relevance)")
    else:
        ratios, first, zero_logit, scaled = _conservation(sums, logits)
        if zero_logit:
            unchecked.append(f"conservation: the logit is 0 for heatmap{'s' if len(zero_logit) > 1 else ''} "
                             f"{', '.join(map(str, zero_logit))}: no ratio")
    magnitude = heat.abs().flatten(1)
    concentration, top_share, peak = (torch.full((batch,), math.nan, dtype=torch.float64) for _ in range(3))
    patches, reasons = [], []
    for b in range(batch):
        if not finite[b]:
            patches.append([])
            reasons.append(f"relevance is not finite ({int((~torch.isfinite(heat[b])).sum())} pixels NaN or Inf)")
            continue
        concentration[b], top_share[b] = _concentration(magnitude[b])
        scale = _typical(magnitude[b])
        peak[b] = magnitude[b].max() / scale
        patches.append(_patches(heat[b].numpy(), scale))
        reasons.append(_reason(first[b], ratios[:, b] if ratios is not None else None,
                               scaled[:, b] if ratios is not None else None, names, patches[b],
                               float(concentration[b])))
    unstable = torch.tensor([r is not None for r in reasons], dtype=torch.bool)
    return InstabilityReport(unstable, reasons, ratios, first, concentration, top_share, peak, patches, unchecked,
                             names)


def _unpack(explanation):
    """(relevance, layer sums or None, layer names or None) of an Explanation or a bare tensor."""
    if isinstance(explanation, lrp.Explanation):
        relevance, sums, logits = explanation.relevance, explanation.layer_sums, explanation.logits
        composite = explanation.composite
        names = [f"{l.index} ({l.name}{', ' + composite.rule(l.index).label if l.is_linear else ''})"
                 for l in explanation.layers]
    elif isinstance(explanation, torch.Tensor):
        relevance, sums, names, logits = explanation, None, None, None
    else:
        raise TypeError(f"explanation must be an lrp.Explanation or a relevance tensor, got {type(explanation).__name__}")
    if relevance.dim() not in (3, 4):
        raise ValueError(f"relevance must be [B, C, H, W] or [B, H, W], got shape {tuple(relevance.shape)}")
    if relevance.shape[0] == 0:
        raise ValueError("relevance holds no heatmap (batch size 0); explain at least one image")
    return relevance, sums, names, logits


def _output_scale(sums, logits):
    """``[B]`` float64: the size of the network's output, ``max(|target logit|, max_c |logit_c|)``,
    which :data:`CONSERVATION_BAND` is measured in."""
    scale = sums[-1].detach().to("cpu", torch.float64).abs()
    if logits is not None and logits.dim() == 2 and logits.shape[0] == scale.shape[0] and logits.shape[1]:
        scale = torch.maximum(scale, logits.detach().to("cpu", torch.float64).abs().amax(1))
    return scale


def _conservation(sums, logits=None):
    """Ratios ``[L + 1, B]`` (Σ R over the target's logit), the first layer from the top whose Σ R
    leaves :data:`CONSERVATION_BAND` (in units of the output's size, :func:`_output_scale`) per
    sample, the samples whose logit is 0, and Σ R over the output's size ``[L + 1, B]``."""
    sums = sums.detach().to("cpu", torch.float64)
    logit = sums[-1]
    ratios = sums / torch.where(logit == 0, torch.nan, logit)
    scale = _output_scale(sums, logits)
    low, high = CONSERVATION_BAND
    scaled = sums / torch.where(scale == 0, torch.nan, scale)
    outside = ~((scaled > low) & (scaled <= high))  # NaN is outside
    first = []
    for b in range(sums.shape[1]):
        rows = outside[:, b].nonzero().squeeze(1)
        first.append(int(rows.max()) if len(rows) and logit[b] != 0 else None)
    return ratios, first, [b for b in range(sums.shape[1]) if logit[b] == 0], scaled


def _concentration(magnitude):
    """``max |R| / quantile(|R|)`` and the share of ``Σ |R|`` in the top pixels, for one heatmap."""
    total = magnitude.sum()
    if total == 0:
        return math.nan, math.nan
    q = torch.quantile(magnitude, CONCENTRATION_QUANTILE)
    k = max(1, math.ceil(TOP_FRACTION * magnitude.numel()))
    return float(magnitude.max() / q) if q > 0 else math.inf, float(magnitude.topk(k).values.sum() / total)


def _typical(magnitude: torch.Tensor) -> float:
    """The median of one heatmap's ``|R|`` (the mean of its non-zero values where the median is 0)."""
    median = float(magnitude.median())
    if median == 0 and (magnitude > 0).any():
        return float(magnitude[magnitude > 0].mean())
    return median


def _patches(heat: np.ndarray, scale: float) -> list:
    """The regions of one heatmap's ``|R|`` above :data:`PATCH_LEVEL` times ``scale`` (its typical
    value), joined across gaps of :data:`PATCH_GAP` pixels (OpenCV's connected components,
    8-connected), whose sign alternates (:data:`PATCH_BALANCE`), largest share first."""
    import cv2

    magnitude = np.abs(heat)
    total = magnitude.sum()
    if total == 0:
        return []
    mask = (magnitude >= PATCH_LEVEL * scale).astype(np.uint8)
    if not mask.any():
        return []
    if PATCH_GAP:
        mask = cv2.dilate(mask, np.ones((2 * PATCH_GAP + 1,) * 2, np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    held = np.bincount(labels.ravel(), weights=magnitude.ravel(), minlength=count)
    net = np.abs(np.bincount(labels.ravel(), weights=heat.ravel(), minlength=count))
    patches = [Patch(int(stats[i, cv2.CC_STAT_AREA]), float(held[i] / total),
                     (int(stats[i, cv2.CC_STAT_TOP]), int(stats[i, cv2.CC_STAT_LEFT]),
                      int(stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT] - 1),
                      int(stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH] - 1)),
                     float(net[i] / held[i]))
               for i in range(1, count) if net[i] <= PATCH_BALANCE * held[i]]
    return sorted(patches, key=lambda p: -p.share)


def _reason(first, ratios, scaled, names, patches, concentration) -> Optional[str]:
    """The one-line reason a heatmap is unstable, or None."""
    found = []
    if first is not None:
        where = names[first] if names else str(first)
        ratio = float(ratios[first])
        found.append(f"Σ R leaves the band at layer {where}: {ratio:.3g} × the logit "
                     f"({float(scaled[first]):.3g} × the output size, band "
                     f"{CONSERVATION_BAND[0]:g} < Σ R / size <= {CONSERVATION_BAND[1]:g})")
    if patches and patches[0].share > PATCH_SHARE:
        top, left, bottom, right = patches[0].box
        found.append(f"one patch holds {patches[0].share:.0%} of |R| ({patches[0].size} pixels, rows "
                     f"{top}-{bottom}, columns {left}-{right}, |Σ R| / Σ |R| {patches[0].balance:.2f})")
    if concentration > CONCENTRATION_MAX:
        found.append(f"max |R| is {concentration:.3g} × its {CONCENTRATION_QUANTILE:.0%} quantile "
                     f"(limit {CONCENTRATION_MAX:g})")
    return "; ".join(found) if found else None


@dataclass(frozen=True)
class Culprit:
    """A neuron whose rule divides its relevance by a pre-activation close to zero.

    Attributes
    ----------
    layer : int
        Layer index (lrpkit's, the tutorial's).
    name : str
        The layer's module name, e.g. ``"features.19"``.
    rule : str
        The rule's label.
    unit : tuple of int
        ``(channel, row, column)`` in the layer's output (``(unit,)`` for a dense layer).
    preactivation : float
        The layer's output ``W a + b`` at the neuron (its pre-activation).
    z : float
        The rule's pre-activation, its denominator without a stabilizer (``ε + W a + b`` for LRP-ε).
    factor : float or None
        Under a composite's rule-modified ``forward``: ``z / stabilize(z)``, what the thesis code's
        forward pass multiplies the neuron's output by (negative: the sign flips, and a negative
        pre-activation passes the ReLU). Else None.
    relevance : float
        Relevance at the neuron's output, ``R_k``.
    sent : float
        The sum of what it sends to the layer's input, ``R_k (z_k - c_k) / z_k`` with ``c_k`` the
        rule's pre-activation of a zero input (bias and ε): in an ε layer close to ``R_k ε / z_k``.
    spread : float
        The sum of the absolute values it sends, ``|R_k| Σ_j |a_j ρ(w_jk)| / |z_k|``: where ``sent``
        stays ``R_k`` (LRP-0, γ), parts of both signs that cancel.
    gain : float
        ``spread`` over the largest ``|R|`` of any neuron of the layer's output: 4-60 for every
        layer of a stabilized heatmap (random VGG-16); 100 to 1e7 for the neuron behind a patch.
    box : tuple of int
        Its receptive field in input pixels, ``(top, left, bottom, right)`` inclusive.
    """

    layer: int
    name: str
    rule: str
    unit: tuple
    preactivation: float
    z: float
    factor: Optional[float]
    relevance: float
    sent: float
    spread: float
    gain: float
    box: tuple


def culprits(model: torch.nn.Module, x: torch.Tensor, composite: Composite, target: lrp.Target = None, *,
             count: int = 3) -> list:
    """The neurons that make a heatmap unstable: the largest gains of relevance in one division.

    A rule sends a neuron's relevance ``R_k`` down in parts ``a_j ρ(w_jk) / z_k · R_k``. Where
    ``z_k`` lies within about 1e-6 of zero, the parts are huge: in an LRP-ε layer their sum
    ``R_k (z_k - ε) / z_k`` multiplies the relevance (conservation fails there); in an LRP-0 or γ
    layer the sum stays ``R_k`` while the parts, of both signs, do not (a small spot of extreme
    relevance). Under the thesis code's unsigned stabilizer such a neuron also passes its ReLU: its
    forward factor ``z / (z + 1e-6)`` is negative. Its receptive field is where the patch appears.

    The neurons are ranked by :attr:`Culprit.gain`, for every convolution and dense layer above
    the pixel layer (z^B's ``z`` is a sum of non-negative terms), with division by the exact ``z``
    (as the thesis code and lrpkit's ``"vanilla"`` divide; stabilizing heuristics divide by more).

    Parameters
    ----------
    model : torch.nn.Module
        As for :func:`lrpkit.lrp.explain`.
    x : torch.Tensor
        One normalized image, ``[1, C, H, W]``.
    composite : Composite
        With scalar hyperparameters.
    target : None, int or torch.Tensor
        As for :func:`lrpkit.lrp.explain`.
    count : int
        How many neurons to return.

    Returns
    -------
    list of Culprit
        Largest gain first.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    if isinstance(x, torch.Tensor) and (x.dim() != 4 or x.shape[0] != 1):
        raise ValueError(f"x must be one image [1, C, H, W], got shape {tuple(x.shape)}")
    if not isinstance(composite, Composite) or composite.batch_size is not None:
        raise ValueError("composite must be an lrpkit Composite with one value per hyperparameter (not a grid)")
    explanation = lrp.explain(model, x, target, composite, keep_layers=True)
    forward = lrp.forward_pass(model, x, composite)
    found = []
    with torch.no_grad():
        for layer in explanation.layers:
            if layer.is_linear and layer.index > 0:
                found.extend(_layer_culprits(layer, composite, forward, explanation, x.shape[-2:], count))
    return sorted(found, key=lambda c: -c.gain)[:count]


def _layer_culprits(layer, composite, forward, explanation, size, count):
    a = forward.activations[layer.index]
    out = forward.outputs.get(layer.index, forward.activations[layer.index + 1]).contiguous()
    rule = composite.rule(layer.index)
    if len(rule.parts()) > 1:
        raise ValueError(f"culprits: layer {layer.index} has {rule.label} ({rule.hyperparameters()}), which sums "
                         f"{len(rule.parts())} modified passes with their own denominators; the culprit search reads "
                         "rules with one denominator")
    z = forward.preactivations.get(layer.index)
    if z is None:  # the model's own forward pass
        z = rule.preactivation(layer, a, out)
    zero = torch.zeros_like(a[:1])
    constant = rule.preactivation(layer, zero, layer.forward(zero))  # bias (ρ(b)) and ε
    if z is None:  # no rule: the layer's own gradient
        z, constant = out, layer.forward(zero)
    z = z.contiguous()
    weight = rule.rho(layer.weight, layer.bias)[0]
    R = explanation.layer_relevance[layer.index + 1].contiguous()
    largest = float(R.abs().max())
    if largest == 0:
        return []
    sent = torch.nan_to_num(R * (z - constant) / z, nan=0.0, posinf=0.0, neginf=0.0)
    spread = torch.nan_to_num(R.abs() * layer.affine(a, weight.abs(), None).contiguous() / z.abs(),
                              nan=0.0, posinf=0.0, neginf=0.0)
    factor = z / stabilize(z, composite.forward) if composite.forward else None
    found = []
    for k in spread.flatten().topk(min(count, spread.numel())).indices.tolist():
        unit = tuple(int(v) for v in np.unravel_index(k, spread.shape[1:]))
        box = receptive_field(explanation.layers, layer.index, unit[1:], size) if len(unit) == 3 else (
            0, 0, size[0] - 1, size[1] - 1)
        found.append(Culprit(layer.index, layer.name, rule.label, unit, float(out.flatten()[k]), float(z.flatten()[k]),
                             None if factor is None else float(factor.flatten()[k]), float(R.flatten()[k]),
                             float(sent.flatten()[k]), float(spread.flatten()[k]), float(spread.flatten()[k]) / largest,
                             box))
    return found


def receptive_field(layers: Sequence[canonical.Layer], index: int, position: Sequence[int],
                    size: Sequence[int]) -> tuple:
    """The input pixels that a unit in the output of a convolution or pooling layer sees.

    Parameters
    ----------
    layers : list of Layer
        The canonical layer list (:func:`lrpkit.canonical.layers`).
    index : int
        The layer whose output holds the unit.
    position : (int, int)
        The unit's row and column in that output.
    size : (int, int)
        Height and width of the input image.

    Returns
    -------
    tuple of int
        ``(top, left, bottom, right)``, inclusive, clipped to the image.
    """
    (top, bottom), (left, right) = (position[0], position[0]), (position[1], position[1])
    for layer in reversed(list(layers[:index + 1])):
        if layer.kind not in ("conv", "maxpool"):
            continue
        opts = layer.options
        kernel = canonical._pair(layer.weight.shape[2:] if layer.kind == "conv" else opts["kernel_size"])
        stride = canonical._pair(opts["stride"] or opts.get("kernel_size"))
        padding = canonical._pair(opts["padding"])
        dilation = canonical._pair(opts.get("dilation", 1))
        top, bottom = top * stride[0] - padding[0], bottom * stride[0] - padding[0] + dilation[0] * (kernel[0] - 1)
        left, right = left * stride[1] - padding[1], right * stride[1] - padding[1] + dilation[1] * (kernel[1] - 1)
    return max(top, 0), max(left, 0), min(bottom, size[0] - 1), min(right, size[1] - 1)
