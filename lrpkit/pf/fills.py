"""The fills of Pixel-Flipping: what the flipped patches of a step are filled with.

A plan (:mod:`lrpkit.pf.plan`) fills all its perturbed steps in one way, its *kind*. Each kind is
one class here, chosen from :data:`_FILLS` by the plan's kind, and all have the same methods:
:meth:`_Fill.build` (the image of a key, through the kind's own :meth:`_Fill.filled`) and
:meth:`_Fill.job` (the arguments of an inpainting job; only the kinds that inpaint have jobs):

- ``inpainting`` (:class:`_InpaintingFill`): Telea on the input rounded to ``uint8``, each mask
  from the original image, in worker jobs; only the flipped pixels change;
- ``imputation`` (:class:`_ImputationFill`): ROAD's linear imputation (:mod:`lrpkit.imputation`)
  from the original image, in worker jobs, plus one Gaussian noise image per distinct image;
- ``chain`` (:class:`_ChainFill`): the thesis code's chained inpainting (``truncation``), whose
  output replaces the whole image;
- ``noise`` (:class:`_NoiseFill`): uniform noise in [0, 1] pixel units, one noise image per
  distinct image, so a region keeps its noise from step to step;
- ``constant`` (:class:`_ConstantFill`): the gray image;
- ``scalar`` (:class:`_ScalarFill`): the thesis code's random values, one per row and step.

What every kind starts from — the rows' images, their normalization, the gray image and the
plan's masks — is one :class:`_Canvas`. The thesis code's arithmetic (``thesis_compat``) is at the
end of the module.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np
import torch

from .. import imputation, inpainting
from .options import PixelFlippingOptions
from .plan import _Key, _Plan, _Recipe

#: The result of an inpainting job, by the job's index: ``[n, H, W, C]`` uint8 images.
_JobResult = Callable[[int], np.ndarray]


class _Canvas:
    """What every fill starts from: the rows' images on the CPU (``xc``, float32 or float64), their
    normalization, the gray image, and the plan whose masks say where to fill."""

    def __init__(self, xc: torch.Tensor, plan: _Plan, options: PixelFlippingOptions):
        self.xc, self.plan, self.patch_size = xc, plan, options.patch_size
        self.height, self.width = xc.shape[2:]
        self.mean_t = torch.tensor(options.mean, dtype=xc.dtype).view(-1, 1, 1)
        self.std_t = torch.tensor(options.std, dtype=xc.dtype).view(-1, 1, 1)
        self.gray = self._gray(options)

    def _gray(self, options: PixelFlippingOptions) -> torch.Tensor:
        """``[C, H, W]``: ``gray_value`` normalized, or the thesis code's ``batch_gray``."""
        channels, work = self.xc.shape[1], self.xc.dtype
        if "batch_gray" in options.features:
            midpoint = (float(self.xc.min()) + float(self.xc.max())) / 2
            return torch.full((channels, self.height, self.width), midpoint, dtype=work)
        gray = self.normalized(torch.tensor(options.gray_value, dtype=work).view(-1, 1, 1))
        return gray.expand(channels, self.height, self.width).contiguous()

    def normalized(self, pixels: torch.Tensor) -> torch.Tensor:
        """Values in pixel units [0, 1] normalized like the input."""
        return (pixels - self.mean_t) / self.std_t

    def masked(self, recipe: _Recipe, fill: torch.Tensor) -> torch.Tensor:
        """The image of the recipe's row with ``fill`` in the patches flipped at its step."""
        mask = torch.from_numpy(inpainting.patch_mask_to_pixels(self.plan.patch_masks[recipe.row, recipe.step],
                                                                self.patch_size, self.height, self.width))
        return torch.where(mask, fill, self.xc[recipe.row])


class _Fill:
    """A fill kind: builds the images of a plan's keys. The originals and the gray image are the same
    for every kind; each kind gives :meth:`filled`, the images of its perturbed steps, and the kinds
    that inpaint give :meth:`job`. Every kind is made from the canvas, the rows' ranks and the
    options, and keeps what it needs of them."""

    def __init__(self, canvas: _Canvas, rank_grid: np.ndarray, options: PixelFlippingOptions):
        self.canvas = canvas

    def build(self, key: _Key, result: _JobResult) -> torch.Tensor:
        """The image of ``key``; ``result(job)`` is the output of an inpainting job."""
        recipe = self.canvas.plan.recipe[key]
        if recipe.kind == "original":
            return self.canvas.xc[recipe.row]
        if recipe.kind == "gray":
            return self.canvas.gray
        return self.filled(key, recipe, result)

    def filled(self, key: _Key, recipe: _Recipe, result: _JobResult) -> torch.Tensor:
        """The image of a perturbed step."""
        raise NotImplementedError

    def job(self, index: int) -> tuple:
        """``(function, *arguments)`` of the plan's inpainting job ``index``, for the workers."""
        raise NotImplementedError(f"the {self.canvas.plan.kind!r} fill has no inpainting jobs")


