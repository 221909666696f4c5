"""Telea inpainting of patch masks, serially or in a pool of worker threads.

Pixel-Flipping with the ``"inpainting"`` perturbation (:mod:`lrpkit.pf`) fills the flipped
regions of an image with OpenCV's implementation of Telea's fast-marching inpainting. This module
holds the OpenCV side only (NumPy and ``cv2``, no torch):

- :func:`telea` — one call of ``cv2.inpaint(..., cv2.INPAINT_TELEA)`` on a ``uint8`` image and a
  ``uint8`` mask (OpenCV 5 rejects boolean masks).
- :func:`inpaint_patch_masks` — one image, several masks given on the patch grid; every mask is
  inpainted from the same original image, so the results are independent of each other.
- :func:`inpaint_chain_thesis` — the thesis code's sequential variant: every step starts from the
  previous step's output, passed through a lookup table that models its float round trip and
  truncation to ``uint8`` (see :mod:`lrpkit.pf`, ``thesis_compat``).
- :class:`Inpainter` — runs such jobs inline (``workers=0``) or in a persistent pool of threads, and
  hands back futures, so that the caller can overlap inpainting with the model's forward passes.
  OpenCV releases the GIL inside ``cv2.inpaint`` (as torch does inside its operators), so threads
  inpaint in parallel with each other and with the forward passes, without the pickling of a process
  pool and without ``fork``: a forked worker of a process that had already run OpenCV or held torch's
  locks could hang for good.
- :func:`damage_mask` — scratches and text to damage a picture with, for a demonstration of Telea
  (thesis Figure 2.7).

Two properties of OpenCV's Telea matter here and are checked by the tests: pixels outside the mask
are returned unchanged, and a mask that covers the whole image is a no-op (there is nothing to
inpaint from). OpenCV's Telea also reads the *masked* pixels on the image's outer ring;
:func:`inpaint_patch_masks` therefore blanks the masked pixels first, so that the fill depends only
on the pixels outside the mask and no information of the removed region leaks into it.

References
----------
A. Telea, *An image inpainting technique based on the fast marching method*, Journal of Graphics
Tools 9(1):23-34 (2004).
"""
from __future__ import annotations

import atexit
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

import cv2
import numpy as np

__all__ = ["telea", "patch_mask_to_pixels", "inpaint_patch_masks", "inpaint_chain_thesis", "Inpainter", "damage_mask",
           "shutdown_pool"]

#: Value written into the masked pixels before inpainting (see module docstring).
BLANK_VALUE = 128


