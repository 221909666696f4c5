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

References
----------
O. Russakovsky et al. ImageNet Large Scale Visual Recognition Challenge. IJCV 115, 2015.
"""
from __future__ import annotations

import csv
import difflib
import functools
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["MEAN", "STD", "NUM_CLASSES", "LEMMAS_FILE", "WNID", "categories", "wnids", "lemmas",
           "class_index", "class_name", "check_target"]

#: torchvision's ImageNet normalization: per-channel mean and standard deviation of RGB in [0, 1].
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Number of ImageNet-1k classes (the output size of every torchvision VGG).
NUM_CLASSES = 1000
#: The WordNet ids and synonyms of the 1000 classes, in class-index order.
LEMMAS_FILE = Path(__file__).with_name("imagenet_lemmas.tsv")
#: What a WordNet id looks like (``n01632777``).
WNID = re.compile(r"n\d{8}")


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
