"""ImageNet-1k (ILSVRC-2012): normalization, class indices, names and wnids.

Everything lrpkit knows about the dataset its VGG networks were trained on, in one place (as
zennit keeps ``zennit.torchvision``):

- :data:`MEAN`, :data:`STD`: torchvision's normalization of ImageNet input,
  ``x = (pixels / 255 - MEAN) / STD`` per channel;
- :data:`NUM_CLASSES` (1000) and :func:`check_target`, a class index checked against it;
- :func:`categories`: torchvision's short class names (``"tank"``), in class-index order (the
  sorted wnids);
- :func:`wnids` and :func:`lemmas`: the WordNet id and the WordNet synonyms of every class
  (``"tank, army tank, armored combat vehicle, armoured combat vehicle"``), shipped as
  :data:`LEMMAS_FILE` (index, wnid, lemmas: the ``words`` of the ILSVRC-2012 devkit; this copy
  from timm 1.0.31's ``imagenet_synset_to_lemma.txt``);
- :func:`class_index` and :func:`class_name`: from a name (torchvision's or WordNet's, whole or in
  part) to the index and back.
- :class:`ImageNetVal`: a user's copy of the ILSVRC-2012 validation images (class subfolders named
  by wnid, or flat files with a label file or the devkit), its classes selected by index, wnid or
  name.

This module imports nothing of lrpkit (:mod:`lrpkit.data` imports it).

References
----------
O. Russakovsky et al. ImageNet Large Scale Visual Recognition Challenge. IJCV 115, 2015.
"""
from __future__ import annotations

import csv
import difflib
import functools
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["MEAN", "STD", "NUM_CLASSES", "LEMMAS_FILE", "WNID", "categories", "wnids", "lemmas",
           "class_index", "class_name", "check_target", "ImageNetVal"]

#: torchvision's ImageNet normalization: per-channel mean and standard deviation of RGB in [0, 1].
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Number of ImageNet-1k classes (the output size of every torchvision VGG).
NUM_CLASSES = 1000
#: The WordNet ids and synonyms of the 1000 classes, in class-index order.
LEMMAS_FILE = Path(__file__).with_name("imagenet_lemmas.tsv")
#: What a WordNet id looks like (``n01632777``).
WNID = re.compile(r"n\d{8}")
#: File suffixes :class:`ImageNetVal` reads as images.
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}


def categories() -> list[str]:
    """The 1000 ImageNet class names in torchvision's (= sorted wnid) order, from torchvision's
    weights metadata."""
    import torchvision

    return list(torchvision.models.get_model_weights("vgg16").IMAGENET1K_V1.meta["categories"])


@functools.lru_cache(maxsize=1)
def _lemmas_table() -> tuple[tuple[str, tuple[str, ...]], ...]:
    with open(LEMMAS_FILE, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return tuple((row["wnid"], tuple(_spaced(s) for s in row["lemmas"].split(","))) for row in rows)


def wnids() -> tuple[str, ...]:
    """The WordNet ids of the 1000 classes in class-index order (``"n01440764"`` is class 0)."""
    return tuple(wnid for wnid, _ in _lemmas_table())


def lemmas() -> tuple[tuple[str, ...], ...]:
    """The WordNet synonyms of every ImageNet class, in class order, e.g. ``("tank", "army tank",
    "armored combat vehicle", "armoured combat vehicle")`` for class 847."""
    return tuple(names for _, names in _lemmas_table())


def _spaced(name: str) -> str:
    return " ".join(name.replace("_", " ").split())


def class_index(cls: int | str) -> int:
    """ImageNet class index of an index (int or digits) or a class name.

    A name is torchvision's (``"axolotl"``, ``"Cardigan"``) or the full WordNet name of the class
    (``"tank, army tank, armored combat vehicle, armoured combat vehicle"``), whole or in part:
    any comma-separated synonyms of one class (``"tank, army tank"``, ``"army tank"``). Case and
    underscores do not matter unless they are needed to tell two classes apart (``"Cardigan"`` 264,
    the corgi, and ``"cardigan"`` 474); torchvision's names come first (``"crane"`` is 517, the
    machine, as torchvision names it; the bird is ``"crane bird"``, 134).

    Raises
    ------
    ValueError
        An index out of range, an unknown name (with close names), or a name shared by several
        classes (with their indices).
    """
    if isinstance(cls, str) and re.fullmatch(r"\s*[+-]?\d+\s*", cls):
        cls = int(cls)
    if not isinstance(cls, str):
        return check_target(cls)
    names = categories()
    exact = [i for i, name in enumerate(names) if name == cls]
    if len(exact) == 1:
        return exact[0]
    key = _spaced(cls).lower()
    loose = [i for i, name in enumerate(names) if name.lower() == key]
    if len(loose) == 1:
        return loose[0]
    if not loose:  # WordNet synonyms, comma-separated: every one must name the same class
        parts = [_spaced(p) for p in cls.split(",") if p.strip()]
        for fold in (str, str.lower):  # exact case first
            wanted = {fold(p) for p in parts}
            loose = [i for i, synonyms in enumerate(lemmas())
                     if wanted <= {fold(n) for n in (*synonyms, names[i])}]
            if len(loose) == 1:
                return loose[0]
    if len(loose) > 1:
        options = ", ".join(f"{i} ({names[i]!r})" for i in loose)
        raise ValueError(f"class name {cls!r} is ambiguous: {options}; give the index")
    near = difflib.get_close_matches(key, [c.lower() for c in names], n=3)
    hint = f" (close: {', '.join(near)})" if near else ""
    raise ValueError(f"unknown ImageNet class name {cls!r}{hint}")


def class_name(index: int) -> str:
    """ImageNet class name of a class index (0-999)."""
    check_target(index)
    return categories()[index]


def check_target(target: Any, num_classes: int = NUM_CLASSES) -> int | None:
    """Check a target class index: None (the predicted class) or an int in [0, num_classes).

    Returns the target as a Python int (or None).
    """
    if target is None:
        return None
    if torch.is_tensor(target) and target.numel() == 1:
        target = target.item()
    if isinstance(target, np.integer):
        target = int(target)
    if isinstance(target, bool) or not isinstance(target, int):
        raise TypeError(f"target must be a class index (int), not {type(target).__name__}")
    if not 0 <= target < num_classes:
        raise ValueError(f"target {target} out of range: the model has {num_classes} classes "
                         f"(0 to {num_classes - 1})")
    return target


# --------------------------------------------------------------------------------------------
# ILSVRC-2012 validation


def _read_wnids(wnids: str | os.PathLike | Sequence[str]) -> list[str]:
    """1000 wnids in torchvision's class order (sorted), from a list or a file holding one per
    line (the first ``n########`` token of each line: LOC_synset_mapping.txt, a TSV, ...)."""
    if isinstance(wnids, (str, os.PathLike)):
        path = Path(wnids)
        if not path.is_file():
            raise FileNotFoundError(f"wnid file not found: {path}")
        found = []
        for line in path.read_text(encoding="utf-8").splitlines():
            match = WNID.search(line)
            if match:
                found.append(match.group())
        wnids = found
    unique = sorted(set(wnids))
    if len(unique) != NUM_CLASSES or len(unique) != len(list(wnids)):
        raise ValueError(f"expected {NUM_CLASSES} distinct ImageNet wnids, got {len(unique)} "
                         f"distinct of {len(list(wnids))}")
    return unique


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)


