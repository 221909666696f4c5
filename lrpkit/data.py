"""Images: loading and normalising, the checksummed image sets of the book, ILSVRC-2012 validation.

Image loading
-------------
:func:`load_image` turns any image file Pillow reads into the normalised tensor a torchvision
ImageNet model expects, ``[1, 3, size, size]``, and can also hand back the uint8 RGB pixels the
tensor was made from (Pixel-Flipping inpaints those). Grayscale, palette, RGBA/LA (composited over
white), CMYK, YCbCr and 16-bit images become 8-bit RGB; EXIF orientation is applied. Bad files raise
one clear error naming the file.

Image sets
----------
The images of the book are listed in ``data/images.tsv`` (file, sha256, public source URL, class)
and grouped into named sets in ``data/sets.tsv`` (``castle``, ``castle2``, ``axolotl``,
``dalmatian``, ``alp``, ``random10``, ``salamanders``, ``imagenet-samples``). :func:`fetch` copies them from a mirror
folder (argument ``mirror`` or the environment variable ``LRPKIT_DATA_MIRROR``) or downloads them
from their URLs, checks each sha256, and keeps them in the cache folder (:func:`cache_dir`:
``$LRPKIT_CACHE`` if set, else ``data/cache/`` of the checkout, which git ignores). A file whose
checksum does not match is rejected and never used.

ILSVRC-2012 validation
----------------------
A user's copy of the validation set is read by :class:`lrpkit.imagenet.ImageNetVal`, beside the
other facts of the dataset.

References
----------
O. Russakovsky et al. ImageNet Large Scale Visual Recognition Challenge. IJCV 115, 2015.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import shutil
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from . import imagenet
from ._checks import choice
from .checksums import sha256_file

__all__ = [
    "MAX_PIXELS",
    "MIN_SIDE",
    "RESIZE_MODES",
    "ChecksumError",
    "ImageRecord",
    "read_rgb",
    "normalize",
    "load_image",
    "load_images",
    "manifest",
    "image_sets",
    "image_set",
    "fetch",
    "cache_dir",
    "data_dir",
    "mirror_file",
    "checkout_mirror",
]

#: Largest image accepted by :func:`read_rgb` (pixels); larger files are refused, not decoded.
MAX_PIXELS = 100_000_000
#: Smallest accepted shorter side (pixels): VGG's five pooling stages need 32.
MIN_SIDE = 32
#: Ways to bring an image to ``size x size``.
RESIZE_MODES = ("auto", "crop", "exact", "none")

MIRROR_ENV = "LRPKIT_DATA_MIRROR"
CACHE_ENV = "LRPKIT_CACHE"


class ChecksumError(ValueError):
    """A file's sha256 differs from the manifest's; the file is rejected."""


# --------------------------------------------------------------------------------------------
# Loading one image


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited over white)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I"):  # 16-bit (I;16, I;16B, ...) or 32-bit integer grayscale
        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"unsupported image {path}: integer pixels outside the 16-bit range")
        gray = np.round(values.astype(np.float64) / 257.0).astype(np.uint8)
        return Image.fromarray(np.stack([gray] * 3, axis=-1), "RGB")
    if mode == "F":
        raise ValueError(f"unsupported image {path}: floating-point pixels (mode F) have no "
                         "defined range; convert it to 8- or 16-bit first")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
    try:
        return img.convert("RGB")
    except ValueError as err:
        raise ValueError(f"unsupported image {path}: cannot convert mode {mode} to RGB ({err})") from None


def _check_size(size: int, max_pixels: int = MAX_PIXELS) -> int:
    """The side of the square input: VGG takes any size from 32 (its adaptive pooling does the rest);
    the square image must stay within the pixel limit."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, not {type(size).__name__}")
    if size < MIN_SIDE:
        raise ValueError(f"size {size!r} is too small: VGG's five 2x2 max-pools need an input side of "
                         f"at least {MIN_SIDE}")
    if size * size > max_pixels:
        raise ValueError(f"size {size!r} is too large: a {size}x{size} image has {size * size} pixels, more "
                         f"than the limit of {max_pixels} (max_pixels); use a size of at most {math.isqrt(max_pixels)}")
    return size


