"""The build's cache: every step's outputs kept under the fingerprint of everything they depend on.

A *step* of the build makes files from inputs: a figure notebook
(:func:`lrpkit.book.execution.figure_inputs`) or an experiment (:mod:`lrpkit.book.experiments`,
which keys its results by the same ingredients). Its *inputs* are a JSON-able mapping: the files it
reads by checksum, its parameters, lrpkit's version with a hash of its source (:func:`code_inputs`),
the versions of the packages that change numbers or pictures, the checksums of its images
(:func:`data_checksums`) and of its weights (:func:`weights_inputs`). :func:`fingerprint` hashes the
inputs; a :class:`Cache` keeps a step's outputs in a folder named after it, so that a step whose
inputs are unchanged is not run again. The folder appears complete or not at all
(:meth:`Entry.fill`): a failed or interrupted step leaves nothing behind, and an earlier result
stays untouched.

This module is the bottom of the build: it imports none of the steps.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..provenance import lrpkit_version, package_versions

__all__ = ["PINNED_PACKAGES", "BOOK_ARCH", "Cache", "Entry", "fingerprint", "code_inputs", "data_checksums",
           "weights_inputs"]

#: Packages whose versions are part of a step's inputs (they change the numbers or pictures).
PINNED_PACKAGES = ("torch", "torchvision", "numpy", "matplotlib", "opencv-contrib-python-headless",
                   "pillow", "pandas", "seaborn")
#: The network of the book's figure notebooks: whose pretrained file ``weights`` ``auto`` reads.
BOOK_ARCH = "vgg16"


def fingerprint(inputs: Mapping[str, Any]) -> str:
    """SHA-256 of a step's inputs (as JSON with sorted keys): the key of its outputs in the cache."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """The outputs of one step with one set of inputs: the files of :attr:`folder`."""

    fingerprint: str
    inputs: dict
    folder: Path

    @property
    def complete(self) -> bool:
        """Whether the step ran with these inputs and its outputs are there."""
        return self.folder.is_dir()

    @contextlib.contextmanager
    def fill(self) -> Iterator[Path]:
        """A fresh folder for the step to write its outputs into. When the block ends normally the
        folder becomes :attr:`folder` (replacing an earlier one), with the inputs beside the
        outputs (``inputs.json``); when it raises, or is interrupted, it is removed."""
        partial = self.folder.with_name(f".{self.folder.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            yield partial
            (partial / "inputs.json").write_text(json.dumps(self.inputs, indent=2, sort_keys=True, default=str))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        shutil.rmtree(self.folder, ignore_errors=True)
        partial.rename(self.folder)


class Cache:
    """Steps' outputs under ``root/<kind>/<name>/<fingerprint[:20]>/``.

    ``kind`` separates the kinds of step (``"figures"``; an experiment step would use its own),
    ``name`` the steps of one kind (a figure id).
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def entry(self, kind: str, name: str, inputs: Mapping[str, Any]) -> Entry:
        """Where the outputs of step ``name`` with ``inputs`` are (or will be) kept."""
        key = fingerprint(inputs)
        return Entry(fingerprint=key, inputs=dict(inputs), folder=self.root / kind / name / key[:20])


# --------------------------------------------------------------------------------------------
# Inputs


def code_inputs(extra_packages: Sequence[str] = ()) -> dict[str, Any]:
    """What every step depends on: lrpkit (version and source hash) and the pinned packages, with
    ``extra_packages`` that this step also depends on."""
    return {"lrpkit_version": lrpkit_version(), "packages": package_versions(PINNED_PACKAGES + tuple(extra_packages))}


def data_checksums(sets: Sequence[str], owner: str = "step") -> dict[str, str]:
    """SHA-256 of every image of the named image sets, from the manifest ``data/images.tsv`` that
    :mod:`lrpkit.data` checks every fetched file against. ``owner`` names the step in errors."""
    if not sets:
        return {}
    from .. import data

    known = data.image_sets()
    unknown = [name for name in sets if name not in known]
    if unknown:
        raise ValueError(f"{owner}: data {unknown} are not image sets of data/sets.tsv "
                         f"({', '.join(sorted(known))})")
    wanted = {file for name in sets for file in known[name]}
    return {r.file: r.sha256 for r in data.manifest() if r.file in wanted}


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of a (large) file, remembered per (path, size, mtime) within the process."""
    from ..checksums import sha256_file  # the one file checksum of the package

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(path)
    return _SHA_MEMO[key]


def weights_inputs(weights: str, *, arch: str = BOOK_ARCH) -> dict[str, Any]:
    """What the ``weights`` parameter resolves to, as a step's inputs.

    Parameters
    ----------
    weights : str
        ``auto``, ``imagenet``, ``random`` or the path of a state dict.
    arch : str
        The network the weights are for (one of :data:`lrpkit.models.VGG_ARCHS`): whose pretrained
        file ``auto`` and ``imagenet`` read.

    Returns
    -------
    dict
        For ``auto``/``imagenet`` whether the pretrained file is present (and its checksum), for a
        path the file's checksum, for ``random`` nothing.

    Raises
    ------
    FileNotFoundError
        A path that is not a file.
    """
    weights = str(weights)
    if weights == "random":
        return {}
    if weights in ("auto", "imagenet"):
        from .. import models

        file = models.pretrained_file(arch)
        return {"pretrained_file_sha256": _sha256(file) if file.is_file() else None}
    path = Path(weights).expanduser()
    if not path.is_file():
        name = arch.upper().replace("VGG", "VGG-", 1)
        raise FileNotFoundError(f"--weights {weights!r}: no such file (use auto, imagenet, "
                                f"random or the path of a {name} state dict)")
    return {"weights_file_sha256": _sha256(path)}