def _read_devkit(devkit: Path) -> tuple[list[str], list[str]]:
    """Leaf wnids in ILSVRC2012_ID order and, per validation image, its wnid (devkit t12)."""
    meta = devkit / "data" / "meta.mat"
    truth = devkit / "data" / "ILSVRC2012_validation_ground_truth.txt"
    for needed in (meta, truth):
        if not needed.is_file():
            raise FileNotFoundError(f"devkit file not found: {needed}")
    try:
        import scipy.io
    except ImportError:
        raise ValueError("reading the devkit's meta.mat needs scipy (pip install scipy)") from None
    synsets = scipy.io.loadmat(meta, squeeze_me=True)["synsets"]
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets
                  if int(s["num_children"]) == 0}
    try:
        labels = [id_to_wnid[int(line)] for line in truth.read_text().split()]
    except (KeyError, ValueError) as err:
        raise ValueError(f"{truth} holds an ILSVRC2012_ID that is not a leaf class of {meta}: {err}") from None
    return sorted(id_to_wnid.values()), labels


class ImageNetVal:
    """A local copy of the ILSVRC-2012 validation images.

    Parameters
    ----------
    root : str or path
        Either a folder with one subfolder per class, named by wnid (``n01632777/...``; all 1000,
        or pass ``wnids``), or a folder of flat files (``ILSVRC2012_val_00000001.JPEG``, ...) with
        ``labels`` or ``devkit``.
    labels : str or path, optional
        For flat files: a text or CSV file with a line per image, ``<file or id> <label>``, the
        label being torchvision's class index (0-999, e.g. Caffe's ``val.txt``) or a wnid (e.g.
        Kaggle's ``LOC_val_solution.csv``).
    devkit : str or path, optional
        For flat files: the ``ILSVRC2012_devkit_t12`` folder (its ``data/meta.mat`` and
        ``data/ILSVRC2012_validation_ground_truth.txt``; needs scipy).
    wnids : str, path or sequence of str, optional
        The 1000 wnids (a list, or a file with one per line such as ``LOC_synset_mapping.txt``);
        class index = position in sorted order, as in torchvision.

    Attributes
    ----------
    samples : list of (pathlib.Path, int)
        Every image with its class index, sorted by file name within a class.
    wnids : list of str or None
        The 1000 wnids in class-index order, when known.
    categories : list of str
        Class names from torchvision's weights metadata.

    Examples
    --------
    The thesis's 50 axolotl images: ``ImageNetVal(root).images("axolotl", n=50)`` (class 29).
    """

    def __init__(self, root: str | os.PathLike, *, labels: str | os.PathLike | None = None,
                 devkit: str | os.PathLike | None = None,
                 wnids: str | os.PathLike | Sequence[str] | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageNet validation folder not found: {self.root}")
        self.categories = categories()
        self.wnids: list[str] | None = _read_wnids(wnids) if wnids is not None else None
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and WNID.fullmatch(p.name))
        if folders:
            self._from_folders(folders)
        else:
            self._from_flat(labels, devkit)
        if not self.samples:
            raise ValueError(f"no images found in {self.root}")

    def _from_folders(self, folders: list[Path]) -> None:
        names = [f.name for f in folders]
        if self.wnids is None:
            if len(names) != NUM_CLASSES:
                raise ValueError(
                    f"{self.root} has {len(names)} class folders, not {NUM_CLASSES}: the class "
                    "index is the position among all 1000 sorted wnids, so pass wnids=FILE")
            self.wnids = names
        index = {w: i for i, w in enumerate(self.wnids)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise ValueError(f"class folders {unknown[:3]} in {self.root} are not ImageNet-1k wnids")
        self.samples = [(p, index[f.name]) for f in folders for p in _image_files(f)]

    def _from_flat(self, labels, devkit) -> None:
        files = _image_files(self.root)
        if labels is None and devkit is None:
            raise ValueError(f"{self.root} has no wnid class folders; for flat files pass "
                             "labels=FILE (or --labels) or devkit=DIR (or --devkit)")
        by_stem = {p.stem: p for p in files}
        pairs: list[tuple[Path, int]] = []
        if devkit is not None:
            leaf_wnids, truth = _read_devkit(Path(devkit).expanduser())
            self.wnids = self.wnids or leaf_wnids
            index = {w: i for i, w in enumerate(self.wnids)}
            for number, wnid in enumerate(truth, start=1):
                path = by_stem.get(f"ILSVRC2012_val_{number:08d}")
                if path is not None:
                    pairs.append((path, index[wnid]))
        else:
            pairs = self._read_labels(Path(labels).expanduser(), by_stem)
        self.samples = sorted(pairs, key=lambda s: (s[1], s[0].name))

    def _read_labels(self, labels: Path, by_stem: dict[str, Path]) -> list[tuple[Path, int]]:
        if not labels.is_file():
            raise FileNotFoundError(f"label file not found: {labels}")
        rows = []
        for number, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), start=1):
            tokens = line.replace(",", " ").split()
            if not tokens:
                continue
            if len(tokens) == 1:
                raise ValueError(
                    f"{labels} line {number} has no file name; the devkit's ground truth "
                    "(ILSVRC2012_IDs, not class indices) needs devkit=DIR instead")
            rows.append((number, tokens[0], tokens[1]))
        if rows and not (rows[0][2].isdigit() or WNID.fullmatch(rows[0][2])):
            rows = rows[1:]  # header line, e.g. "ImageId,PredictionString"
        label_wnids = sorted({r[2] for r in rows if WNID.fullmatch(r[2])})
        if label_wnids and self.wnids is None:
            if len(label_wnids) != NUM_CLASSES:
                raise ValueError(f"{labels} names {len(label_wnids)} wnids, not {NUM_CLASSES}; "
                                 "pass wnids=FILE to fix the class order")
            self.wnids = label_wnids
        index = {w: i for i, w in enumerate(self.wnids or [])}
        pairs = []
        for number, name, label in rows:
            if label.isdigit():
                cls = int(label)
                if cls >= NUM_CLASSES:
                    raise ValueError(f"{labels} line {number}: class {cls} out of range 0-999")
            elif label in index:
                cls = index[label]
            else:
                raise ValueError(f"{labels} line {number}: label {label!r} is neither a class "
                                 "index nor a known wnid")
            path = by_stem.get(Path(name).stem)
            if path is not None:
                pairs.append((path, cls))
        return pairs

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int) -> tuple[Path, int]:
        return self.samples[item]

    def class_index(self, cls: int | str) -> int:
        """Class index of an index, a wnid (``"n01632777"``) or a name (``"axolotl"``; case and
        underscores do not matter unless they are needed to tell two classes apart)."""
        if not isinstance(cls, str):
            return class_index(cls)
        if WNID.fullmatch(cls):
            if self.wnids is None:
                raise ValueError(f"wnids of {self.root} are unknown (labels are class indices); "
                                 "pass wnids=FILE to select by wnid")
            if cls not in self.wnids:
                raise ValueError(f"wnid {cls} is not an ImageNet-1k class")
            return self.wnids.index(cls)
        return class_index(cls)

    def images(self, cls: int | str, n: int | None = None) -> list[Path]:
        """The first ``n`` images of a class (all if None), in sorted file-name order: the same
        images on every machine."""
        index = self.class_index(cls)
        paths = sorted((p for p, c in self.samples if c == index), key=lambda p: p.name)
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"n must be a positive int, not {n!r}")
            if n > len(paths):
                raise ValueError(f"class {index} ({self.categories[index]}) has {len(paths)} "
                                 f"images in {self.root}, fewer than n={n}")
            paths = paths[:n]
        return paths
