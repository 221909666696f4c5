"""Pixel-Flipping (region perturbation) and the area under its curve.

Pixel-Flipping grades a heatmap by destroying the input in the order the heatmap ranks it and
watching the classifier's score fall (thesis §2.2, §3.3; Samek et al. 2017). Here the relevance map
is cut into ``p × p`` patches, each patch is scored by the sum of its relevance, the patches are
ordered (MoRF, LRF or random), and after step ``k`` of a schedule the first ``c_k`` patches of that
order are perturbed — always starting again from the original image, so regions perturbed earlier
are perturbed anew at every step (thesis §3.3). A last step turns the whole image gray. The curve of
the target's score over the steps is reduced to its area (AUC, trapezoid rule; thesis §2.3) and to
the AOPC of Samek et al.

Because step ``k`` is a function of the original image and the cumulative mask of step ``k`` alone,
all steps — of one heatmap and of many — are independent: they are built from the original,
inpainted in worker threads (:mod:`lrpkit.inpainting`) and scored in batched forward passes
without autograd, while the workers go on inpainting. Identical images are scored once: the
unperturbed image and the gray image are shared by all heatmaps of an image, and so is every step
whose mask two heatmaps share (all of them for the random order, which ignores the heatmap).

Where the thesis is silent, or its code has a defect, lrpkit's conventions are:

- inpainting (Telea) works on the input rounded — not truncated — to ``uint8`` and changes only
  the masked pixels; all other pixels keep their exact input values at every step. Masked pixels
  are blanked first, because OpenCV's Telea reads masked pixels on the image's outer ring;
- a step whose mask covers every patch is the gray image: nothing is left to inpaint from;
- gray is 0.5 in pixel units (the middle of [0, 1]) in every channel, unless ``gray_value`` says
  otherwise;
- ``mode="random"`` fills with uniform noise in [0, 1] pixel units, one noise image per distinct
  image, so a region keeps its noise from step to step;
- ``mode="road"`` is ROAD's noisy linear imputation (:mod:`lrpkit.imputation`, :mod:`lrpkit.road`):
  each flipped pixel the weighted mean of its neighbours, from the original image, plus Gaussian
  noise (``noise``, in the normalized input's units), one noise image per distinct image;
- the random order is one permutation per distinct image, drawn from ``(seed, image index)``;
- ties between patch scores keep the patches' row-major order (stable sort, on the CPU).

``thesis_compat`` reproduces what the thesis code (PyPI ``lrp-pf-auc`` 0.1.6) computes, defects
included, one switch per difference (:data:`THESIS_COMPAT`), so that its numbers can be regenerated
and the effect of every fix shown separately.

The package has one module per concept, each importing only those before it:
:mod:`~lrpkit.pf.patches` (the schedule, the patch scores and the orders), :mod:`~lrpkit.pf.curves`
(AUC and AOPC), :mod:`~lrpkit.pf.options` (every option, checked once), :mod:`~lrpkit.pf.rows` (the
distinct images and each row's order), :mod:`~lrpkit.pf.plan` (the distinct perturbed images and
which rows share them), :mod:`~lrpkit.pf.fills` (what the flipped patches are filled with, one
class per kind), :mod:`~lrpkit.pf.scoring` (the batched forward passes) and
:mod:`~lrpkit.pf.flipping` (:func:`pixel_flipping` itself). The names below are the public ones.

Example
-------
>>> from lrpkit import composites, lrp, pf
>>> R = lrp.relevance(model, x, 483, composites.tutorial())          # doctest: +SKIP
>>> res = pf.pixel_flipping(model, x, R, 483, order="morf")           # doctest: +SKIP
>>> res.scores.shape, res.flips_per_step[:4], res.auc                 # doctest: +SKIP
(torch.Size([1, 30]), [0, 1, 3, 5], tensor([...]))

The 16 heatmaps of a hyperparameter grid for one image: ``pf.pixel_flipping(model,
x.expand(16, -1, -1, -1), R16, 483)`` — the image's shared steps are scored once. Several orders in
one call take one order per row: ``order=["morf"] * 16 + ["lrf"] * 16 + ["random"]`` with the
heatmaps repeated to match; a perturbed image that two rows share (the same image and mask, whatever
the order) is then built and scored once, and the random order, which ignores the heatmap, costs one
heatmap's work per image.

References
----------
W. Samek, A. Binder, G. Montavon, S. Lapuschkin, K.-R. Müller, *Evaluating the visualization of
what a deep neural network has learned*, IEEE TNNLS 28(11):2660-2673 (2017).
S. Bach et al., *On pixel-wise explanations for non-linear classifier decisions by layer-wise
relevance propagation*, PLOS ONE 10(7):e0130140 (2015).
A. Telea, *An image inpainting technique based on the fast marching method*, J. Graphics Tools
9(1):23-34 (2004).
R. Bermudez Schettino, *In-Depth Hyperparameter Selection for Layer-Wise Relevance Propagation*,
master's thesis, TU Berlin (2022), §2.2-2.3, §3.3.
"""
from __future__ import annotations

from .curves import AUC_X, aopc, auc
from .flipping import PixelFlippingResult, count_images, pixel_flipping
from .options import MODES, SCORES, THESIS_COMPAT, PixelFlippingOptions
from .patches import ORDERS, SCHEDULES, flip_order, flip_schedule, patch_scores
from .plan import _plan  # noqa: F401  (tests plan without a model)

__all__ = [
    "pixel_flipping", "PixelFlippingResult", "PixelFlippingOptions", "count_images", "flip_schedule", "patch_scores",
    "flip_order", "auc", "aopc", "ORDERS", "MODES", "SCHEDULES", "SCORES", "AUC_X", "THESIS_COMPAT",
]