class _InpaintingFill(_Fill):
    """Telea inpainting from the original image, rounded (not truncated) to uint8; the flipped pixels
    take the inpainted values, all others keep the input's."""

    def __init__(self, canvas: _Canvas, rank_grid: np.ndarray, options: PixelFlippingOptions):
        super().__init__(canvas, rank_grid, options)
        self.radius = options.radius
        self._pixels: Dict[int, np.ndarray] = {}        # uint8 pixels of each distinct image, once

    def job(self, index: int) -> tuple:
        plan = self.canvas.plan
        produced = plan.jobs[index]
        masks = np.stack([plan.patch_masks[plan.recipe[key].row, plan.recipe[key].step] for key in produced])
        return (inpainting.inpaint_patch_masks, self._u8(plan.image_of(produced[0])), masks, self.canvas.patch_size,
                self.radius)

    def filled(self, key: _Key, recipe: _Recipe, result: _JobResult) -> torch.Tensor:
        out = _inpainted(self.canvas.plan, key, result)
        return self.canvas.masked(recipe, _normalize_u8(out, self.canvas.mean_t, self.canvas.std_t))

    def _u8(self, image: int) -> np.ndarray:
        """The image as uint8 HWC pixels, rounded (not truncated) from the normalized input."""
        if image not in self._pixels:
            canvas = self.canvas
            pixels = (canvas.xc[canvas.plan.first_row[image]] * canvas.std_t + canvas.mean_t).double() * 255
            self._pixels[image] = pixels.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        return self._pixels[image]


class _ImputationFill(_Fill):
    """ROAD's noisy linear imputation (Rong et al. 2022): each mask's pixels imputed from the
    original image by one sparse solve (:func:`lrpkit.imputation.impute_patch_masks`, in float64),
    plus Gaussian noise of standard deviation ``noise`` (in the units of the normalized input, as
    ROAD's and Quantus's code add it) drawn once per distinct image from ``(seed, 2, image)``: a
    pixel removed at several steps keeps its noise, and rows that share a mask share its image."""

    def __init__(self, canvas: _Canvas, rank_grid: np.ndarray, options: PixelFlippingOptions):
        super().__init__(canvas, rank_grid, options)
        shape, work = tuple(canvas.xc.shape[1:]), canvas.xc.dtype
        self.noise: Dict[int, torch.Tensor] = {}
        for image in canvas.plan.first_row:
            draw = np.random.default_rng([options.seed, 2, image]).standard_normal(shape) * options.noise
            self.noise[image] = torch.from_numpy(draw).to(work)

    def job(self, index: int) -> tuple:
        plan = self.canvas.plan
        produced = plan.jobs[index]
        masks = np.stack([plan.patch_masks[plan.recipe[key].row, plan.recipe[key].step] for key in produced])
        start = self.canvas.xc[plan.first_row[plan.image_of(produced[0])]].double().numpy()
        return imputation.impute_patch_masks, start, masks, self.canvas.patch_size

    def filled(self, key: _Key, recipe: _Recipe, result: _JobResult) -> torch.Tensor:
        slot = self.canvas.plan.job_of_key[key]
        imputed = torch.from_numpy(result(slot.job)[slot.index]).to(self.canvas.xc.dtype)
        return self.canvas.masked(recipe, imputed + self.noise[self.canvas.plan.image_of(key)])


class _ChainFill(_Fill):
    """The thesis code's chained inpainting (``truncation``): each step re-inpaints the previous
    step's output, truncated to uint8, and replaces the whole image."""

    def __init__(self, canvas: _Canvas, rank_grid: np.ndarray, options: PixelFlippingOptions):
        super().__init__(canvas, rank_grid, options)
        self.mean, self.std, self.radius = options.mean, options.std, options.radius
        self.lut = _truncation_lut(options.mean, options.std)

    def job(self, index: int) -> tuple:
        plan = self.canvas.plan
        b = plan.recipe[plan.jobs[index][0]].row
        start = _truncating_unnormalize(self.canvas.xc[b], self.mean, self.std)
        return (inpainting.inpaint_chain_thesis, start.permute(1, 2, 0).contiguous().numpy(), plan.patch_masks[b],
                self.canvas.patch_size, self.lut, self.radius)

    def filled(self, key: _Key, recipe: _Recipe, result: _JobResult) -> torch.Tensor:
        out = _inpainted(self.canvas.plan, key, result)
        mean, std = self.canvas.mean_t.float(), self.canvas.std_t.float()   # the thesis code's arithmetic, float32
        return _normalize_u8(out, mean, std).to(self.canvas.xc.dtype)