def telea(image: np.ndarray, mask: np.ndarray, radius: float = 3.0) -> np.ndarray:
    """Inpaint ``image`` where ``mask`` is non-zero with Telea's method.

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8`` image, ``[H, W, C]`` with C in (1, 3), or ``[H, W]``. OpenCV's Telea treats the
        channels independently, so RGB and BGR order give the same result.
    mask : numpy.ndarray
        ``[H, W]`` mask; non-zero marks the pixels to fill. Converted to ``uint8``.
    radius : float
        Radius of the neighbourhood each filled pixel is computed from (the thesis uses 3).

    Returns
    -------
    numpy.ndarray
        The inpainted ``uint8`` image, same shape as ``image``.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"telea: image must be uint8, got {image.dtype}")
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    out = cv2.inpaint(np.ascontiguousarray(image), mask, float(radius), cv2.INPAINT_TELEA)
    return out.reshape(image.shape)


def patch_mask_to_pixels(patch_mask: np.ndarray, patch_size: int, height: int, width: int) -> np.ndarray:
    """Blow a boolean patch-grid mask ``[..., mh, mw]`` up to pixels ``[..., height, width]``.

    Edge patches of an image whose size ``patch_size`` does not divide are cropped to the image.
    """
    pixels = np.repeat(np.repeat(patch_mask, patch_size, axis=-2), patch_size, axis=-1)
    return pixels[..., :height, :width]


def inpaint_patch_masks(image: np.ndarray, patch_masks: np.ndarray, patch_size: int,
                        radius: float = 3.0) -> np.ndarray:
    """Inpaint one image under several masks, each independently from the original image.

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8`` image ``[H, W, C]``.
    patch_masks : numpy.ndarray
        Boolean ``[K, mh, mw]``: K masks on the grid of ``patch_size`` × ``patch_size`` patches.
    patch_size : int
        Side of a patch in pixels.
    radius : float
        Telea radius.

    Returns
    -------
    numpy.ndarray
        ``uint8`` ``[K, H, W, C]``. Pixels outside a mask are those of ``image``. Masked pixels are
        blanked (:data:`BLANK_VALUE`) before inpainting, so a mask covering the whole image gives a
        blank image; the caller decides what such a step should be.
    """
    height, width = image.shape[:2]
    out = np.empty((len(patch_masks),) + image.shape, dtype=np.uint8)
    for k, patch_mask in enumerate(patch_masks):
        mask = patch_mask_to_pixels(patch_mask, patch_size, height, width)
        blanked = image.copy()
        blanked[mask] = BLANK_VALUE
        out[k] = telea(blanked, mask, radius)
    return out


def inpaint_chain_thesis(start: np.ndarray, patch_masks: np.ndarray, patch_size: int, lut: np.ndarray,
                         radius: float = 3.0) -> np.ndarray:
    """Inpaint cumulative masks one after another, as the thesis code does.

    Step 1 inpaints ``start`` under the first mask; every later step inpaints the previous step's
    output after mapping it channel-wise through ``lut`` (the thesis code's round trip
    ``uint8 → float → normalize → un-normalize → truncate``, which drifts values down). A mask that
    covers the whole image returns its input unchanged (OpenCV's behaviour, kept on purpose).

    Parameters
    ----------
    start : numpy.ndarray
        ``uint8`` ``[H, W, C]``: the truncated un-normalized input image.
    patch_masks : numpy.ndarray
        Boolean ``[K, mh, mw]`` cumulative masks on the patch grid, in step order.
    patch_size : int
        Side of a patch in pixels.
    lut : numpy.ndarray
        ``uint8`` ``[C, 256]``: per-channel lookup table of the round trip.
    radius : float
        Telea radius.

    Returns
    -------
    numpy.ndarray
        ``uint8`` ``[K, H, W, C]``: the output of every step.
    """
    height, width = start.shape[:2]
    channels = np.arange(start.shape[2])
    out = np.empty((len(patch_masks),) + start.shape, dtype=np.uint8)
    current = start
    for k, patch_mask in enumerate(patch_masks):
        if k > 0:
            current = lut[channels, out[k - 1]]
        mask = patch_mask_to_pixels(patch_mask, patch_size, height, width)
        out[k] = telea(current, mask, radius)
    return out


_POOLS: dict = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """A persistent pool of ``workers`` threads, created on first use and kept for the session."""
    pool = _POOLS.get(workers)
    if pool is None:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lrpkit-inpainting")
        _POOLS[workers] = pool
    return pool


def shutdown_pool() -> None:
    """Stop the worker threads started by :class:`Inpainter` (also done at interpreter exit)."""
    while _POOLS:
        _, pool = _POOLS.popitem()
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_pool)


def default_workers(accelerated: bool) -> int:
    """Number of inpainting worker threads to use by default.

    With the model on an accelerator the CPU has nothing else to do, so every core but one (which
    feeds the accelerator) inpaints. On a CPU the forward passes need the cores and inpainting is a
    small share of the work: one worker per eight cores (at least one) keeps it off the critical path.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if accelerated:
        return max(1, cores - 1)
    return max(1, cores // 8)


class Inpainter:
    """Run inpainting jobs inline or in a persistent pool of worker threads.

    Parameters
    ----------
    workers : int
        0 runs every job at once in the calling thread; ``n >= 1`` uses a pool of n threads that
        lives until :func:`shutdown_pool` or the end of the interpreter.
    """

    def __init__(self, workers: int):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {workers!r}")
        self.workers = workers
        self._executor: Optional[ThreadPoolExecutor] = _pool(workers) if workers > 0 else None

    def submit(self, function, *args) -> Future:
        """Run ``function(*args)`` (one of this module's functions) and return a future of its result."""
        if self._executor is not None:
            return self._executor.submit(function, *args)
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except BaseException as error:  # pragma: no cover - surfaced by future.result()
            future.set_exception(error)
        return future


def damage_mask(height: int, width: int, *, strokes: int = 8, thickness: int = 3, text: Optional[str] = None,
                seed: int = 0) -> np.ndarray:
    """A mask of scratches (and, optionally, a line of text) to damage a picture for an inpainting demo.

    Thesis Figure 2.7 shows a damaged picture and its Telea inpainting; this draws the damage: random
    straight strokes from ``numpy.random.default_rng(seed)`` and ``text`` written across the middle.

    Parameters
    ----------
    height, width : int
        Size of the mask.
    strokes : int
        Number of straight strokes, each between two random points of the image.
    thickness : int
        Line width of strokes and text, in pixels.
    text : str, optional
        Written in OpenCV's plain Hershey font, scaled to about 80 % of the width.
    seed : int
        Seed of the strokes' end points.

    Returns
    -------
    numpy.ndarray
        ``uint8 [height, width]``, 255 where damaged and 0 elsewhere (the mask :func:`telea` takes).
    """
    for name, value, low in (("height", height, 1), ("width", width, 1), ("strokes", strokes, 0),
                             ("thickness", thickness, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"damage_mask: {name} must be an int >= {low}, got {value!r}")
    mask = np.zeros((height, width), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    for _ in range(strokes):
        (x0, x1), (y0, y1) = rng.integers(0, width, 2), rng.integers(0, height, 2)
        cv2.line(mask, (int(x0), int(y0)), (int(x1), int(y1)), 255, int(thickness), lineType=cv2.LINE_8)
    if text:
        font = cv2.FONT_HERSHEY_SIMPLEX
        (text_width, text_height), _ = cv2.getTextSize(text, font, 1.0, int(thickness))
        scale = 0.8 * width / max(text_width, 1)
        origin = (int(0.1 * width), int(height / 2 + scale * text_height / 2))
        cv2.putText(mask, text, origin, font, scale, 255, int(thickness), lineType=cv2.LINE_8)
    return mask
