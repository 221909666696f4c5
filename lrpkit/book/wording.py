"""Sentences that a page glues, worded from what its notebook measured.

Which heatmap the thesis code's shift (its early z + 1e-6) breaks, and where, depends on the weights and on the
float32 rounding of the machine (see :func:`lrpkit.provenance.machine`). A notebook therefore does
not assert such an outcome; it measures it, and these functions turn the measurement into the words
the page shows, so that a page stays true on any machine and with any weights. Each function
returns plain text for ``{glue:text}`` (no markup).
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["count", "listing", "broken_heatmap", "colour_limits", "explorer_embedding"]


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``count(1, "image")`` → "1 image", ``count(2, "image")`` → "2 images", no "image(s)"."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def listing(items: Sequence[str], empty: str = "none") -> str:
    """"a", "a and b", "a, b and c"; ``empty`` for no items."""
    items = [str(i) for i in items]
    if not items:
        return empty
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def broken_heatmap(report, b: int = 0, pixels: int | None = None) -> dict[str, str]:
    """Sentences about heatmap ``b`` of an :class:`~lrpkit.diagnostics.InstabilityReport`.

    ``breaks``: whether the code's shift breaks it and the detector flags it. ``conservation``: Σ R at the pixels
    over the logit and, where Σ R left the detector's band on the way down, the largest ratio and
    its layer (relevance created by a division and partly cancelled below it). ``patches``: the
    largest patch's share of |R| and (given the heatmap's ``pixels``) its area, or that there is none.
    """
    flagged = bool(report.unstable[b])
    out = {"breaks": ("the code's shift breaks this heatmap, and the detector flags it"
                      if flagged else "the code's shift leaves this heatmap whole, and the detector does not flag it")}
    ratios = report.ratios[:, b]
    pixel = float(ratios[0])
    largest = ratios.abs()
    top = int((largest == largest.max()).nonzero().max())   # the topmost layer where |Σ R| is largest
    text = f"The relevance that arrives at the pixels adds up to {pixel:.3g} times the logit it started from"
    if report.first_layer[b] is not None:
        name = report.layer_names[top] if report.layer_names else str(top)
        text += (f"; on the way down it reached {float(ratios[top]):.3g} times the logit at layer {name}: a "
                 "division created relevance there, and the layers below cancelled part of it")
    out["conservation"] = text + "."
    patches = report.patches[b]
    if patches:
        largest = patches[0]
        out["patches"] = (f"The largest of the {count(len(patches), 'patch', 'patches')} the detector finds "
                          f"holds {largest.share:.0%} of all |R|"
                          + (f" while covering {largest.size / pixels:.1%} of the image." if pixels else "."))
    else:
        out["patches"] = "The detector finds no patch in it."
    return out


def colour_limits(cubic_over_max: float, patch_area: float, quantile: float, quantile_in_patches: float,
                  concentration: float, concentration_max: float) -> str:
    """Why panel (c)'s three colour limits look as they do, from the measured numbers: each clause
    is said only when its number supports it."""
    clauses = []
    if 0.5 < cubic_over_max < 2:
        clauses.append("the code's cubic-mean limit is of the order of the largest |R|, so panels (c.i) and "
                       "(c.ii) look alike")
    else:
        clauses.append(f"the code's cubic-mean limit is {cubic_over_max:.0%} of the largest |R|, so panels "
                       "(c.i) and (c.ii) differ")
    if patch_area > 1 - quantile and quantile_in_patches > 0.9:
        clauses.append(f"the largest patch covers {patch_area:.1%} of the image, more than the "
                       f"{1 - quantile:.0%} above the {quantile:.0%} quantile, so the quantile clip lies inside the "
                       "patches and does not bring back the rest of the image")
    else:
        clauses.append(f"{quantile_in_patches:.0%} of the pixels at or above the {quantile:.0%} quantile lie in "
                       "the detector's patches")
    verdict = "below" if concentration < concentration_max else "above"
    clauses.append(f"max |R| over its {quantile:.0%} quantile is {concentration:.3g}, {verdict} the detector's "
                   f"limit of {concentration_max:g}")
    return "; ".join(clauses) + "."


def explorer_embedding(view, budget: int) -> str:
    """What a grid explorer (:func:`lrpkit.explorer.explorer`) embedded, from the explorer itself:
    "1.0 MB of heatmaps at 224 × 224 px, within the budget of 4 MB", or that they were shrunk."""
    height, width = view.side
    size = f"{view.image_bytes / 1e6:.1f} MB of heatmaps at {height} × {width} px"
    if view.shrunk:
        return f"{size}, shrunk from their computed size to fit the budget of {budget / 1e6:g} MB"
    return f"{size}, within the budget of {budget / 1e6:g} MB"