def _resize(img: Image.Image, size: int, resize: str, path: Path) -> Image.Image | np.ndarray:
    width, height = img.size
    if resize == "auto":
        resize = "none" if (width, height) == (size, size) else "crop"
    if resize == "none":
        if (width, height) != (size, size):
            raise ValueError(f"image {path} is {width}x{height}, not {size}x{size} "
                             "(resize='none'); use resize='crop' or 'exact'")
        return img
    from torchvision.transforms import InterpolationMode, functional

    if resize == "exact":
        return functional.resize(img, [size, size], InterpolationMode.BILINEAR)
    # "crop": torchvision's ImageNet evaluation transform, shorter side to size * 256 / 224 (256 for
    # 224), then the centre size x size. The crop is taken from the array, as torchvision's
    # center_crop places it: Pillow's crop would apply its decompression-bomb check (89 MP) to the
    # image lrpkit makes itself, whose size _check_size already limits.
    img = functional.resize(img, round(size * 256 / 224), InterpolationMode.BILINEAR)
    top, left = (int(round((side - size) / 2.0)) for side in (img.height, img.width))
    return np.asarray(img)[top:top + size, left:left + size]


def read_rgb(path: str | os.PathLike, size: int = 224, resize: str = "auto", *,
             max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> np.ndarray:
    """Read an image file as uint8 RGB pixels ``[size, size, 3]``.

    Parameters
    ----------
    path : str or path
        Any file Pillow reads (JPEG, PNG, TIFF, BMP, WebP, GIF: first frame).
    size : int
        Side of the square output: at least 32 (VGG's five 2x2 max-pools need it; lrpkit, like
        torchvision, runs any larger size through VGG's adaptive pooling), and ``size²`` at most
        ``max_pixels`` (a side of 10000 by default).
    resize : {"auto", "crop", "exact", "none"}
        ``"crop"``: shorter side to ``round(size * 256 / 224)`` (bilinear), then the centre
        ``size x size`` (torchvision's ImageNet evaluation transform). ``"exact"``: stretch to
        ``size x size``. ``"none"``: the image must already be ``size x size``. ``"auto"``
        (default): ``"none"`` for an image that is already ``size x size`` (like the thesis's
        224x224 castle), else ``"crop"``.
    max_pixels : int
        Larger images are refused before they are decoded, and so is a larger ``size²``.
    min_side : int
        Images whose shorter side is smaller are refused (upsampling them would invent content).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Empty, not an image, truncated or corrupt, too small, too large, or unsupported pixels.
    """
    choice("resize mode", resize, RESIZE_MODES)
    size = _check_size(size, max_pixels)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ValueError(f"not an image file but a directory: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"empty file, not an image: {path}")
    with warnings.catch_warnings():
        # lrpkit applies its own limit (max_pixels) before decoding
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except UnidentifiedImageError:
            raise ValueError(f"not an image file (no image format recognised): {path}") from None
        except Image.DecompressionBombError as err:
            found = re.search(r"\((\d+) pixels\)", str(err))
            count = found.group(1) if found else f"more than {max_pixels}"
            raise ValueError(f"image too large: {path} has {count} pixels (limit {max_pixels}); "
                             "downscale it first") from None
        except OSError as err:
            raise ValueError(f"cannot read image {path}: {err}") from None
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise ValueError(f"image too large: {path} is {width}x{height} = {width * height} "
                             f"pixels (limit {max_pixels}); downscale it first")
        if min(width, height) < min_side:
            raise ValueError(f"image too small: {path} is {width}x{height} pixels; the shorter "
                             f"side must be at least {min_side}")
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise ValueError(f"truncated or corrupt image file {path}: {err}") from None
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception as err:  # noqa: BLE001 - malformed EXIF must not stop the image
            warnings.warn(f"{path}: EXIF orientation ignored (unreadable EXIF: {err})", stacklevel=2)
            oriented = img.copy()
        rgb = _to_rgb(oriented, path)
    rgb = _resize(rgb, size, resize, path)
    return np.array(rgb, dtype=np.uint8)


def normalize(rgb: np.ndarray | torch.Tensor, device: str | torch.device | None = None) -> torch.Tensor:
    """uint8 RGB ``[H, W, 3]`` (or a batch ``[B, H, W, 3]``) to the normalised float32 tensor
    ``[B, 3, H, W]``: ``(rgb / 255 - imagenet.MEAN) / imagenet.STD``."""
    pixels = torch.as_tensor(np.asarray(rgb))
    if pixels.dtype != torch.uint8:
        raise TypeError(f"rgb must be uint8 pixels, not {pixels.dtype}")
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"rgb must have shape [H, W, 3] or [B, H, W, 3], not {list(pixels.shape)}")
    x = pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    mean = torch.tensor(imagenet.MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(imagenet.STD, dtype=torch.float32).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous().to(device) if device is not None else x.contiguous()


def load_image(path: str | os.PathLike, size: int = 224, resize: str = "auto", *,
               return_rgb: bool = False, device: str | torch.device | None = None,
               max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE):
    """Load an image as the normalised tensor ``[1, 3, size, size]`` of a torchvision model.

    Parameters are those of :func:`read_rgb`; with ``return_rgb=True`` the uint8 RGB pixels
    ``[size, size, 3]`` the tensor was made from are returned too, as ``(x, rgb)``.
    """
    rgb = read_rgb(path, size, resize, max_pixels=max_pixels, min_side=min_side)
    x = normalize(rgb, device)
    return (x, rgb) if return_rgb else x


def load_images(paths: Sequence[str | os.PathLike], size: int = 224, resize: str = "auto", *,
                return_rgb: bool = False, device: str | torch.device | None = None,
                progress: bool | None = None):
    """Load several images as one batch ``[N, 3, size, size]`` (and ``[N, size, size, 3]`` uint8
    with ``return_rgb=True``), with a progress bar for long lists."""
    paths = list(paths)
    if not paths:
        raise ValueError("no images given")
    rgbs = [read_rgb(p, size, resize) for p in
            tqdm(paths, desc="load images", unit="image", disable=_no_bar(progress, len(paths)))]
    rgb = np.stack(rgbs)
    x = normalize(rgb, device)
    return (x, rgb) if return_rgb else x


def _no_bar(progress: bool | None, count: int) -> bool | None:
    """tqdm's ``disable``: None (automatic: only on a terminal) unless forced, and never for one item."""
    if progress is None:
        return True if count <= 1 else None
    return not progress


# --------------------------------------------------------------------------------------------
# Image sets: manifest, cache, fetch


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image of the manifest ``data/images.tsv``.

    Attributes
    ----------
    file : str
        Path relative to the cache (and to a mirror folder), e.g. ``imagenet-samples/...JPEG``.
    sha256 : str
        Checksum the fetched file must have.
    source_url : str
        Public URL it is downloaded from.
    class_index, wnid, class_name :
        ImageNet label (torchvision's class index, WordNet id, name).
    path : pathlib.Path or None
        Where the verified file lies in the cache (set by :func:`image_set`).
    """

    file: str
    sha256: str
    source_url: str
    class_index: int
    wnid: str
    class_name: str
    path: Path | None = None


def data_dir() -> Path:
    """The checkout's ``data/`` folder with the manifests."""
    folder = Path(__file__).resolve().parent.parent / "data"
    if not (folder / "images.tsv").is_file():
        raise FileNotFoundError(
            f"image manifest not found: {folder / 'images.tsv'} (lrpkit's image sets need its "
            "source checkout; install it with pip install -e)")
    return folder


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Folder the fetched images are kept in: ``cache`` if given, else ``$LRPKIT_CACHE``, else
    ``data/cache/`` of the checkout (ignored by git)."""
    if cache is None:
        cache = os.environ.get(CACHE_ENV) or None
    if cache is None:
        return data_dir() / "cache"
    return Path(cache).expanduser()


def _mirror(mirror: str | os.PathLike | None) -> Path | None:
    source = "mirror"
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV, "").strip() or None
        source = f"mirror folder of {MIRROR_ENV}"
    if mirror is None:
        return None
    folder = Path(mirror).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{source} not found: {folder}")
    return folder


def checkout_mirror() -> Path:
    """``shared/data`` beside the checkout, where the Makefile and CI keep the mirror folder (the
    default of :func:`mirror_file` and of the benchmarks and scripts)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def mirror_file(name: str, mirror: str | os.PathLike | None = None) -> Path:
    """A file of the mirror folder, read in place (benchmarks and tests that need, e.g.,
    ``castle.jpg`` without fetching it into the cache).

    The folder is ``mirror`` if given, else ``$LRPKIT_DATA_MIRROR``, else ``shared/data`` beside the
    checkout (where the Makefile and CI keep it).

    Raises
    ------
    FileNotFoundError
        No mirror folder, or the file is not in it; the message says how to set the folder.
    """
    folder = _mirror(mirror)
    if folder is None:
        folder = checkout_mirror()
    path = folder / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not in the mirror folder {folder}; set {MIRROR_ENV} to the folder "
                                "holding the image files")
    return path


def manifest() -> list[ImageRecord]:
    """All images of ``data/images.tsv``, in file order."""
    with open(data_dir() / "images.tsv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [ImageRecord(file=r["file"], sha256=r["sha256"], source_url=r["source_url"],
                        class_index=int(r["class_index"]), wnid=r["wnid"],
                        class_name=r["class_name"]) for r in rows]


def image_sets() -> dict[str, tuple[str, ...]]:
    """Named image sets of ``data/sets.tsv``: set name -> files (in the order listed)."""
    sets: dict[str, list[str]] = {}
    with open(data_dir() / "sets.tsv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            sets.setdefault(row["set"], []).append(row["file"])
    return {name: tuple(files) for name, files in sets.items()}


def _select(names: str | Iterable[str] | None) -> list[ImageRecord]:
    records = manifest()
    if names is None:
        return records
    if isinstance(names, str):
        names = [names]
    sets = image_sets()
    by_file = {r.file: r for r in records}
    chosen: dict[str, ImageRecord] = {}
    for name in names:
        choice("image set", name, tuple(sorted(sets)), known="the known sets")
        for file in sets[name]:
            chosen.setdefault(file, by_file[file])
    return list(chosen.values())


def _download(url: str, dest: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "lrpkit"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise FileNotFoundError(
            f"cannot download {url} ({reason}); without network, set {MIRROR_ENV} or pass "
            "--mirror DIR with a folder holding the files") from None


def _fetch_one(record: ImageRecord, dest: Path, mirror: Path | None, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        if mirror is not None:
            source = mirror / record.file
            if not source.is_file():
                raise FileNotFoundError(f"{record.file} is not in the mirror folder {mirror}")
            shutil.copyfile(source, part)
        else:
            source = record.source_url
            _download(record.source_url, part, timeout)
        digest = sha256_file(part)
        if digest != record.sha256:
            raise ChecksumError(f"checksum mismatch for {record.file} from {source}: sha256 "
                                f"{digest}, expected {record.sha256}; the file was rejected")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def _verified(path: Path, record: ImageRecord) -> bool:
    """True if the cached file is there and intact; a damaged one is deleted."""
    if not path.is_file():
        return False
    if sha256_file(path) == record.sha256:
        return True
    path.unlink()
    return False


def fetch(sets: str | Iterable[str] | None = None, *, mirror: str | os.PathLike | None = None,
          cache: str | os.PathLike | None = None, force: bool = False,
          progress: bool | None = None, timeout: float = 30.0) -> list[Path]:
    """Fetch the images of the named sets (all of the manifest by default) into the cache.

    Each file is copied from the mirror folder (``mirror``, else ``$LRPKIT_DATA_MIRROR``) when one
    is set, else downloaded from its source URL, and kept only if its sha256 matches the manifest.
    Files already cached and intact are not fetched again (unless ``force``).

    Returns
    -------
    list of pathlib.Path
        The cached files, in manifest order.

    Raises
    ------
    ChecksumError
        A fetched file has the wrong sha256 (it is deleted, not cached).
    FileNotFoundError
        A file missing from the mirror, a failed download, a mirror folder that does not exist.
    ValueError
        An unknown set name.
    """
    records = _select(sets)
    root = cache_dir(cache)
    source = _mirror(mirror)
    paths = []
    bar = tqdm(records, desc="fetch images", unit="file", disable=_no_bar(progress, len(records)))
    for record in bar:
        dest = root / record.file
        if force or not _verified(dest, record):
            _fetch_one(record, dest, source, timeout)
        paths.append(dest)
    return paths


def image_set(name: str, *, fetch_missing: bool = True, mirror: str | os.PathLike | None = None,
              cache: str | os.PathLike | None = None) -> list[ImageRecord]:
    """The images of a named set, each with the ``path`` of its verified file in the cache.

    Missing or damaged files are fetched (see :func:`fetch`) unless ``fetch_missing=False``, in
    which case a :class:`FileNotFoundError` says to run ``lrpkit data fetch``.
    """
    records = _select(name)
    root = cache_dir(cache)
    out = []
    for record in records:
        path = root / record.file
        if not _verified(path, record):
            if not fetch_missing:
                raise FileNotFoundError(f"{record.file} of image set {name!r} is not in the cache "
                                        f"{root}; run `lrpkit data fetch {name}`")
            _fetch_one(record, path, _mirror(mirror), 30.0)
        out.append(dataclasses.replace(record, path=path))
    return out
