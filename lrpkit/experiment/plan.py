"""The work of an experiment: its units (one image each), shards of them, and what they cost.

A *unit* is one image: the heatmaps of its whole grid, then Pixel-Flipping of all of them in all
orders. Units are independent, so they are the grain of resuming (a finished unit is one file) and
of sharding (``--shard K/N`` takes every N-th unit, starting at the K-th).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .. import data, imagenet, pf
from .._checks import choice
from ..checksums import sha256_file
from .config import Config, ConfigError

__all__ = ["Unit", "units", "synthetic_images", "synthetic_sha256", "parse_shard", "shard_units", "Cost", "cost"]


@dataclasses.dataclass(frozen=True)
class Unit:
    """One image of the experiment.

    Attributes
    ----------
    index : int
        Position in the experiment's image list (0-based).
    id : str
        Zero-padded index, the name of its results file (``units/<id>.parquet``).
    file : str
        The image's name, machine-independent: its file in an image set, its path relative to the
        ILSVRC-2012 validation folder, or ``<split>/<index>`` of the ground-truth task
        (``synthetic:test/00012``).
    path : pathlib.Path
        Where it is read from on this machine (for the ground-truth task: the trained network's folder,
        whose task generates it).
    label : int
        Its ground-truth class (ImageNet's, or the task's).
    sha256 : str
        Checksum of the file (for the ground-truth task: of its pixels, mask and label,
        :func:`synthetic_sha256`).
    """

    index: int
    id: str
    file: str
    path: Path
    label: int
    sha256: str

    def record(self) -> Dict[str, object]:
        """What a results directory keeps of the unit (and compares on resume): no local path."""
        return {"unit": self.id, "file": self.file, "label": self.label, "sha256": self.sha256}


def units(config: Config) -> List[Unit]:
    """The experiment's units, in order: the images of the set, of the ground-truth task's split, or of
    the class in the validation folder.

    Image-set files are fetched into the cache if missing (checked by sha256); validation images
    are checksummed here.
    """
    images = config.data["images"]
    if images["synthetic"] is not None:
        batch = synthetic_images(config, 0, images["count"])
        split = images["synthetic"]
        found = [(f"synthetic:{split}/{k:05d}", Path(config.data["model"]["trained"]), int(batch.labels[k]),
                  synthetic_sha256(batch, k)) for k in range(len(batch))]
    elif images["set"] is not None:
        name = images["set"]
        try:
            choice("image set", name, tuple(sorted(data.image_sets())), known="the known sets")
        except ValueError as err:
            raise ConfigError(f"{config.source}: key 'images.set': {err}") from None
        records = data.image_set(name)
        count = images["count"]
        if count is not None:
            if count > len(records):
                raise ConfigError(f"{config.source}: key 'images.count' is {count} but image set {name!r} has "
                                  f"{len(records)} images")
            records = records[:count]
        found = [(r.file, Path(r.path), r.class_index, r.sha256) for r in records]
    else:
        root = Path(images["imagenet_val"])
        val = imagenet.ImageNetVal(root, labels=images["labels"], devkit=images["devkit"], wnids=images["wnids"])
        cls = images["class"]
        try:
            index = val.class_index(cls)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{config.source}: key 'images.class' {cls!r}: {err}") from None
        paths = val.images(index)
        if not paths:
            raise ConfigError(f"{config.source}: the ILSVRC-2012 validation folder {root} holds no image of class "
                              f"{index} ({val.categories[index]}); check key 'images.class' or the folder")
        count = images["count"]
        if count is not None:
            if count > len(paths):
                raise ConfigError(f"{config.source}: key 'images.count' is {count} but class {index} "
                                  f"({val.categories[index]}) has {len(paths)} images in {root}")
            paths = paths[:count]
        found = [(p.relative_to(root).as_posix(), p, index, sha256_file(p)) for p in paths]
    width = max(4, len(str(len(found) - 1)))
    return [Unit(k, f"{k:0{width}d}", file, path, label, digest)
            for k, (file, path, label, digest) in enumerate(found)]


def synthetic_images(config: Config, start: int, n: int):
    """Images ``start .. start + n - 1`` of the config's split of the ground-truth task: the task and
    seed that ``model.trained``'s network was trained with (:func:`lrpkit.synthetic.generate`)."""
    from .. import synthetic, training

    trained = training.recorded_config(config.data["model"]["trained"])
    return synthetic.generate(trained.task, n, seed=trained.seed, split=config.data["images"]["synthetic"],
                              start=start)