class _NoiseFill(_Fill):
    """Uniform noise in [0, 1] pixel units, one noise image per distinct image, drawn from
    ``(seed, 1, image)``."""

    def __init__(self, canvas: _Canvas, rank_grid: np.ndarray, options: PixelFlippingOptions):
        super().__init__(canvas, rank_grid, options)
        shape, work = tuple(canvas.xc.shape[1:]), canvas.xc.dtype
        self.noise: Dict[int, torch.Tensor] = {}
        for image in canvas.plan.first_row:
            pixels = np.random.default_rng([options.seed, 1, image]).random(shape)
            self.noise[image] = canvas.normalized(torch.from_numpy(pixels).to(work))

    def filled(self, key: _Key, recipe: _Recipe, result: _JobResult) -> torch.Tensor:
        return self.canvas.masked(recipe, self.noise[self.canvas.plan.image_of(key)])


class _ConstantFill(_Fill):
    """The gray image of :class:`_Canvas` (``gray_value``)."""

    def filled(self, key: _Key, recipe: _Recipe, result: _JobResult) -> torch.Tensor:
        return self.canvas.masked(recipe, self.canvas.gray)


class _ScalarFill(_Fill):
    """The thesis code's random mode (``random_scalar``): one uniform value per row and step in
    [min, max] of the normalized batch, in the patches new in that step."""

    def __init__(self, canvas: _Canvas, rank_grid: np.ndarray, options: PixelFlippingOptions):
        super().__init__(canvas, rank_grid, options)
        xc, counts = canvas.xc, canvas.plan.counts
        batch = xc.shape[0]
        rng = np.random.default_rng(options.seed)
        low, high = float(xc.min()), float(xc.max())
        # one value per step and row, drawn step by step as the thesis code does
        values = np.array([[rng.uniform(low, high) for _ in range(batch)] for _ in range(len(counts))])
        step_of_patch = np.searchsorted(counts, rank_grid, side="right")           # [B, mh, mw]
        self.per_row = [torch.from_numpy(inpainting.patch_mask_to_pixels(
            values[step_of_patch[b], b], canvas.patch_size, canvas.height, canvas.width)).to(xc.dtype)
            for b in range(batch)]

    def filled(self, key: _Key, recipe: _Recipe, result: _JobResult) -> torch.Tensor:
        return self.canvas.masked(recipe, self.per_row[recipe.row])


#: The fill of each kind (:attr:`lrpkit.pf.plan._Plan.kind`).
_FILLS = {"inpainting": _InpaintingFill, "imputation": _ImputationFill, "chain": _ChainFill, "noise": _NoiseFill, "constant": _ConstantFill,
          "scalar": _ScalarFill}


def _fill(xc: torch.Tensor, rank_grid: np.ndarray, plan: _Plan, options: PixelFlippingOptions) -> _Fill:
    """The fill of the plan's kind, on the rows' images ``xc`` and their ranks ``rank_grid``."""
    return _FILLS[plan.kind](_Canvas(xc, plan, options), rank_grid, options)


def _inpainted(plan: _Plan, key: _Key, result: _JobResult) -> torch.Tensor:
    """``[C, H, W]`` uint8: the image that ``key``'s inpainting job produced for it."""
    slot = plan.job_of_key[key]
    return torch.from_numpy(result(slot.job)[slot.index]).permute(2, 0, 1)


# --------------------------------------------------------------------------------------------------
# the thesis code's arithmetic (thesis_compat)


def _normalize_u8(images_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [..., C, H, W] → normalized, as ``(u / 255 - mean) / std`` in the dtype of ``mean``."""
    return (images_u8.to(mean.dtype) / 255.0 - mean) / std


def _truncating_unnormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The thesis code's way back to uint8: float32 inverse normalization, × 255, truncation."""
    inv_mean = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32).view(-1, 1, 1)
    inv_std = torch.tensor([1 / s for s in std], dtype=torch.float32).view(-1, 1, 1)
    values = (x.float() - inv_mean) / inv_std * 255.0
    return values.clamp(0, 255).to(torch.uint8)  # float → integer casts truncate


def _truncation_lut(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """[C, 256] uint8: where the thesis code's round trip uint8 → normalized → uint8 sends each value."""
    channels = len(mean)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 256).expand(channels, 1, 256)
    back = _truncating_unnormalize(_normalize_u8(values, m, s), mean, std)
    return back.reshape(channels, 256).numpy().copy()
