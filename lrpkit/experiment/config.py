"""The experiment config: a YAML file, checked as a whole before anything runs or is written.

Every key, with its default (only ``composite.family`` and ``images`` are required)::

    name: axolotl-tutorial            # a label, free text (default: the file's stem)
    composite:
      family: tutorial                # tutorial | decreasing-gamma
      variant: table                  # decreasing-gamma: table (Table 4.2) | thesis-code (γ₁ on 1-17)
      heuristic: tutorial             # vanilla | zennit | tutorial (thesis §2.1.5)
      maxpool: avg                    # avg (tutorial) | max (winner takes all)
    grid:                             # the family's two axes (tutorial: gamma, epsilon;
      gamma: {logspace: [-4, 0, 15], zero: true}   # decreasing-gamma: gamma1, gamma2);
      epsilon: [0, 0.01, 0.25, 1.0]   # a list, or {logspace: [start, stop, num], zero: bool}
    images:                           # an image set of data/sets.tsv ...
      set: axolotl
      # synthetic: test                      # ... or a split of model.trained's ground-truth task
      #                                      # (lrpkit.synthetic; needs count; size is the task's)
      # imagenet_val: $IMAGENET_VAL          # ... or an ILSVRC-2012 validation folder ($VARS expand),
      # class: axolotl                       # with a class (index, wnid or name)
      # count: 50                   # the first images of the set or class (default: all)
      # labels: FILE | devkit: DIR | wnids: FILE   # as lrpkit.imagenet.ImageNetVal
      size: 224
      resize: auto                    # auto | crop | exact | none
    target: label                     # label (the ground truth) | predicted (the argmax)
    pf:
      orders: [morf, lrf, random]
      patch_size: 8
      mode: inpainting                # inpainting | random | gray
      schedule: thesis                # thesis | log | linear | a list of cumulative patch counts
      steps: null                     # steps of the log and linear schedules
      score: logit                    # logit | softmax
      auc_x: step                     # step | fraction
      thesis_compat: false            # true, or names from lrpkit.pf.THESIS_COMPAT
      batch_size: null                # images per forward pass (default: 8-32 on a CPU by image size, 64 on a GPU)
    road: false                       # a second grader, ROAD (lrpkit.road), in pf's orders and patches:
                                      # true, or {percentages: [10, 20, ..., 90], noise: 0.01}
    lrp:
      chunk_size: 16                  # heatmaps per LRP backward pass (bounds memory)
    model:
      arch: vgg16
      weights: auto                   # imagenet | random | auto | a state-dict file
      factory: null                   # "module:function" returning an nn.Module (instead of arch)
      trained: null                   # a folder of `lrpkit train` (instead of arch and weights)
    device: cpu                       # cpu | cuda | cuda:N | auto
    seed: 0                           # random weights, the random order and the random mode
    diagnostics: true                 # diag_* columns from lrpkit.diagnostics.instability
    output: null                      # results directory, relative to this file (--out overrides)

What is resolved once -- ``device: auto``, ``weights: auto``, grid specs
into explicit values -- is written resolved into the results directory's ``config.yaml``, so that a
resumed run or another shard computes exactly the same thing.

Errors are :class:`ConfigError`, one line naming the file, the key, the value and the fix.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import numbers
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import yaml

from .. import pf
from .._checks import choice
from ..data import RESIZE_MODES, MIN_SIDE
from ..heuristics import HEURISTICS
from ..models import VGG_ARCHS, WEIGHTS_CHOICES
from ..rules import POOLING
from .grid import FAMILIES, default_axis, logspace_axis

__all__ = ["Config", "ConfigError", "load_config", "apply_changes", "TARGETS", "LOCAL_PATHS", "machine_independent",
           "first_difference"]

TARGETS = ("label", "predicted")

#: Every key of a config and its default; ``REQUIRED`` marks keys without one.
REQUIRED = object()
DEFAULTS: Dict[str, Any] = {
    "name": None,
    "composite": {"family": REQUIRED, "variant": "table", "heuristic": "tutorial", "maxpool": "avg"},
    "grid": None,
    "images": {"set": None, "synthetic": None, "imagenet_val": None, "class": None, "count": None, "labels": None, "devkit": None,
               "wnids": None, "size": 224, "resize": "auto"},
    "target": "label",
    "pf": {"orders": ["morf", "lrf", "random"], "patch_size": 8, "mode": "inpainting", "schedule": "thesis",
           "steps": None, "score": "logit", "auc_x": "step", "thesis_compat": False, "batch_size": None},
    "road": False,
    "lrp": {"chunk_size": 16},
    "model": {"arch": "vgg16", "weights": "auto", "factory": None, "trained": None},
    "device": "cpu",
    "seed": 0,
    "diagnostics": True,
    "output": None,
}
#: Keys that do not change the results: a results directory accepts a config that differs only here.
UNCOMPARED = ("name", "output")
#: Keys (``section.key``) that name a folder or file of this machine: what was read there is
#: identified by checksums (the units', the weights'), so :func:`machine_independent` hides them.
LOCAL_PATHS = ("images.imagenet_val", "images.labels", "images.devkit", "images.wnids", "model.trained")


class ConfigError(ValueError):
    """A config that cannot be run; the message is one line naming the key and the fix."""


@dataclasses.dataclass(frozen=True)
class Config:
    """A checked experiment config.

    Attributes
    ----------
    data : dict
        Every key (defaults filled in, grid axes as explicit lists of floats), as written to a results
        directory's ``config.yaml``.
    source : str
        Where it came from (a file name, for messages).
    root : pathlib.Path
        Folder that relative paths in the config are relative to.
    """

    data: Dict[str, Any]
    source: str = "config"
    root: Path = Path(".")

    # ---- convenient views
    @property
    def family(self) -> str:
        return self.data["composite"]["family"]

    @property
    def variant(self) -> str:
        return self.data["composite"]["variant"]

    @property
    def axes(self):
        """The two :class:`~lrpkit.experiment.grid.Axis` of the family's variant."""
        return FAMILIES[self.family].axes[self.variant]

    @property
    def grid(self) -> Tuple[List[float], List[float]]:
        first, second = self.axes
        return self.data["grid"][first.name], self.data["grid"][second.name]

    @property
    def n_settings(self) -> int:
        first, second = self.grid
        return len(first) * len(second)

    @property
    def orders(self) -> List[str]:
        return list(self.data["pf"]["orders"])

    def pf_options(self) -> pf.PixelFlippingOptions:
        """The ``pf`` section, ``seed`` and ``device`` as the options of :func:`lrpkit.pf.pixel_flipping`.

        These are what every Pixel-Flipping call of the experiment shares (without a progress bar);
        a call adds its rows' ``order`` (and ``workers``, ``keep_steps``) with :func:`dataclasses.replace`,
        and passes the options as ``**dataclasses.asdict(options)``.
        """
        p = self.data["pf"]
        return pf.PixelFlippingOptions(
            patch_size=p["patch_size"], mode=p["mode"], schedule=p["schedule"], score=p["score"],
            seed=self.data["seed"], n_steps=p["steps"], auc_x=p["auc_x"], thesis_compat=p["thesis_compat"],
            batch_size=p["batch_size"], device=self.data["device"], progress=False)

    def road_options(self) -> pf.PixelFlippingOptions:
        """The ``road`` section as the options of :func:`lrpkit.pf.pixel_flipping` with ``mode="road"``:
        pf's patches, score and batch size, the schedule from ``road.percentages``, the AUC over the
        fraction removed. Only for a config with ``road``."""
        from .. import road

        r = self.data["road"]
        if r is False:
            raise ValueError(f"{self.source}: the config has no 'road' section")
        side, patch = self.data["images"]["size"], self.data["pf"]["patch_size"]
        schedule = road.percentage_schedule((-(-side // patch)) ** 2, r["percentages"])
        return dataclasses.replace(self.pf_options(), mode="road", schedule=schedule, n_steps=None, noise=r["noise"],
                                   auc_x="fraction", thesis_compat=False)

    def compared(self) -> Dict[str, Any]:
        """The keys a results directory must agree on (all but :data:`UNCOMPARED`)."""
        return {k: v for k, v in self.data.items() if k not in UNCOMPARED}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True, width=120)

    def output_dir(self) -> Optional[Path]:
        """The ``output`` key as a path (relative to :attr:`root`), or None."""
        out = self.data.get("output")
        return None if out is None else (self.root / out)


def load_config(source: Union[str, os.PathLike, Mapping[str, Any]], *, resolve: bool = True,
                changes: Optional[Mapping[str, Any]] = None) -> Config:
    """Read and check a config: a YAML file, or a mapping with the same keys.

    Parameters
    ----------
    source : path or mapping
    resolve : bool
        Resolve ``device: auto`` (``weights: auto`` is resolved when the model
        is built). False keeps them as written (for reading a results directory's own config).
    changes : mapping, optional
        Keys that replace the source's before it is checked (:func:`apply_changes`): ``grid`` or
        ``images`` replace a whole section, a dotted key such as ``pf.patch_size`` one key of a
        section. Relative paths stay relative to the config file. The book's profiles use this to
        run one config at several scales.

    Raises
    ------
    ConfigError
        Anything wrong, in one line: an unknown key, family or axis name, an empty or negative grid,
        an unknown image set, an unknown order, ...
    """
    if isinstance(source, Mapping):
        raw, name, root = dict(source), "config", Path(".")
    else:
        path = Path(source)
        name, root = path.name, path.parent
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or type(err).__name__
            raise ConfigError(f"{name}:{where} is not valid YAML ({problem})") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{name}: a config is a mapping of keys (composite, grid, images, ...), "
                              f"got {type(raw).__name__}")
        if raw.get("name") is None:
            raw = {**raw, "name": path.stem}
    if changes:
        raw = apply_changes(raw, changes, name)
    return Config(_check(raw, name, resolve, root), source=name, root=root)


def apply_changes(raw: Mapping[str, Any], changes: Mapping[str, Any], source: str = "config") -> Dict[str, Any]:
    """A copy of the config mapping ``raw`` with ``changes`` applied (before any check).

    A plain key (``grid``, ``images``, ``seed``) replaces the whole value; a dotted key
    ``section.key`` (``pf.patch_size``, ``model.weights``) replaces one key inside a section, which
    is created if the source lacks it. Whether the result is a valid config is checked afterwards,
    as for any config.

    Raises
    ------
    ConfigError
        A change whose key is not a string, or is dotted deeper than ``section.key``, or reaches into
        a key that is not a section.
    """
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    for key, value in changes.items():
        if not isinstance(key, str) or key.count(".") > 1 or "" in key.split("."):
            raise ConfigError(f"{source}: change {key!r} must be a key (grid) or section.key (pf.patch_size)")
        section, _, sub = key.partition(".")
        if not sub:
            out[key] = value
            continue
        current = out.get(section)
        if current is None:
            current = {}
        if not isinstance(current, Mapping):
            raise ConfigError(f"{source}: change {key!r} reaches into {section!r}, which is {current!r}, not a "
                              f"section; change {section!r} as a whole")
        out[section] = {**current, sub: value}
    return out


# --------------------------------------------------------------------------------------------------
# checks


def _fail(source: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {message}")


def _merge(raw: Mapping[str, Any], defaults: Mapping[str, Any], source: str, prefix: str = "") -> Dict[str, Any]:
    """Defaults filled in; an unknown key is an error (with a guess at the intended key)."""
    out = {}
    for key in raw:
        if key not in defaults:
            near = difflib.get_close_matches(str(key), [str(k) for k in defaults], n=1)
            hint = f" (did you mean {prefix + near[0]!r}?)" if near else ""
            raise _fail(source, f"unknown key {prefix + str(key)!r}{hint}; known keys: "
                                f"{', '.join(prefix + str(k) for k in defaults)}")
    for key, default in defaults.items():
        value = raw.get(key, default if default is not REQUIRED else None)
        if isinstance(default, dict):
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise _fail(source, f"key {prefix + key!r} must be a mapping (keys {', '.join(default)}), "
                                    f"got {value!r}")
            value = _merge(value, default, source, prefix + key + ".")
        elif default is REQUIRED and value is None:
            raise _fail(source, f"key {prefix + key!r} is required")
        out[key] = value
    return out


def _choice(source: str, key: str, value, options) -> Any:
    try:
        return choice(key, value, options)
    except ValueError as err:
        raise _fail(source, str(err)) from None


def _int(source: str, key: str, value, minimum: int, none_ok: bool = False) -> Optional[int]:
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise _fail(source, f"key {key!r} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _axis(source: str, key: str, spec, symbol: str) -> List[float]:
    """One grid axis: None (the thesis's), a list of values, or {logspace: [start, stop, num], zero: bool}."""
    if spec is None:
        return default_axis()
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"logspace", "zero"}
        if unknown or "logspace" not in spec:
            raise _fail(source, f"grid axis {key!r} must be a list of values or {{logspace: [start, stop, num], "
                                f"zero: true}}, got {dict(spec)!r}")
        ls, zero = spec["logspace"], spec.get("zero", True)
        if (not isinstance(ls, (list, tuple)) or len(ls) != 3 or not all(_number(v) for v in ls[:2])
                or isinstance(ls[2], bool) or not isinstance(ls[2], numbers.Integral) or ls[2] < 0):
            raise _fail(source, f"grid axis {key!r}: logspace must be [start exponent, stop exponent, number of "
                                f"values], e.g. [-4, 0, 15], got {ls!r}")
        if not isinstance(zero, bool):
            raise _fail(source, f"grid axis {key!r}: zero must be true or false, got {zero!r}")
        values = logspace_axis(float(ls[0]), float(ls[1]), int(ls[2]), zero)
    elif isinstance(spec, (list, tuple)):
        if not all(_number(v) for v in spec):
            bad = next(v for v in spec if not _number(v))
            raise _fail(source, f"grid axis {key!r} holds {bad!r}, not a number")
        values = [float(v) for v in spec]
    else:
        raise _fail(source, f"grid axis {key!r} must be a list of values or {{logspace: [start, stop, num], "
                            f"zero: true}}, got {spec!r}")
    if not values:
        raise _fail(source, f"grid axis {key!r} is empty; give at least one value")
    for v in values:
        if not math.isfinite(v):
            raise _fail(source, f"grid axis {key!r} holds {v!r}; values must be finite")
        if v < 0:
            raise _fail(source, f"grid axis {key!r} holds the negative value {v!r}; {symbol} must be >= 0")
    if len(set(values)) != len(values):
        twice = next(v for v in values if values.count(v) > 1)
        raise _fail(source, f"grid axis {key!r} lists {twice!r} twice; every value once")
    return values


def _path(source: str, key: str, root: Path, value: str) -> str:
    """A path of the config (``~`` and ``$VARIABLES`` expanded, relative to the config's folder) made
    absolute: a results directory lives elsewhere."""
    expanded = os.path.expandvars(value)
    if "$" in expanded:
        raise _fail(source, f"key {key!r} is {value!r}, but an environment variable in it is not set")
    path = Path(expanded).expanduser()
    return str(path if path.is_absolute() else Path(os.path.abspath(root / path)))


def _check(raw: Mapping[str, Any], source: str, resolve: bool, root: Path) -> Dict[str, Any]:
    """Defaults filled in and every section checked (each by its own function, in this order)."""
    data = _merge(raw, DEFAULTS, source)
    if data["name"] is not None and not isinstance(data["name"], str):
        data["name"] = str(data["name"])
    _check_composite(data, source)
    _check_model(data, raw, source, root)    # before the images: model.trained's task gives synthetic images
    _check_images(data, raw.get("images") or {}, source, root)
    _check_pf(data, source)
    _check_road(data, source)
    data["lrp"]["chunk_size"] = _int(source, "lrp.chunk_size", data["lrp"]["chunk_size"], 1)
    data["device"] = _device(source, data["device"], resolve)
    data["seed"] = _int(source, "seed", data["seed"], 0)
    if data["diagnostics"] not in (True, False):
        raise _fail(source, f"key 'diagnostics' must be true or false, got {data['diagnostics']!r}")
    if data["output"] is not None and not isinstance(data["output"], str):
        raise _fail(source, f"key 'output' must be a folder path, got {data['output']!r}")
    return data


def _check_composite(data: Dict[str, Any], source: str) -> None:
    """The family, its variant, heuristic and max-pool treatment, and the grid of its two axes."""
    comp = data["composite"]
    family = _choice(source, "composite family", comp["family"], tuple(FAMILIES))
    comp["variant"] = _choice(source, f"variant of {family!r}", comp["variant"], FAMILIES[family].variants)
    comp["heuristic"] = _choice(source, "heuristic", comp["heuristic"], HEURISTICS)
    comp["maxpool"] = _choice(source, "maxpool", comp["maxpool"], POOLING)

    axes = FAMILIES[family].axes[comp["variant"]]
    grid = data["grid"] if data["grid"] is not None else {}
    if not isinstance(grid, Mapping):
        raise _fail(source, f"key 'grid' must map the axes {axes[0].name!r} and {axes[1].name!r} to values, "
                            f"got {grid!r}")
    names = [a.name for a in axes]
    for key in grid:
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise _fail(source, f"unknown grid axis {key!r}{hint} for composite family {family!r}; its axes are "
                                f"{names[0]!r} ({axes[0].label()}) and {names[1]!r} ({axes[1].label()})")
    data["grid"] = {a.name: _axis(source, a.name, grid.get(a.name), a.symbol) for a in axes}


def _check_images(data: Dict[str, Any], raw_images: Mapping[str, Any], source: str, root: Path) -> None:
    """An image set, a split of the ground-truth task or a validation folder with a class (which images
    they hold: plan.units), size, target."""
    images = data["images"]
    if sum(images[k] is not None for k in ("set", "synthetic", "imagenet_val")) != 1:
        raise _fail(source, "key 'images' needs exactly one of 'set' (an image set of data/sets.tsv), 'synthetic' "
                            "(a split of model.trained's ground-truth task) and 'imagenet_val' (an ILSVRC-2012 "
                            "validation folder, with 'class')")
    if images["synthetic"] is not None:
        _check_synthetic(data, raw_images, source)
    elif images["set"] is not None:
        extra = [k for k in ("class", "labels", "devkit", "wnids") if images[k] is not None]
        if extra:
            raise _fail(source, f"key 'images.{extra[0]}' applies to 'imagenet_val' only, not to an image set")
        if not isinstance(images["set"], str):
            raise _fail(source, f"key 'images.set' must be an image set name, got {images['set']!r}")
    else:
        if images["class"] is None:
            raise _fail(source, "key 'images.class' is required with 'imagenet_val' (an index, wnid or name, "
                                "e.g. axolotl)")
        for key in ("imagenet_val", "labels", "devkit", "wnids"):
            if images[key] is not None:
                if not isinstance(images[key], str):
                    raise _fail(source, f"key 'images.{key}' must be a path, got {images[key]!r}")
                images[key] = _path(source, f"images.{key}", root, images[key])
        if not Path(images["imagenet_val"]).is_dir():
            raise _fail(source, f"key 'images.imagenet_val': ILSVRC-2012 validation folder not found: "
                                f"{images['imagenet_val']}")
    images["count"] = _int(source, "images.count", images["count"], 1, none_ok=images["synthetic"] is None)
    images["size"] = _int(source, "images.size", images["size"], MIN_SIDE)
    images["resize"] = _choice(source, "resize mode", images["resize"], RESIZE_MODES)
    data["target"] = _choice(source, "target", data["target"], TARGETS)


def _check_synthetic(data: Dict[str, Any], raw_images: Mapping[str, Any], source: str) -> None:
    """A split of the ground-truth task that ``model.trained``'s network learned: its images are
    generated (:func:`lrpkit.synthetic.generate`, the training's seed), at the task's size."""
    from .. import synthetic, training

    images = data["images"]
    images["synthetic"] = _choice(source, "images.synthetic split", images["synthetic"], synthetic.SPLITS)
    trained = data["model"]["trained"]
    if trained is None:
        raise _fail(source, "key 'images.synthetic' needs 'model.trained': the folder of the network trained on the "
                            "task (lrpkit train --out DIR), whose task the images are drawn from")
    extra = [k for k in ("class", "labels", "devkit", "wnids") if images[k] is not None]
    if extra:
        raise _fail(source, f"key 'images.{extra[0]}' applies to 'imagenet_val' only, not to 'synthetic'")
    if images["count"] is None:
        raise _fail(source, "key 'images.count' is required with 'images.synthetic' (how many images of the split, "
                            "e.g. 100)")
    size = training.recorded_config(trained).task.size
    given = raw_images.get("size")
    if given is not None and given != size:
        raise _fail(source, f"key 'images.size' is {given!r} but the network in {trained} was trained on "
                            f"{size}x{size} images of the task; leave 'images.size' out")
    images["size"] = size
    images["resize"] = "none"


def _check_pf(data: Dict[str, Any], source: str) -> None:
    """Pixel-Flipping: orders, patches, mode, schedule, score, AUC, thesis_compat, batch size."""
    images = data["images"]
    p = data["pf"]
    orders = p["orders"]
    if isinstance(orders, str):
        orders = [orders]
    if not isinstance(orders, (list, tuple)) or not orders:
        raise _fail(source, f"key 'pf.orders' must list one or more of {', '.join(pf.ORDERS)}, got {orders!r}")
    for o in orders:
        _choice(source, "order", o, pf.ORDERS)
    if len(set(orders)) != len(orders):
        raise _fail(source, f"key 'pf.orders' lists an order twice: {list(orders)!r}")
    p["orders"] = list(orders)
    p["patch_size"] = _int(source, "pf.patch_size", p["patch_size"], 1)
    p["mode"] = _choice(source, "mode", p["mode"], pf.MODES)
    schedule = p["schedule"]
    if isinstance(schedule, str):
        _choice(source, "schedule", schedule, pf.SCHEDULES)
    elif isinstance(schedule, (list, tuple)) and schedule and all(
            isinstance(c, numbers.Integral) and not isinstance(c, bool) and c >= 1 for c in schedule):
        if any(b <= a for a, b in zip(schedule, schedule[1:])):
            raise _fail(source, f"key 'pf.schedule' must list strictly increasing patch counts, got {schedule!r}")
        p["schedule"] = [int(c) for c in schedule]
    else:
        raise _fail(source, f"key 'pf.schedule' must be one of {', '.join(pf.SCHEDULES)} or a list of cumulative "
                            f"patch counts, got {schedule!r}")
    p["steps"] = _int(source, "pf.steps", p["steps"], 1, none_ok=True)
    if p["steps"] is not None and not (isinstance(schedule, str) and schedule in ("log", "linear")):
        raise _fail(source, "key 'pf.steps' applies to the 'log' and 'linear' schedules only")
    p["score"] = _choice(source, "score", p["score"], pf.SCORES)
    p["auc_x"] = _choice(source, "auc_x", p["auc_x"], pf.AUC_X)
    compat = p["thesis_compat"]
    if isinstance(compat, bool):
        pass
    elif isinstance(compat, (list, tuple)) and all(isinstance(c, str) for c in compat):
        for c in compat:
            _choice(source, "thesis_compat feature", c, tuple(pf.THESIS_COMPAT))
        p["thesis_compat"] = sorted(set(compat))
    else:
        raise _fail(source, f"key 'pf.thesis_compat' must be true, false or a list of names from "
                            f"{', '.join(pf.THESIS_COMPAT)}, got {compat!r}")
    p["batch_size"] = _int(source, "pf.batch_size", p["batch_size"], 1, none_ok=True)
    size = images["size"]
    if p["patch_size"] > size:
        raise _fail(source, f"key 'pf.patch_size' {p['patch_size']} is larger than the images ({size}x{size})")
    if not isinstance(schedule, str) and p["schedule"][-1] > (-(-size // p["patch_size"])) ** 2:
        raise _fail(source, f"key 'pf.schedule' goes up to {p['schedule'][-1]} patches, but a {size}x{size} image "
                            f"has {(-(-size // p['patch_size'])) ** 2} patches of {p['patch_size']}x{p['patch_size']}")


#: The keys of ``road`` and their defaults (ROAD's percentages and noise, Rong et al. 2022).
ROAD_DEFAULTS = {"percentages": [10, 20, 30, 40, 50, 60, 70, 80, 90], "noise": 0.01}


def _check_road(data: Dict[str, Any], source: str) -> None:
    """ROAD: off (``false``), on with its defaults (``true``), or ``{percentages, noise}``; the
    percentages must give distinct patch counts on pf's patches."""
    from .. import road

    given = data["road"]
    if given is False or given is None:
        data["road"] = False
        return
    if given is True:
        given = {}
    if not isinstance(given, Mapping):
        raise _fail(source, f"key 'road' must be true, false or a mapping with keys {', '.join(ROAD_DEFAULTS)}, "
                            f"got {given!r}")
    merged = _merge(given, ROAD_DEFAULTS, source, "road.")
    side, patch = data["images"]["size"], data["pf"]["patch_size"]
    try:
        merged["percentages"] = [float(p) if not float(p).is_integer() else int(p) for p in merged["percentages"]] \
            if isinstance(merged["percentages"], (list, tuple)) else merged["percentages"]
        road.percentage_schedule((-(-side // patch)) ** 2, merged["percentages"])
    except (TypeError, ValueError) as err:
        raise _fail(source, f"key 'road.percentages': {err}") from None
    noise = merged["noise"]
    if isinstance(noise, bool) or not _number(noise) or not math.isfinite(noise) or noise < 0:
        raise _fail(source, f"key 'road.noise' must be a number >= 0 (the noise's standard deviation), got {noise!r}")
    merged["noise"] = float(noise)
    data["road"] = merged


def _check_model(data: Dict[str, Any], raw: Mapping[str, Any], source: str, root: Path) -> None:
    """A torchvision VGG with its weights, a network trained by :mod:`lrpkit.training`, or a factory function."""
    model = data["model"]
    given = raw.get("model") or {}
    if model["trained"] is not None:
        from .. import training

        # (a resolved config, as a results directory keeps it, names the architecture training.ARCH)
        if (given.get("factory") is not None or given.get("weights") is not None
                or given.get("arch") not in (None, training.ARCH)):
            raise _fail(source, "key 'model.trained' names a network trained by lrpkit; leave out 'model.arch', "
                                "'model.weights' and 'model.factory'")
        if not isinstance(model["trained"], str):
            raise _fail(source, f"key 'model.trained' must be a folder path, got {model['trained']!r}")
        model["trained"] = _path(source, "model.trained", root, model["trained"])
        try:
            training.recorded_config(model["trained"])
        except (FileNotFoundError, ValueError) as err:
            raise _fail(source, f"key 'model.trained': {err}") from None
        model["arch"], model["weights"] = training.ARCH, None
    elif model["factory"] is not None:
        _factory(source, model["factory"])
        if given.get("weights") is not None or given.get("arch") is not None:
            raise _fail(source, "key 'model.factory' builds the model itself; leave out 'model.arch' and "
                                "'model.weights'")
        model["arch"] = model["weights"] = None
    else:
        model["arch"] = _choice(source, "architecture", model["arch"], VGG_ARCHS)
        weights = model["weights"]
        if not isinstance(weights, str) or not weights:
            raise _fail(source, f"key 'model.weights' must be one of {', '.join(WEIGHTS_CHOICES)} or a "
                                f"state-dict file, got {weights!r}")
        if weights not in WEIGHTS_CHOICES:
            model["weights"] = _path(source, "model.weights", root, weights)
            if not Path(model["weights"]).is_file():
                raise _fail(source, f"key 'model.weights': weights file not found: {model['weights']} (give "
                                    f"{', '.join(WEIGHTS_CHOICES)} or the path of a state-dict file)")


def _factory(source: str, spec) -> Any:
    """Import ``"module:function"`` and return the callable."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise _fail(source, f"key 'model.factory' must be 'module:function', got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise _fail(source, f"key 'model.factory': cannot import {module_name!r} ({err}); put its folder on "
                            f"PYTHONPATH") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise _fail(source, f"key 'model.factory': {module_name!r} has no function {attr!r}")
    return function


def factory(spec: str) -> Any:
    """The model factory of ``model.factory`` (``"module:function"``)."""
    return _factory("config", spec)


def _device(source: str, device, resolve: bool) -> str:
    import torch

    if not isinstance(device, str):
        raise _fail(source, f"key 'device' must be cpu, cuda, cuda:N or auto, got {device!r}")
    if device == "auto":
        if not resolve:
            return device
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise _fail(source, f"key 'device': {device!r} is not a torch device; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and resolve:
        if not torch.cuda.is_available():
            raise _fail(source, f"key 'device' is {device!r} but CUDA is not available here; use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise _fail(source, f"key 'device' is {device!r} but there are {torch.cuda.device_count()} CUDA devices")
    return str(dev)


# --------------------------------------------------------------------------------------------------
# comparing configs


def machine_independent(data: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of the config ``data`` (as JSON values) with the :data:`LOCAL_PATHS` that are set
    replaced by ``"(local folder)"``: what two machines that compute the same experiment agree on."""
    import json

    out = json.loads(json.dumps(dict(data), default=str))
    for dotted in LOCAL_PATHS:
        section, key = dotted.split(".")
        if isinstance(out.get(section), dict) and out[section].get(key) is not None:
            out[section][key] = "(local folder)"
    return out


def first_difference(there: Any, here: Any, prefix: str = "") -> Optional[Tuple[str, Any, Any]]:
    """The first key (dotted, with ``[i]`` for list items) where two configs differ, and both values."""
    if isinstance(there, Mapping) and isinstance(here, Mapping):
        for key in list(there) + [k for k in here if k not in there]:
            if key not in there or key not in here:
                return prefix + str(key), there.get(key, "<missing>"), here.get(key, "<missing>")
            found = first_difference(there[key], here[key], f"{prefix}{key}.")
            if found:
                return found
        return None
    if isinstance(there, (list, tuple)) and isinstance(here, (list, tuple)) and len(there) == len(here):
        for i, (a, b) in enumerate(zip(there, here)):
            found = first_difference(a, b, f"{prefix.rstrip('.')}[{i}].")
            if found:
                return found
        return None
    if there != here:
        return prefix.rstrip("."), there, here
    return None


def shorten(value: Any, width: int = 60) -> str:
    """``repr`` of a value, cut to ``width`` characters."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."