def synthetic_sha256(batch, k: int) -> str:
    """sha256 of image ``k`` of a :class:`lrpkit.synthetic.Batch`: its uint8 pixels, its mask and its label."""
    digest = hashlib.sha256(batch.rgb()[k].numpy().tobytes())
    digest.update(batch.masks[k].numpy().tobytes())
    digest.update(str(int(batch.labels[k])).encode())
    return digest.hexdigest()


_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> Tuple[int, int]:
    """``"K/N"`` → ``(K, N)`` with ``1 <= K <= N``; a ValueError naming the value otherwise."""
    match = _SHARD.fullmatch(str(text))
    if not match:
        raise ValueError(f"shard {text!r} is not K/N (e.g. 2/8: the second of eight shares)")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {text!r} is out of range: K must be in 1..N (e.g. 1/{max(n, 2)} .. "
                         f"{max(n, 2)}/{max(n, 2)})")
    return k, n


def shard_units(all_units: Sequence[Unit], shard: Optional[Tuple[int, int]]) -> List[Unit]:
    """The units of shard ``(K, N)``: those with ``index % N == K - 1`` (all units for None).

    Round robin rather than blocks, so that shards get a fair mix when images differ in cost.
    """
    if shard is None:
        return list(all_units)
    k, n = shard
    return [u for u in all_units if u.index % n == k - 1]


@dataclasses.dataclass(frozen=True)
class Cost:
    """The work of some units, counted from the config alone.

    ``forward`` and ``inpaintings`` are upper bounds: Pixel-Flipping builds and scores an image that
    several heatmaps or orders share once, and how many are shared is known only once the heatmaps
    are. ``naive_forward`` and ``naive_inpaintings`` are what one Pixel-Flipping run per heatmap and
    order needs (the thesis code's procedure).
    """

    units: int
    heatmaps: int
    lrp_passes: int
    curves: int
    forward: int
    inpaintings: int
    naive_forward: int
    naive_inpaintings: int
    road_forward: int = 0
    road_imputations: int = 0

    def lines(self) -> List[str]:
        per = max(self.curves, 1)
        road = [f"ROAD (road): at most {self.road_forward} forward passes and {self.road_imputations} imputations "
                f"(sparse solves)"] if self.road_imputations else []
        return road + [
            f"{self.units} units (images), {self.heatmaps} heatmaps in {self.lrp_passes} batched LRP passes, "
            f"{self.curves} Pixel-Flipping curves",
            f"forward passes: at most {self.forward} ({self.forward / per:.1f} per curve; one run per curve: "
            f"{self.naive_forward}, {self.naive_forward / per:.0f} per curve)",
            f"inpaintings: at most {self.inpaintings} ({self.inpaintings / per:.1f} per curve; one run per curve: "
            f"{self.naive_inpaintings}, {self.naive_inpaintings / per:.0f} per curve)",
        ]


def steps(config: Config) -> Tuple[int, int]:
    """``(n_steps, n_partial)``: the schedule's steps, and those that perturb only part of the image."""
    p = config.data["pf"]
    size = config.data["images"]["size"]
    n_patches = (-(-size // p["patch_size"])) ** 2
    counts = pf.flip_schedule(n_patches, p["schedule"], p["steps"])
    return len(counts), sum(1 for c in counts if c < n_patches)


def cost(config: Config, n_units: int) -> Cost:
    """Count the work of ``n_units`` units of ``config``."""
    settings = config.n_settings
    orders = config.orders
    heat_orders = [o for o in orders if o != "random"]
    n_steps, partial = steps(config)
    mode = config.data["pf"]["mode"]
    chained = mode == "inpainting" and config.data["pf"]["thesis_compat"] not in (False, [])
    # one run per curve scores the unperturbed image and every partly perturbed step (28 for the thesis
    # schedule; a fully perturbed step is the gray image, the same for every curve)
    per_curve_forward = partial + 1
    rows = settings * len(heat_orders) + (1 if "random" in orders else 0)
    images_per_unit = 2 + rows * (n_steps if chained else partial)
    inpaint_per_unit = rows * (n_steps if chained else partial) if mode == "inpainting" else 0
    curves = n_units * settings * len(orders)
    road_steps = len(config.data["road"]["percentages"]) if config.data["road"] is not False else 0
    return Cost(road_forward=n_units * (2 + rows * road_steps) if road_steps else 0,
                road_imputations=n_units * rows * road_steps,units=n_units, heatmaps=n_units * settings,
                lrp_passes=n_units * math.ceil(settings / config.data["lrp"]["chunk_size"]), curves=curves,
                forward=n_units * images_per_unit, inpaintings=n_units * inpaint_per_unit,
                naive_forward=curves * per_curve_forward,
                naive_inpaintings=curves * (partial if mode == "inpainting" else 0))
