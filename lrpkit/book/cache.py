"""The build's cache: every step's outputs kept under the fingerprint of everything they depend on.

A *step* of the build makes files from inputs: a figure notebook (:func:`figure_inputs`) or an
experiment (:mod:`lrpkit.book.experiments`, which keys its results by the same ingredients). Its *inputs* are a JSON-able mapping: the files it reads by checksum, its
parameters, lrpkit's version with a hash of its source (:func:`code_inputs`), the versions of the
packages that change numbers or pictures, the checksums of its images (:func:`data_checksums`) and
of its weights (:func:`weights_inputs`). :func:`fingerprint` hashes the inputs; a :class:`Cache`
keeps a step's outputs in a folder named after it, so that a step whose inputs are unchanged is
not run again. The folder appears complete or not at all (:meth:`Entry.fill`): a failed or
interrupted step leaves nothing behind, and an earlier result stays untouched.
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
from .registry import Figure

__all__ = ["PINNED_PACKAGES", "Cache", "Entry", "fingerprint", "code_inputs", "data_checksums", "weights_inputs",
           "figure_inputs"]

#: Packages whose versions are part of a step's inputs (they change the numbers or pictures).
PINNED_PACKAGES = ("torch", "torchvision", "numpy", "matplotlib", "opencv-contrib-python-headless",
                   "pillow", "pandas", "seaborn")


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


def weights_inputs(weights: str) -> dict[str, Any]:
    """What the ``weights`` parameter resolves to: for ``auto``/``imagenet`` whether the
    pretrained file is present (and its checksum), for a path the file's checksum."""
    weights = str(weights)
    if weights == "random":
        return {}
    if weights in ("auto", "imagenet"):
        from .. import models

        file = models.pretrained_file("vgg16")
        return {"pretrained_file_sha256": _sha256(file) if file.is_file() else None}
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--weights {weights!r}: no such file (use auto, imagenet, "
                                "random or the path of a VGG-16 state dict)")
    return {"weights_file_sha256": _sha256(path)}


def figure_inputs(root: Path, figure: Figure, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a figure notebook's result depends on: its cache key is their :func:`fingerprint`.
    For a figure that reads experiments, their fingerprints too
    (:func:`lrpkit.book.experiments.inputs_of_figure`). The machine's kernels are an input too
    (:func:`lrpkit.provenance.machine`): float32 rounding decides which heatmaps the thesis code
    breaks, so a build with ``ONEDNN_MAX_CPU_ISA`` set, or on another CPU or GPU, runs again."""
    from ..checksums import sha256_file
    from ..provenance import machine
    from .experiments import inputs_of_figure
    from .registry import load_experiments

    return {
        "figure": figure.id,
        "notebook_sha256": sha256_file(root / figure.notebook),
        "parameters": dict(parameters),
        **code_inputs(),
        "data_sha256": data_checksums(figure.data, f"figure {figure.id!r}"),
        **weights_inputs(parameters["weights"]),
        "machine": machine(str(parameters.get("device", "cpu"))),
        **(inputs_of_figure(root, figure.experiment, load_experiments(root), parameters)
           if figure.experiment else {}),
    }
