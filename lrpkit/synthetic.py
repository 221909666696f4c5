"""A ground-truth image task: one deciding shape on a photo, with the pixels that decide the class.

A network trained on ImageNet gives heatmaps nobody can grade pixel by pixel: what the network
*should* look at is unknown. Here it is known by construction. Every image is a crop of one of the
book's own photos (the castle and the ImageNet samples of :mod:`lrpkit.data`: real image statistics,
no new data), on which 1-3 *distractors* and then one *deciding object* are drawn. The kind of the
deciding object is the class; its pixel-exact mask is returned with the image, so that a heatmap can
be scored against the pixels that decide the class (with :mod:`lrpkit.localisation`, say): the idea
of CLEVR-XAI (Arras, Osman and Samek 2022), on images small and quick enough to train a network on.

Objects
-------
Every object has a centre ``c`` (pixel coordinates ``(x, y)``, ``x`` to the right, ``y`` down,
the pixel ``[i, j]`` has its centre at ``(j + 0.5, i + 0.5)``), a size ``r`` (pixels), an angle
``a`` and a colour. A shape is a set of points ``(u, v)`` in its own frame; the point ``(u, v)``
lies in the image at ``c + (u cos a - v sin a, u sin a + v cos a)``. A pixel belongs to an object
when its centre lies in the shape (closed sets, no anti-aliasing). The deciding objects (:data:`KINDS`)
all lie in the disc of radius ``r`` (their circumradius is ``r``):

============  ============================================================================
``disc``      ``u² + v² <= r²``
``square``    ``|u|, |v| <= r / √2`` (:data:`SQUARE_HALF`): corners on the circle
``triangle``  equilateral, corners at ``r (cos 2πk/3, sin 2πk/3)``, ``k = 0, 1, 2``
``cross``     two bars ``|u| <= 0.3 r, |v| <= 0.954 r`` and the same turned by 90°
              (:data:`CROSS_HALF_WIDTH`, :data:`CROSS_ARM`): bar ends on the circle
``ring``      ``0.6 r <= √(u² + v²) <= r`` (:data:`RING_INNER`); the hole shows the photo
``star``      five points at ``r (cos 2πk/5, sin 2πk/5)``, inner corners at ``0.5 r``
              (:data:`STAR_INNER`), angle ``2πk/5 + π/5``
============  ============================================================================

The distractors (:data:`DISTRACTOR_KINDS`) never decide the class and are no class kind:
``line`` (``|u| <= r``, ``|v| <= w / 2``), ``dot`` (a small disc) and ``diamond`` (the outline
``r - √2 w <= |u| + |v| <= r``, a square outline of stroke ``w``), with ``w = 1.5 px`` at 64 px
(:data:`STROKE`, a fraction of the side) and sizes of :data:`DISTRACTOR_SIZES`.

Conventions
-----------
- **The deciding object is drawn last**: background, then the distractors (in slot order), then
  the deciding object. Its mask is exactly the pixels it covers, and every one of them has its
  colour (:attr:`Batch.colors`). A distractor may lie partly under the deciding object (or under
  another distractor); nothing keeps them apart.
- **Nothing but the kind depends on the class.** Centre, size, angle and colour of the deciding
  object are drawn from one distribution for every class: ``r`` uniform in ``config.radius`` times
  the side, ``a`` uniform in ``[0, 2π)``, ``c`` uniform where the object's disc lies inside the image
  (no object is ever cut), the colour uniform in hue with saturation and value uniform in
  :data:`SATURATION` and :data:`VALUE` (no grey objects), rounded to 8 bits. Distractors draw their
  colours from the same distribution, so colour tells neither the class nor which object decides it.
  (The area of a shape at a given ``r`` still depends on its kind: a square covers ``2r²``, a disc
  ``πr²``. That is the shape, not a leak.)
- **Labels** are uniform over ``config.classes`` (not balanced exactly); the label is the index
  of the kind in ``config.classes``. The number of distractors is uniform in ``config.distractors``,
  the kind of each uniform in ``config.distractor_kinds``.
- **Backgrounds**: the photos of ``config.backgrounds`` are decoded once per working side (cached in
  the process) as the centre square of :func:`lrpkit.data.read_rgb` at ``W = max(size, min(2 size,
  512))`` pixels. Each image takes one photo (uniform), a square crop of side uniform in ``[W/2, W]``
  at a uniform position, flipped left-right with probability 1/2, resized to ``size`` bilinearly
  (:func:`torch.nn.functional.grid_sample`) and rounded to 8 bits. The three splits use the same
  photos (different crops): the background never tells the class, so sharing them leaks nothing.
- **Randomness is counter-based**: image ``i`` of a split is a function of ``(config, seed, split,
  i)`` alone, through 78 uniforms drawn from SplitMix64 (Steele et al. 2014) at counter
  ``78 i + column``, keyed by the seed and the split. So ``generate(config, n, seed=s)`` equals
  ``generate(config, k, seed=s)`` followed by ``generate(config, n - k, seed=s, start=k)`` (stream a
  training set in chunks); the splits are different streams (the chance that two of them overlap
  within a million images is below 10⁻¹⁰); changing ``distractors`` keeps every background and
  deciding object, changing ``classes`` keeps every position, size and colour, and another ``size``
  draws the same scenes at another resolution. The uniforms are bit-identical on every machine
  (integer arithmetic); the pixels use only exactly rounded float32 operations (no transcendental
  function per pixel) and torch's ``grid_sample``.
- :func:`backgrounds` gives the same images with nothing drawn on them (a control: no object to
  decide by, nothing for a heatmap to find).
- **Pixels** are float32 in ``[0, 1]``, multiples of 1/255 (:attr:`Batch.images`);
  :meth:`Batch.normalized` gives the ImageNet-normalized input of an lrpkit model, exactly
  :func:`lrpkit.data.normalize` of :meth:`Batch.rgb`.

Example
-------
>>> from lrpkit import synthetic
>>> config = synthetic.TaskConfig()                                   # 64 px, six kinds, 1-3 distractors
>>> train = synthetic.generate(config, 5000, seed=0)                  # doctest: +SKIP
>>> val = synthetic.generate(config, 1000, seed=0, split="validation")  # doctest: +SKIP
>>> train.images.shape, train.labels[:4], train.masks.shape           # doctest: +SKIP
(torch.Size([5000, 3, 64, 64]), tensor([2, 0, 0, 0]), torch.Size([5000, 64, 64]))
>>> logits = model(train.normalized())                                # doctest: +SKIP
>>> fig = synthetic.sample_figure(val, 8)                             # doctest: +SKIP

References
----------
L. Arras, A. Osman, W. Samek, *CLEVR-XAI: A benchmark dataset for the ground truth evaluation of
neural network explanations*, Information Fusion 81:14-40 (2022).
G. L. Steele, D. Lea, C. H. Flood, *Fast splittable pseudorandom number generators*, OOPSLA (2014).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from ._checks import choice, integer

__all__ = ["KINDS", "DISTRACTOR_KINDS", "SPLITS", "DISTRACTOR_SIZES", "MAX_DISTRACTORS", "MIN_RADIUS_PX",
           "MAX_SIZE", "SQUARE_HALF", "CROSS_HALF_WIDTH", "CROSS_ARM", "RING_INNER", "STAR_INNER", "STROKE",
           "SATURATION", "VALUE", "TaskConfig", "Batch", "generate", "backgrounds", "sample_figure"]

#: The kinds of deciding object, one class each (a config takes any two or more, in any order).
KINDS = ("disc", "square", "triangle", "cross", "ring", "star")
#: The kinds of distractor: never a class, and none of :data:`KINDS`.
DISTRACTOR_KINDS = ("line", "dot", "diamond")
#: The splits; each is its own random stream of the same seed.
SPLITS = ("train", "validation", "test")

#: Half the side of ``square`` over ``r``: its corners lie on the circle of radius ``r``.
SQUARE_HALF = 1.0 / math.sqrt(2.0)
#: Half the width of a bar of ``cross`` over ``r``.
CROSS_HALF_WIDTH = 0.3
#: Half the length of a bar of ``cross`` over ``r``: the bar's corners lie on the circle.
CROSS_ARM = math.sqrt(1.0 - CROSS_HALF_WIDTH ** 2)
#: Inner radius of ``ring`` over ``r``.
RING_INNER = 0.6
#: Radius of the inner corners of ``star`` over ``r``.
STAR_INNER = 0.5
#: Stroke ``w`` of ``line`` and of the ``diamond`` outline, a fraction of the side (1.5 px at 64 px).
STROKE = 1.5 / 64
#: Size ``r`` of each distractor kind, (smallest, largest) as fractions of the side (``line``: half
#: its length).
DISTRACTOR_SIZES = {"line": (0.12, 0.25), "dot": (0.025, 0.045), "diamond": (0.08, 0.14)}
#: Saturation and value of every colour (HSV), uniform in these ranges; hue uniform in [0, 1).
SATURATION = (0.5, 1.0)
VALUE = (0.5, 1.0)
#: Most distractors per image (the random stream keeps this many slots).
MAX_DISTRACTORS = 8
#: Smallest deciding object (``r`` in pixels) whose kind can still be told apart.
MIN_RADIUS_PX = 4.0
#: Largest image side.
MAX_SIZE = 1024

# Columns of the uniforms of one image: label; deciding object (x, y, r, angle, h, s, v); photo
# (index, crop side, crop x, crop y, flip); distractor count; MAX_DISTRACTORS slots of (kind, x, y,
# r, angle, h, s, v).
_LABEL, _OBJECT, _PHOTO, _COUNT, _SLOTS = 0, 1, 8, 13, 14
_SLOT_WIDTH = 8
_COLUMNS = _SLOTS + _SLOT_WIDTH * MAX_DISTRACTORS
_SPLIT_TAGS = {"train": 0x243F6A8885A308D3, "validation": 0x13198A2E03707344, "test": 0xA4093822299F31D0}
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


# --------------------------------------------------------------------------------------------
# The task's configuration


def _pair(name: str, value, what: str) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be a pair ({what}), got {value!r}")
    return tuple(value)


def _kinds(name: str, value, options: tuple[str, ...], **known) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a sequence of names, got {value!r}; e.g. {options[:2]!r}")
    kinds = tuple(value)
    for kind in kinds:
        choice(f"{name} entry", kind, options, **known)
    repeated = sorted({k for k in kinds if kinds.count(k) > 1})
    if repeated:
        raise ValueError(f"{name} names {', '.join(map(repr, repeated))} more than once, got {kinds!r}; "
                         "give each once")
    return kinds


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """What the images of the task look like; checked when made (one-line errors naming the field).

    Attributes
    ----------
    size : int
        Side of the square images in pixels, 32 (VGG's five max-pools) to :data:`MAX_SIZE`.
    classes : tuple of str
        The kinds of deciding object, at least two of :data:`KINDS`; the label of an image is the
        index of its kind here.
    radius : (float, float)
        Smallest and largest size ``r`` (circumradius) of the deciding object, as fractions of
        ``size``: the default ``(10/64, 16/64)`` is 10-16 px at 64 px. The smallest must be at least
        :data:`MIN_RADIUS_PX` pixels, and the largest object must fit in the image with a pixel to
        spare on each side (``ceil(2 r) + 2 <= size``).
    distractors : (int, int)
        Fewest and most distractors per image, ``0 <= fewest <= most <=`` :data:`MAX_DISTRACTORS`.
    distractor_kinds : tuple of str
        Which of :data:`DISTRACTOR_KINDS` are drawn (each uniformly); at least one unless
        ``distractors`` is ``(0, 0)``.
    backgrounds : tuple of str
        Image sets of :func:`lrpkit.data.image_sets` whose photos are cut into backgrounds (a
        photo in two sets is used once).
    """

    size: int = 64
    classes: tuple[str, ...] = KINDS
    radius: tuple[float, float] = (10 / 64, 16 / 64)
    distractors: tuple[int, int] = (1, 3)
    distractor_kinds: tuple[str, ...] = DISTRACTOR_KINDS
    backgrounds: tuple[str, ...] = ("castle", "imagenet-samples")

    def __post_init__(self):
        size = integer("size", self.size, 32, hint="VGG's five 2x2 max-pools need it")
        if size > MAX_SIZE:
            raise ValueError(f"size must be at most {MAX_SIZE}, got {size!r}")
        classes = _kinds("classes", self.classes, KINDS)
        if len(classes) < 2:
            raise ValueError(f"classes must name at least 2 kinds (one class is no task), got {classes!r}; "
                             f"choose from {KINDS!r}")
        radius = _pair("radius", self.radius, "smallest, largest size as fractions of the image side")
        if not all(isinstance(f, numbers.Real) and not isinstance(f, bool) and math.isfinite(f) for f in radius):
            raise ValueError(f"radius must hold two finite numbers (fractions of the image side), got {radius!r}")
        low, high = (float(f) for f in radius)
        if not 0 < low <= high:
            raise ValueError(f"radius must be a pair 0 < smallest <= largest, got {radius!r}")
        if low * size < MIN_RADIUS_PX:
            raise ValueError(f"radius {radius!r} is too small: the smallest object is {low * size:.3g} px at size "
                             f"{size}, under {MIN_RADIUS_PX:g} px; use a smallest radius of at least "
                             f"{MIN_RADIUS_PX / size:.4g}")
        if _box(high * size) > size:
            largest = (size - 2) / 2 / size
            raise ValueError(f"radius {radius!r} does not fit: an object of {high * size:.3g} px needs "
                             f"{_box(high * size)} px at size {size}; use a largest radius of at most {largest:.4g}")
        fewest, most = _pair("distractors", self.distractors, "fewest, most per image")
        fewest = integer("distractors[0] (fewest)", fewest, 0)
        most = integer("distractors[1] (most)", most, 0)
        if not fewest <= most <= MAX_DISTRACTORS:
            raise ValueError(f"distractors must be a pair 0 <= fewest <= most <= {MAX_DISTRACTORS}, got "
                             f"{self.distractors!r}")
        distractor_kinds = _kinds("distractor_kinds", self.distractor_kinds, DISTRACTOR_KINDS)
        if most > 0 and not distractor_kinds:
            raise ValueError(f"distractor_kinds is empty but distractors is {self.distractors!r}; name at least "
                             f"one of {DISTRACTOR_KINDS!r} or set distractors=(0, 0)")
        sets = data.image_sets()
        backgrounds = _kinds("backgrounds", self.backgrounds, tuple(sorted(sets)), known="the known sets")
        if not backgrounds:
            raise ValueError("backgrounds is empty; name at least one image set, e.g. ('castle', 'imagenet-samples')")
        for name, value in (("size", size), ("classes", classes), ("radius", (low, high)),
                            ("distractors", (fewest, most)), ("distractor_kinds", distractor_kinds),
                            ("backgrounds", backgrounds)):
            object.__setattr__(self, name, value)

    @property
    def radius_px(self) -> tuple[float, float]:
        """``radius`` in pixels."""
        return self.radius[0] * self.size, self.radius[1] * self.size


def _box(reach: float) -> int:
    """Side of the square of pixels that holds every pixel centre within ``reach`` of any centre."""
    return math.ceil(2 * reach) + 2


# --------------------------------------------------------------------------------------------
# The result


@dataclasses.dataclass(frozen=True, eq=False)
class Batch:
    """Images of the task with their labels and ground-truth masks (:func:`generate`).

    Attributes
    ----------
    images : torch.Tensor
        ``[n, 3, H, W]`` float32 RGB in ``[0, 1]`` (multiples of 1/255); :meth:`normalized` for a model.
    labels : torch.Tensor
        ``[n]`` int64, the index of the deciding object's kind in ``config.classes``.
    masks : torch.Tensor
        ``[n, H, W]`` bool, the pixels the deciding object covers (all of them visible: it is drawn last).
    centers : torch.Tensor
        ``[n, 2]`` float32, the deciding object's centre ``(x, y)`` in pixels.
    radii : torch.Tensor
        ``[n]`` float32, its size ``r`` in pixels (every pixel of the mask lies within ``r`` of the centre).
    angles : torch.Tensor
        ``[n]`` float32, its angle ``a`` in radians.
    colors : torch.Tensor
        ``[n, 3]`` uint8, its RGB colour: every pixel of the mask has it.
    distractors : torch.Tensor
        ``[n]`` int64, how many distractors were drawn.
    config : TaskConfig
    seed : int
    split : str
    start : int
        Index of the first image in its split's stream.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    centers: torch.Tensor
    radii: torch.Tensor
    angles: torch.Tensor
    colors: torch.Tensor
    distractors: torch.Tensor
    config: TaskConfig
    seed: int
    split: str
    start: int

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __repr__(self) -> str:
        size = self.config.size
        return (f"Batch({len(self)} images {size}x{size}, classes {self.config.classes!r}, seed={self.seed}, "
                f"split={self.split!r}, start={self.start})")

    @property
    def class_names(self) -> tuple[str, ...]:
        """The kind of each image's deciding object."""
        return tuple(self.config.classes[i] for i in self.labels.tolist())

    def normalized(self) -> torch.Tensor:
        """``[n, 3, H, W]`` float32 normalized as ImageNet input, ``(images - imagenet.MEAN) /
        imagenet.STD``: exactly :func:`lrpkit.data.normalize` of :meth:`rgb`."""
        return data.normalize(self.rgb())

    def rgb(self) -> torch.Tensor:
        """``[n, H, W, 3]`` uint8 pixels (what :func:`lrpkit.data.read_rgb` gives for a file)."""
        return (self.images * 255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# --------------------------------------------------------------------------------------------
# Randomness: SplitMix64 at a counter


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer (uint64 arithmetic wraps)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _uniforms(seed: int, split: str, start: int, n: int) -> np.ndarray:
    """``[n, _COLUMNS]`` float64 uniforms in [0, 1) of the images ``start .. start + n - 1``."""
    with np.errstate(over="ignore"):
        key = _mix64(np.array([seed], dtype=np.uint64) * _GOLDEN ^ np.uint64(_SPLIT_TAGS[split]))
        counter = (np.arange(start, start + n, dtype=np.uint64)[:, None] * np.uint64(_COLUMNS)
                   + np.arange(1, _COLUMNS + 1, dtype=np.uint64))
        bits = _mix64(key + counter * _GOLDEN)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _pick(u: np.ndarray, count: int) -> np.ndarray:
    """Uniform integers in ``[0, count)``."""
    return np.minimum((u * count).astype(np.int64), count - 1)


def _between(u: np.ndarray, low: float, high: float) -> np.ndarray:
    return low + u * (high - low)


def _colors(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV in [0, 1) x [0, 1]² to RGB uint8 ``[..., 3]``."""
    s = _between(s, *SATURATION)
    v = _between(v, *VALUE)
    sector = _pick(h, 6)
    f = h * 6 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    rgb = np.take_along_axis(table, sector[None, ..., None], 0)[0]
    return np.rint(rgb * 255).astype(np.uint8)


def _float32(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32)


def _cos_sin(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of float32 angles, in float64 by :mod:`math` (no platform's SIMD variant), to float32."""
    flat = angles.astype(np.float64).ravel().tolist()
    cos = np.array([math.cos(a) for a in flat], dtype=np.float32).reshape(angles.shape)
    sin = np.array([math.sin(a) for a in flat], dtype=np.float32).reshape(angles.shape)
    return cos, sin


# --------------------------------------------------------------------------------------------
# Shapes


_TRIANGLE_NORMALS = tuple((math.cos(math.pi / 3 + 2 * math.pi * k / 3), math.sin(math.pi / 3 + 2 * math.pi * k / 3))
                          for k in range(3))


def _reflect(u: np.ndarray, v: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Reflect the points on the far side of the line through 0 at ``angle`` onto its near side."""
    nx, ny = np.float32(-math.sin(angle)), np.float32(math.cos(angle))
    side = np.maximum(u * nx + v * ny, np.float32(0)) * np.float32(2)
    return u - side * nx, v - side * ny


def _inside(kind: str, u: np.ndarray, v: np.ndarray, r: np.ndarray, stroke: float) -> np.ndarray:
    """Which points ``(u, v)`` (float32 pixels, in the shape's frame) the shape of size ``r`` covers."""
    f = np.float32
    if kind in ("disc", "dot"):
        return u * u + v * v <= r * r
    if kind == "ring":
        rho2 = u * u + v * v
        inner = f(RING_INNER) * r
        return (rho2 <= r * r) & (rho2 >= inner * inner)
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= f(SQUARE_HALF) * r
    if kind == "triangle":
        inside = None
        for nx, ny in _TRIANGLE_NORMALS:
            half = u * f(nx) + v * f(ny) <= f(0.5) * r
            inside = half if inside is None else inside & half
        return inside
    if kind == "cross":
        au, av = np.abs(u), np.abs(v)
        width, arm = f(CROSS_HALF_WIDTH) * r, f(CROSS_ARM) * r
        return ((au <= width) & (av <= arm)) | ((av <= width) & (au <= arm))
    if kind == "star":
        # fold onto the wedge between the point at angle 0 and the inner corner at π/5 (two of the
        # star's mirror lines), then test the side of the edge between them
        u, v = _reflect(u, np.abs(v), 2 * math.pi / 5)
        u, v = _reflect(u, np.abs(v), math.pi / 5)
        dx, dy = f(STAR_INNER * math.cos(math.pi / 5) - 1), f(STAR_INNER * math.sin(math.pi / 5))
        return dx * v - dy * (u - r) >= 0
    if kind == "line":
        return (np.abs(u) <= r) & (np.abs(v) <= f(stroke / 2))
    if kind == "diamond":
        l1 = np.abs(u) + np.abs(v)
        return (l1 <= r) & (l1 >= r - f(math.sqrt(2) * stroke))
    raise AssertionError(kind)


def _extent(kind: str, r: np.ndarray, stroke: float) -> np.ndarray:
    """The radius of the disc around the centre that holds the shape."""
    return np.hypot(r, stroke / 2) if kind == "line" else r


def _draw(canvas: np.ndarray, mask: np.ndarray | None, rows: np.ndarray, kind: str, center: np.ndarray,
          r: np.ndarray, angle: np.ndarray, color: np.ndarray, reach: float, stroke: float) -> None:
    """Paint one object in each image ``rows`` of ``canvas`` ([n, 3, H*W] float32, 0-255) and write
    its pixels into ``mask`` ([n, H*W] bool) if given.

    The work is done in a box of ``_box(reach)`` pixels around each centre; ``reach`` bounds the
    objects' extent. Only exactly rounded float32 operations touch the pixels (NumPy, one thread).
    """
    if rows.size == 0:
        return
    n, channels, pixels = canvas.shape
    size = math.isqrt(pixels)
    side = _box(reach)
    origin = np.clip(np.floor(center - reach - 0.5).astype(np.int64), 0, size - side)   # [k, 2] (x, y)
    xs = origin[:, 0:1] + np.arange(side)                                               # [k, side]
    ys = origin[:, 1:2] + np.arange(side)
    dx = (xs.astype(np.float32) + np.float32(0.5) - center[:, 0:1])[:, None, :]         # [k, 1, side]
    dy = (ys.astype(np.float32) + np.float32(0.5) - center[:, 1:2])[:, :, None]         # [k, side, 1]
    cos, sin = (t[:, None, None] for t in _cos_sin(angle))
    u = dx * cos + dy * sin
    v = dy * cos - dx * sin
    obj, y, x = np.nonzero(_inside(kind, u, v, r[:, None, None], stroke))           # the covered pixels
    image, local = rows[obj], ys[obj, y] * size + xs[obj, x]
    flat = canvas.reshape(-1)
    for channel in range(channels):
        flat[(image * channels + channel) * pixels + local] = color[obj, channel]
    if mask is not None:
        mask.reshape(-1)[image * pixels + local] = True


# --------------------------------------------------------------------------------------------
# Backgrounds


def _working_side(size: int) -> int:
    return max(size, min(2 * size, 512))


@functools.lru_cache(maxsize=4)
def _photos(backgrounds: tuple[str, ...], side: int) -> torch.Tensor:
    """The photos of the image sets, ``[P, 3, side, side]`` float32 0-255, decoded once."""
    paths = {}
    for name in backgrounds:
        for record in data.image_set(name):
            paths.setdefault(record.file, record.path)
    rgb = np.stack([data.read_rgb(path, side, "crop") for path in paths.values()])
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).to(torch.float32).contiguous()


def _backgrounds(photos: torch.Tensor, u: np.ndarray, size: int) -> np.ndarray:
    """Crops of the photos resized to ``size``: ``[n, 3, size * size]`` float32, integers 0-255.

    The images are sampled photo by photo: one ``grid_sample`` call per photo, its images stacked
    along the height."""
    count, _, side, _ = photos.shape
    n = u.shape[0]
    photo = _pick(u[:, 0], count)
    crop = _float32(side * _between(u[:, 1], 0.5, 1.0))
    left = _float32((side - crop) * u[:, 2])
    top = _float32((side - crop) * u[:, 3])
    t = (np.arange(size, dtype=np.float32) + np.float32(0.5)) / np.float32(size)
    across = np.where((u[:, 4] < 0.5)[:, None], np.float32(1) - t, t)                 # flipped left-right
    scale = np.float32(2 / side)
    x = (left[:, None] + crop[:, None] * across) * scale - np.float32(1)              # grid_sample's [-1, 1]
    y = (top[:, None] + crop[:, None] * t) * scale - np.float32(1)
    canvas = np.empty((n, 3, size * size), dtype=np.float32)
    for p in np.unique(photo).tolist():
        rows = np.flatnonzero(photo == p)
        grid = np.empty((rows.size, size, size, 2), dtype=np.float32)
        grid[..., 0] = x[rows][:, None, :]
        grid[..., 1] = y[rows][:, :, None]
        sampled = F.grid_sample(photos[p:p + 1], torch.from_numpy(grid).view(1, rows.size * size, size, 2),
                                mode="bilinear", padding_mode="border", align_corners=False)
        canvas[rows] = sampled.numpy().reshape(3, rows.size, size * size).transpose(1, 0, 2)
    return np.rint(canvas, out=canvas)       # bilinear weights are convex: already within 0-255


# --------------------------------------------------------------------------------------------
# Generating


def _stream(config: TaskConfig, n: int, seed: int, split: str, start: int) -> np.ndarray:
    """The checked arguments' uniforms, ``[n, _COLUMNS]``."""
    if not isinstance(config, TaskConfig):
        raise TypeError(f"config must be a synthetic.TaskConfig, got {type(config).__name__}")
    n = integer("n", n, 1)
    seed = integer("seed", seed, 0)
    if seed >= 2 ** 64:
        raise ValueError(f"seed must be below 2**64, got {seed!r}")
    start = integer("start", start, 0)
    choice("split", split, SPLITS)
    return _uniforms(seed, split, start, n)


def generate(config: TaskConfig, n: int, *, seed: int, split: str = "train", start: int = 0) -> Batch:
    """Images ``start .. start + n - 1`` of a split of the task, with labels and masks.

    Parameters
    ----------
    config : TaskConfig
        What the images look like.
    n : int
        How many images (at least 1).
    seed : int
        The task's seed, ``0 <= seed < 2**64``; with the config and the split it fixes every image.
    split : {"train", "validation", "test"}
        Each split is its own stream: the three never share an image.
    start : int
        Index of the first image in the split's stream; ``generate(c, a + b, seed=s)`` is
        ``generate(c, a, seed=s)`` followed by ``generate(c, b, seed=s, start=a)``.

    Returns
    -------
    Batch
        ``images`` float32 ``[n, 3, H, W]`` in [0, 1], ``labels`` int64 ``[n]``, ``masks`` bool
        ``[n, H, W]`` and the deciding object's geometry and colour.

    Raises
    ------
    TypeError
        ``config`` is no :class:`TaskConfig`; ``n``, ``seed`` or ``start`` is no int.
    ValueError
        ``n < 1``, a seed out of range, a negative ``start``, an unknown split.
    FileNotFoundError
        The background photos are neither cached nor in the mirror (:func:`lrpkit.data.image_set`).
    """
    u = _stream(config, n, seed, split, start)
    n, seed, start, size = u.shape[0], int(seed), int(start), config.size
    canvas = _backgrounds(_photos(config.backgrounds, _working_side(size)), u[:, _PHOTO:_PHOTO + 5], size)
    masks = np.zeros((n, size * size), dtype=bool)
    stroke = STROKE * size

    # distractors, slot by slot, each kind in a box of its own largest size
    fewest, most = config.distractors
    count = fewest + _pick(u[:, _COUNT], most - fewest + 1)
    for slot in range(most):
        col = u[:, _SLOTS + slot * _SLOT_WIDTH:_SLOTS + (slot + 1) * _SLOT_WIDTH]
        kind = _pick(col[:, 0], len(config.distractor_kinds))
        for k, name in enumerate(config.distractor_kinds):
            rows = np.flatnonzero((kind == k) & (count > slot))
            c = col[rows]
            low, high = (f * size for f in DISTRACTOR_SIZES[name])
            r = _float32(_between(c[:, 3], low, high))
            extent = _extent(name, r.astype(np.float64), stroke)
            center = _float32(np.stack([extent + c[:, i] * (size - 2 * extent) for i in (1, 2)], -1))
            angle = _float32(2 * math.pi * c[:, 4])
            reach = float(_extent(name, np.float64(high), stroke))
            _draw(canvas, None, rows, name, center, r, angle, _colors(c[:, 5], c[:, 6], c[:, 7]), reach, stroke)

    # the deciding object, last
    labels = _pick(u[:, _LABEL], len(config.classes))
    obj = u[:, _OBJECT:_OBJECT + 7]
    low, high = config.radius_px
    radii = _float32(_between(obj[:, 2], low, high))
    r64 = radii.astype(np.float64)
    centers = _float32(np.stack([r64 + obj[:, i] * (size - 2 * r64) for i in (0, 1)], -1))
    angles = _float32(2 * math.pi * obj[:, 3])
    colors = _colors(obj[:, 4], obj[:, 5], obj[:, 6])
    for k, name in enumerate(config.classes):
        rows = np.flatnonzero(labels == k)
        _draw(canvas, masks, rows, name, centers[rows], radii[rows], angles[rows], colors[rows], high, stroke)

    canvas /= np.float32(255)
    return Batch(images=torch.from_numpy(canvas.reshape(n, 3, size, size)), labels=torch.from_numpy(labels),
                 masks=torch.from_numpy(masks.reshape(n, size, size)), centers=torch.from_numpy(centers),
                 radii=torch.from_numpy(radii), angles=torch.from_numpy(angles), colors=torch.from_numpy(colors),
                 distractors=torch.from_numpy(count), config=config, seed=seed, split=split, start=start)


def backgrounds(config: TaskConfig, n: int, *, seed: int, split: str = "train", start: int = 0) -> torch.Tensor:
    """The images of :func:`generate` with nothing drawn on them: the photo crops alone.

    A control: a network that decides by the deciding object has nothing to go on here, and a
    heatmap has no object to find. Arguments as :func:`generate`; returns ``[n, 3, H, W]`` float32
    in [0, 1], equal to ``generate(...).images`` wherever no object was drawn.
    """
    u = _stream(config, n, seed, split, start)
    size = config.size
    canvas = _backgrounds(_photos(config.backgrounds, _working_side(size)), u[:, _PHOTO:_PHOTO + 5], size)
    canvas /= np.float32(255)
    return torch.from_numpy(canvas.reshape(u.shape[0], 3, size, size))


# --------------------------------------------------------------------------------------------
# Showing


def sample_figure(batch: Batch, k: int = 8, *, columns: int = 8, inches: float = 1.6):
    """The first ``k`` images of a batch, each with its mask outlined and its class as title.

    Parameters
    ----------
    batch : Batch
    k : int
        How many images, at most ``len(batch)``.
    columns : int
        Images per row.
    inches : float
        Width of one image in the figure.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per image (pixels as :meth:`Batch.rgb`, nearest neighbour); the outline (yellow on
        a black halo) follows the edge of the mask's pixels.
    """
    import matplotlib.pyplot as plt

    if not isinstance(batch, Batch):
        raise TypeError(f"batch must be a synthetic.Batch, got {type(batch).__name__}")
    k = integer("k", k, 1)
    if k > len(batch):
        raise ValueError(f"k is {k} but the batch holds {len(batch)} images; show at most {len(batch)}")
    columns = min(integer("columns", columns, 1), k)
    rows = -(-k // columns)
    fig, axes = plt.subplots(rows, columns, squeeze=False, figsize=(columns * inches, rows * (inches + 0.3)))
    rgb = batch.rgb().numpy()
    names = batch.class_names
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= k:
            continue
        ax.imshow(rgb[i], interpolation="nearest")
        mask = batch.masks[i].numpy().astype(np.float32)
        ax.contour(mask, levels=[0.5], colors="black", linewidths=2.2)
        ax.contour(mask, levels=[0.5], colors="yellow", linewidths=1.0)
        ax.set_title(names[i], fontsize=9)
    fig.tight_layout()
    return fig
