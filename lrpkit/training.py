"""A network that has learned something: VGG-16's layout, trained on the ground-truth task.

LRP's hyperparameters are judged on what a *trained* network has learned (thesis Chapter 4: the
pretrained VGG-16). Where ImageNet weights cannot be had, or where a heatmap is to be graded pixel by
pixel, this module trains a network of VGG-16's layout on :mod:`lrpkit.synthetic`, whose images come
with the pixels that decide their class, on the CPU in minutes.

The network (:func:`build_network`)
-----------------------------------
torchvision's ``VGG`` with VGG-16's 13 convolutions (``cfgs["D"]``) and batch normalization, as
``vgg16_bn``, at a quarter of its widths (16-16, 32-32, 64×3, 128×3, 128×3 for ``width=16``), its
own ``AdaptiveAvgPool2d((2, 2))`` and a classifier ``512 → 256 → 256 → classes`` (ReLU and Dropout
between the dense layers, as torchvision's): 1 121 558 parameters for six classes, 82 % of them in
the convolutions. The convolutions and batch norms are initialised as torchvision's VGG; the dense
layers keep PyTorch's default initialisation (torchvision's N(0, 0.01) left a small test network at
chance for one of three seeds). After folding the batch norms, :func:`lrpkit.canonical.layers`
gives VGG-16's 38 layers with the thesis's indices (convolutions 0, 2, 5, ..., 28, dense layers 31,
34, 37), so every composite applies unchanged.
At the task's 64 px the five max-pools leave a 2×2 map, which the pool passes on as it is.

Training (:func:`train`)
------------------------
AdamW (learning rate ``lr``, weight decay ``weight_decay``), cross-entropy, batches of
``batch_size``, every image seen once: training image ``i`` is image ``i`` of the task's ``train``
split (:func:`lrpkit.synthetic.generate` with ``seed=config.seed``), generated in chunks one ahead
of the network (in a thread). The input is :meth:`lrpkit.synthetic.Batch.normalized` (ImageNet's
normalization, as every lrpkit model), so the composites' default zᴮ bounds apply. Validation and
test accuracy are measured at the end on ``eval_images`` images of the ``validation`` and ``test``
splits of the same seed (:func:`evaluate`).

Conventions
-----------
- **Seeded**: the initial weights and dropout draw from ``torch.manual_seed(config.seed)`` inside
  :func:`torch.random.fork_rng` (the caller's random state is left alone); the data order is fixed
  by the task's counter-based stream. On the CPU, the same config, torch version, thread count and
  instruction set give the same weights bit for bit (``tests/test_training.py``); another thread
  count or machine may round differently.
- **Learning rate**: ``schedule="constant"`` (the default) keeps ``lr``; ``"cosine"`` decays it
  from ``lr`` to 0 over the ``images`` by a half cosine, computed from the number of images seen
  (no scheduler state). Measured on this project's 2-core CPU at 96 000 images, seed 0: a half
  cosine with dropout 0.5 reached 85.1 % test accuracy in 5.0 min (triangles and stars confused),
  a constant rate without dropout 99.3 % in 5.3 min; hence the defaults. At 64 000 images
  (``quick``, channels-last): a constant rate 98.8 % (validation 98.85 %) in 304 s, a half cosine
  98.6 % (validation 99.05 %) in 316 s, evaluation included.
- **Files**, in ``out_dir``: ``checkpoint.pt`` while training (model, optimizer, random state,
  images seen; rewritten every ``checkpoint_every`` images), then ``weights.pt`` (the state dict)
  and ``training.json`` (:data:`RECORD_FILE`: the config, images seen, accuracies, seconds,
  versions, the weights' sha256), after which the checkpoint is removed. Every file is written
  under a temporary name and renamed when complete: an interrupted run (Ctrl-C) leaves the last
  checkpoint and no half-written file. ``training.json`` is written last; it marks the result
  complete.
- **Continuing, reusing, refusing**: :func:`train` into a folder with a checkpoint of the same
  config continues from it (the result equals an uninterrupted run's, bit for bit); with a
  complete result of the same config it returns that result without any work. A checkpoint or
  result of another config is refused, naming the first setting that differs, unless
  ``force=True``; then training starts from scratch and replaces the old files when it is done
  (they stay until then; interrupted, it continues without ``force``: its checkpoint is of the
  config asked for). Everything is checked before anything is written.
- **Profiles** (:data:`PROFILES`): ``smoke`` 9 600 images (about a minute on one core; near chance:
  it checks the pipeline), ``quick`` 64 000 (the book's network: about 5 minutes on a 2-core
  machine, 98.8 % test accuracy; 96 000 images, which the book used before, gave 98.85 % in 6.5 to
  8 minutes), ``full`` 480 000. Validation and test sets of 500, 2 000 and 10 000 images.

Example
-------
>>> from lrpkit import composites, lrp, synthetic, training
>>> result = training.train(training.PROFILES["quick"], "trained")    # doctest: +SKIP
>>> result.test_accuracy, result.sha256[:12]                         # doctest: +SKIP
>>> model = training.load_trained("trained")                          # doctest: +SKIP
>>> batch = synthetic.generate(result.config.task, 8, seed=0, split="test")  # doctest: +SKIP
>>> heatmaps = lrp.relevance(model, batch.normalized(), batch.labels, composites.tutorial())  # doctest: +SKIP

References
----------
K. Simonyan, A. Zisserman, *Very Deep Convolutional Networks for Large-Scale Image Recognition*,
ICLR (2015). S. Ioffe, C. Szegedy, *Batch Normalization*, ICML (2015). I. Loshchilov, F. Hutter,
*Decoupled Weight Decay Regularization* (AdamW), ICLR (2019); *SGDR: Stochastic Gradient Descent with
Warm Restarts* (the cosine schedule), ICLR (2017).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import math
import numbers
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torchvision   # here, not in a function: the data thread's first import of it would race the main thread's
from torch import nn
from torch.nn import functional as F

from . import synthetic
from ._checks import check_eval, choice, integer
from ._outputs import Outputs, check_out
from .checksums import sha256_file

__all__ = ["SCHEDULES", "PROFILES", "ARCH", "CHECKPOINT_FILE", "WEIGHTS_FILE", "RECORD_FILE", "TrainingConfig",
           "TrainingResult", "build_network", "parameter_count", "evaluate", "train", "read_record", "recorded_config",
           "load_trained"]

#: Learning-rate schedules: a half cosine from ``lr`` to 0, or ``lr`` throughout.
SCHEDULES = ("cosine", "constant")
#: Name of the architecture in a model's :class:`lrpkit.models.WeightsInfo`.
ARCH = "vgg16-layout"
CHECKPOINT_FILE = "checkpoint.pt"
WEIGHTS_FILE = "weights.pt"
RECORD_FILE = "training.json"
#: Output size of the network's adaptive average pool (the 2×2 map of a 64 px input).
POOL = (2, 2)
#: Training statistics are recorded once per this many images (``history`` of ``training.json``).
HISTORY_EVERY = 1024
_FORMAT = "lrpkit.training/1"
_CHUNK_PIXELS = 1 << 22   # pixels per channel of one generated chunk (1024 images at 64 px)


# --------------------------------------------------------------------------------------------
# The configuration


def _real(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if (value <= 0) if positive else (value < 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """What is trained and how; checked when made (one-line errors naming the field).

    Two configs that are equal train the same network: :func:`train` continues or reuses a folder
    only for an equal config.

    Attributes
    ----------
    task : lrpkit.synthetic.TaskConfig
        The images (default: 64 px, six kinds, 1-3 distractors).
    seed : int
        Seed of the initial weights, of dropout and of the task's images, ``0 <= seed < 2**64``.
    images : int
        Training images seen (each once), at least 1; the last batch may be smaller.
    batch_size : int
        Images per optimizer step, at least 1.
    lr : float
        AdamW's learning rate (its largest value under ``schedule="cosine"``), > 0.
    weight_decay : float
        AdamW's decoupled weight decay, >= 0.
    schedule : {"cosine", "constant"}
        The learning rate over the training (:data:`SCHEDULES`).
    eval_images : int
        Images of the validation and of the test split measured at the end, at least 1.
    width : int
        Channels of the first convolution (VGG-16: 64); the blocks have ``width``, ``2 width``,
        ``4 width``, ``8 width``, ``8 width``.
    hidden : int
        Units of the two hidden dense layers (VGG-16: 4096).
    dropout : float
        Dropout probability before the second and the third dense layer, ``0 <= dropout < 1``.
    """

    task: synthetic.TaskConfig = dataclasses.field(default_factory=synthetic.TaskConfig)
    seed: int = 0
    images: int = 64_000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "constant"
    eval_images: int = 2_000
    width: int = 16
    hidden: int = 256
    dropout: float = 0.0

    def __post_init__(self):
        if not isinstance(self.task, synthetic.TaskConfig):
            raise TypeError(f"task must be a synthetic.TaskConfig, got {type(self.task).__name__}")
        seed = integer("seed", self.seed, 0)
        if seed >= 2 ** 64:
            raise ValueError(f"seed must be below 2**64, got {seed!r}")
        dropout = _real("dropout", self.dropout, positive=False)
        if dropout >= 1:
            raise ValueError(f"dropout must be a probability 0 <= dropout < 1, got {self.dropout!r}")
        for name, value in (("seed", seed), ("images", integer("images", self.images, 1)),
                            ("batch_size", integer("batch_size", self.batch_size, 1)),
                            ("lr", _real("lr", self.lr, positive=True)),
                            ("weight_decay", _real("weight_decay", self.weight_decay, positive=False)),
                            ("schedule", choice("schedule", self.schedule, SCHEDULES)),
                            ("eval_images", integer("eval_images", self.eval_images, 1)),
                            ("width", integer("width", self.width, 1)), ("hidden", integer("hidden", self.hidden, 1)),
                            ("dropout", dropout)):
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON values (tuples as lists), as ``training.json`` records it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainingConfig":
        """The config of :meth:`to_dict`'s values (checked as when made)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(values, dict) or not isinstance(values.get("task"), dict):
            raise ValueError(f"a training config must be a mapping with a 'task' mapping, got {values!r}")
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"unknown training config key {unknown[0]!r}; known keys: {', '.join(sorted(fields))}")
        task_fields = {f.name for f in dataclasses.fields(synthetic.TaskConfig)}
        unknown = sorted(set(values["task"]) - task_fields)
        if unknown:
            raise ValueError(f"unknown task config key {unknown[0]!r}; known keys: {', '.join(sorted(task_fields))}")
        return cls(**{**values, "task": synthetic.TaskConfig(**values["task"])})


#: The named configs of ``lrpkit train --profile``: ``smoke`` (about a minute: the pipeline, not a
#: trained network), ``quick`` (the book's network, minutes on two cores) and ``full`` (7.5 times
#: quick's images, a larger test set).
PROFILES = {
    "smoke": TrainingConfig(images=9_600, eval_images=500),
    "quick": TrainingConfig(images=64_000, eval_images=2_000),
    "full": TrainingConfig(images=480_000, eval_images=10_000),
}


# --------------------------------------------------------------------------------------------
# The network


def build_network(classes: int, *, width: int = 16, hidden: int = 256, dropout: float = 0.0) -> nn.Module:
    """VGG-16's layout with batch normalization, narrow, for a small input (see the module docstring).

    Parameters
    ----------
    classes : int
        Outputs of the last dense layer, at least 2.
    width : int
        Channels of the first convolution; the five blocks have ``width × (1, 2, 4, 8, 8)``.
    hidden : int
        Units of the two hidden dense layers.
    dropout : float
        Dropout probability of the classifier.

    Returns
    -------
    torch.nn.Module
        A torchvision ``VGG`` in eval mode, with torchvision's initialisation drawn from torch's
        global random state: ``features`` as ``vgg16_bn``'s, ``avgpool`` an
        ``AdaptiveAvgPool2d(POOL)``, ``classifier`` Linear, ReLU, Dropout, Linear, ReLU, Dropout,
        Linear. :func:`lrpkit.canonical.layers` gives it VGG-16's 38 layer indices.
    """
    classes = integer("classes", classes, 2, hint="a classifier needs two classes")
    width = integer("width", width, 1)
    hidden = integer("hidden", hidden, 1)
    dropout = _real("dropout", dropout, positive=False)
    if dropout >= 1:
        raise ValueError(f"dropout must be a probability 0 <= dropout < 1, got {dropout!r}")
    layout = [v if v == "M" else v * width // 64 for v in torchvision.models.vgg.cfgs["D"]]
    features = torchvision.models.vgg.make_layers(layout, batch_norm=True)
    channels = layout[-2]
    classifier = nn.Sequential(nn.Linear(channels * POOL[0] * POOL[1], hidden), nn.ReLU(True), nn.Dropout(dropout),
                               nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(dropout),
                               nn.Linear(hidden, classes))
    model = torchvision.models.VGG(features, num_classes=classes, init_weights=True, dropout=dropout)
    model.avgpool = nn.AdaptiveAvgPool2d(POOL)
    model.classifier = classifier
    return model.eval()


def _network(config: TrainingConfig) -> nn.Module:
    return build_network(len(config.task.classes), width=config.width, hidden=config.hidden, dropout=config.dropout)


def parameter_count(model: nn.Module) -> int:
    """The number of trainable parameters (batch norm's running statistics not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------
# Data and evaluation


def _chunk_size(task: synthetic.TaskConfig, batch_size: int) -> int:
    """Images generated at a time: about :data:`_CHUNK_PIXELS` pixels, whole batches."""
    batches = max(1, _CHUNK_PIXELS // (task.size * task.size) // batch_size)
    return batches * batch_size


def _inputs(task: synthetic.TaskConfig, n: int, seed: int, split: str, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch = synthetic.generate(task, n, seed=seed, split=split, start=start)
    return batch.normalized(), batch.labels


def evaluate(model: nn.Module, task: synthetic.TaskConfig, n: int, *, seed: int, split: str = "test",
             chunk_size: int = 500) -> float:
    """The model's accuracy on images ``0 .. n - 1`` of a split of the task.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode, with one output per class of ``task`` (on any device).
    task : lrpkit.synthetic.TaskConfig
    n : int
        How many images, at least 1.
    seed : int
        The task's seed (:func:`lrpkit.synthetic.generate`).
    split : {"train", "validation", "test"}
    chunk_size : int
        Images per forward pass; does not change the result beyond float rounding.

    Returns
    -------
    float
        The fraction of the images whose largest logit is their label's.
    """
    check_eval(model)
    if not isinstance(task, synthetic.TaskConfig):
        raise TypeError(f"task must be a synthetic.TaskConfig, got {type(task).__name__}")
    n = integer("n", n, 1)
    chunk_size = integer("chunk_size", chunk_size, 1)
    device = next(model.parameters()).device
    correct = 0
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            x, y = _inputs(task, min(chunk_size, n - start), seed, split, start)
            logits = model(x.to(device))
            if logits.dim() != 2 or logits.shape[1] != len(task.classes):
                raise ValueError(f"the model gives {tuple(logits.shape[1:])} outputs per image but the task has "
                                 f"{len(task.classes)} classes {task.classes!r}; use a model trained on this task")
            correct += int((logits.argmax(1).cpu() == y).sum())
    return correct / n


class _Stream:
    """The training images from ``start`` on, chunk by chunk, the next chunk generated in a thread
    while the network trains on the current one."""

    def __init__(self, config: TrainingConfig, start: int):
        self.config, self.next = config, start
        self.size = _chunk_size(config.task, config.batch_size)
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lrpkit-training-data")
        self.pending = self._submit()

    def _submit(self):
        if self.next >= self.config.images:
            return None
        n = min(self.size, self.config.images - self.next)
        future = self.pool.submit(_inputs, self.config.task, n, self.config.seed, "train", self.next)
        self.next += n
        return future

    def take(self) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self.pending.result()
        self.pending = self._submit()
        return chunk

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------------------------
# Files


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """What :func:`train` made (or found).

    Attributes
    ----------
    out_dir : pathlib.Path
    weights : pathlib.Path
        ``out_dir / weights.pt``: the state dict (:func:`load_trained` reads it).
    config : TrainingConfig
    images : int
        Training images seen.
    test_accuracy, validation_accuracy : float
        On ``config.eval_images`` images of the test and the validation split.
    seconds : float
        Wall-clock seconds of training and evaluation, over every run that contributed.
    sha256 : str
        Of ``weights.pt``.
    parameters : int
        Trainable parameters of the network.
    reused : bool
        True when the folder held this result already and nothing was trained.
    continued_from : int
        Images seen when this call began (0: from scratch).
    record : dict
        The whole ``training.json``.
    """

    out_dir: Path
    weights: Path
    config: TrainingConfig
    images: int
    test_accuracy: float
    validation_accuracy: float
    seconds: float
    sha256: str
    parameters: int
    reused: bool
    continued_from: int
    record: dict


def _write(path: Path, write: Callable[[Any], None]) -> None:
    """``path`` written through ``write(handle)`` under a temporary name, then renamed."""
    with Outputs(force=True) as outputs:
        with outputs.open(path) as handle:
            write(handle)
        outputs.publish()


def _read_record(folder: Path) -> dict:
    path = folder / RECORD_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}); pass --force to train again, "
                         "or choose another --out") from None
    keys = ("config", "images", "validation", "test", "network", "seconds", "sha256")
    if (not isinstance(record, dict) or record.get("format") != _FORMAT or not all(k in record for k in keys)
            or not isinstance(record["config"], dict)):
        raise ValueError(f"{path} is not a record of lrpkit.training ({_FORMAT}); pass --force to replace it, "
                         "or choose another --out")
    return record


def read_record(out_dir) -> dict:
    """The ``training.json`` of a complete training in ``out_dir`` (not the weights: :func:`load_trained`).

    Raises
    ------
    FileNotFoundError
        No complete training there (naming whether one was interrupted).
    ValueError
        A record that is not lrpkit's.
    """
    folder = Path(out_dir)
    if not (folder / RECORD_FILE).is_file():
        interrupted = (folder / CHECKPOINT_FILE).exists()
        where = " (a training was interrupted there: run it again to continue)" if interrupted else ""
        raise FileNotFoundError(f"no trained network in {folder}: {RECORD_FILE} is missing{where}; train one with "
                                f"lrpkit train --out {folder}")
    return _read_record(folder)


def recorded_config(out_dir) -> TrainingConfig:
    """The :class:`TrainingConfig` a complete training in ``out_dir`` was made with (its task, its seed)."""
    return TrainingConfig.from_dict(read_record(out_dir)["config"])


def _read_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"checkpoint {path} cannot be read ({first}); pass --force to start over, "
                         "or choose another --out") from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT or not all(
            k in state for k in ("config", "model", "optimizer", "rng", "state")):
        raise ValueError(f"{path} is not a checkpoint of lrpkit.training ({_FORMAT}); pass --force to start "
                         "over, or choose another --out")
    return state


def _first_difference(ours: Any, theirs: Any, prefix: str = "") -> Optional[tuple[str, Any, Any]]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in list(ours) + [k for k in theirs if k not in ours]:
            found = _first_difference(ours.get(key), theirs.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if ours == theirs else (prefix.rstrip("."), ours, theirs)


def _check_same(config: TrainingConfig, recorded: dict, what: Path) -> None:
    found = _first_difference(config.to_dict(), recorded)
    if found:
        key, ours, theirs = found
        raise ValueError(f"{what} is of another training config ({key} {theirs!r} there, {ours!r} here); pass "
                         "--force to train this config from scratch (replacing it when done), or choose another --out")


def _load_state(model: nn.Module, state: Any, path: Path) -> None:
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (names to tensors)")
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        what = (f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}" if unexpected
                else f"shape of {wrong[0]!r} {tuple(state[wrong[0]].shape)} != {tuple(own[wrong[0]].shape)}")
        raise ValueError(f"{path} does not fit the network of its config ({what})")
    model.load_state_dict(state)


def _result(folder: Path, record: dict, *, reused: bool, continued_from: int) -> TrainingResult:
    return TrainingResult(out_dir=folder, weights=folder / WEIGHTS_FILE,
                          config=TrainingConfig.from_dict(record["config"]), images=record["images"],
                          test_accuracy=record["test"]["accuracy"],
                          validation_accuracy=record["validation"]["accuracy"], seconds=record["seconds"],
                          sha256=record["sha256"], parameters=record["network"]["parameters"], reused=reused,
                          continued_from=continued_from, record=record)


# --------------------------------------------------------------------------------------------
# Training


@dataclasses.dataclass
class _State:
    """What a checkpoint holds besides the model and the optimizer."""

    images: int = 0
    seconds: float = 0.0
    history: list = dataclasses.field(default_factory=list)
    window: list = dataclasses.field(default_factory=lambda: [0.0, 0, 0])   # loss sum, correct, images
    resumed: list = dataclasses.field(default_factory=list)


def _learning_rate(config: TrainingConfig, seen: int) -> float:
    if config.schedule == "constant":
        return config.lr
    return config.lr * 0.5 * (1 + math.cos(math.pi * seen / config.images))


def _plan(config: TrainingConfig, folder: Path, force: bool) -> tuple[str, Optional[dict]]:
    """What to do with ``folder``, before anything is written: ``("reuse", record)``,
    ``("continue", checkpoint)`` or ``("start", None)``; refuses another config's files without ``force``."""
    check_out(folder)
    for name in (CHECKPOINT_FILE, WEIGHTS_FILE, RECORD_FILE):
        if (folder / name).is_dir():
            raise ValueError(f"{folder / name} is a folder; move it or choose another --out")
    if force:
        return "start", None
    checkpoint = folder / CHECKPOINT_FILE
    record_file = folder / RECORD_FILE
    if record_file.exists():
        record = _read_record(folder)
        if config.to_dict() == record["config"]:
            weights = folder / WEIGHTS_FILE
            if not weights.is_file():
                raise ValueError(f"{record_file} is complete but {weights} is missing; pass --force to train again, "
                                 "or choose another --out")
            digest = sha256_file(weights)
            if digest != record["sha256"]:
                raise ValueError(f"{weights} has sha256 {digest[:16]}... but {RECORD_FILE} records "
                                 f"{record['sha256'][:16]}...: the file was changed or damaged; pass --force to "
                                 "train again, or choose another --out")
            return "reuse", record
        if not checkpoint.exists():
            _check_same(config, record["config"], record_file)
    if checkpoint.exists():
        state = _read_checkpoint(checkpoint)
        _check_same(config, json.loads(state["config"]), checkpoint)
        return "continue", state   # its config's training was allowed to replace what the folder holds
    if (folder / WEIGHTS_FILE).exists():
        raise ValueError(f"{folder / WEIGHTS_FILE} exists already (without {RECORD_FILE}: not a complete training); "
                         "pass --force to replace it, or choose another --out")
    return "start", None


def train(config: TrainingConfig, out_dir, *, force: bool = False, progress: bool = True,
          checkpoint_every: int = 10_000, echo: Callable[[str], None] = print) -> TrainingResult:
    """Train the network of ``config`` into ``out_dir``, or continue or reuse what is there.

    Parameters
    ----------
    config : TrainingConfig
        For example ``PROFILES["quick"]`` or ``dataclasses.replace(PROFILES["quick"], seed=1)``.
    out_dir : str or path
        Folder of ``checkpoint.pt``, ``weights.pt`` and ``training.json`` (created if needed).
    force : bool
        Train from scratch even if the folder holds a checkpoint or result (of any config); the old
        files are replaced when the new ones are complete.
    progress : bool
        A progress bar (images, loss and accuracy over the last :data:`HISTORY_EVERY` images).
    checkpoint_every : int
        Images between checkpoints: the most work an interruption loses. Does not change the result.
    echo : callable
        Where the lines about what is done go (what is reused or continued, an interruption).

    Returns
    -------
    TrainingResult

    Raises
    ------
    TypeError, ValueError
        Before anything is written: a bad argument, ``out_dir`` not a writable folder, a checkpoint
        or result of another config without ``force`` (naming the first setting that differs), a
        damaged checkpoint, a ``weights.pt`` whose sha256 is not the recorded one.
    FileNotFoundError
        The task's background photos are neither cached nor in the mirror.
    KeyboardInterrupt
        Passed on; the folder keeps the last checkpoint (call again to continue) and no partial file.
    """
    if not isinstance(config, TrainingConfig):
        raise TypeError(f"config must be a training.TrainingConfig, got {type(config).__name__}")
    folder = Path(out_dir)
    checkpoint_every = integer("checkpoint_every", checkpoint_every, 1)
    action, found = _plan(config, folder, bool(force))
    if action == "reuse":
        echo(f"{folder}: a complete training of this config is there already; reusing it (pass --force to train "
             "again)")
        _remove_stale_checkpoint(folder, config)
        return _result(folder, found, reused=True, continued_from=found["images"])
    stream = _Stream(config, json.loads(found["state"])["images"] if found else 0)
    saved = [found is not None]   # whether the folder holds a checkpoint of this training
    try:
        with torch.random.fork_rng(devices=[]):
            return _train(config, folder, found, stream, progress, checkpoint_every, echo, saved)
    except KeyboardInterrupt:
        if saved[0]:
            echo(f"interrupted: {folder / CHECKPOINT_FILE} holds the training up to its last checkpoint; run the "
                 "same training again to continue")
        else:
            echo(f"interrupted before the first checkpoint: this training wrote nothing to {folder}")
        raise
    finally:
        stream.close()


def _remove_stale_checkpoint(folder: Path, config: TrainingConfig) -> None:
    """Remove a checkpoint of ``config`` beside its complete result (left by a run stopped between
    writing the result and removing the checkpoint); another config's checkpoint stays."""
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        return
    try:
        same = config.to_dict() == json.loads(_read_checkpoint(path)["config"])
    except (ValueError, KeyError):
        return
    if same:
        path.unlink(missing_ok=True)


def _train(config: TrainingConfig, folder: Path, checkpoint: Optional[dict], stream: _Stream, progress: bool,
           checkpoint_every: int, echo: Callable[[str], None], saved: list) -> TrainingResult:
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    # channels-last: oneDNN's convolutions train this network 1.1x faster per image on a 2-core CPU
    # (bench/training_layout.py); the weights are saved in the standard layout
    model = _network(config).train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = _State()
    if checkpoint is not None:
        _load_state(model, checkpoint["model"], folder / CHECKPOINT_FILE)
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["rng"])
        state = _State(**json.loads(checkpoint["state"]))
        state.resumed.append(state.images)
        echo(f"{folder}: continuing from the checkpoint at {state.images:,} of {config.images:,} images")
    continued_from = state.images
    started = time.perf_counter()
    base_seconds = state.seconds

    def save_checkpoint():
        state.seconds = base_seconds + time.perf_counter() - started
        payload = {"format": _FORMAT, "config": json.dumps(config.to_dict()), "model": model.state_dict(),
                   "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                   "state": json.dumps(dataclasses.asdict(state))}
        _write(folder / CHECKPOINT_FILE, lambda handle: torch.save(payload, handle))
        saved[0] = True

    with tqdm(total=config.images, initial=state.images, desc="train", unit="img", unit_scale=True,
              disable=not progress, dynamic_ncols=True) as bar:
        while state.images < config.images:
            x, y = stream.take()
            for start in range(0, len(y), config.batch_size):
                xb, yb = x[start:start + config.batch_size], y[start:start + config.batch_size]
                for group in optimizer.param_groups:
                    group["lr"] = _learning_rate(config, state.images)
                logits = model(xb.contiguous(memory_format=torch.channels_last))
                loss = F.cross_entropy(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                before, state.images = state.images, state.images + len(yb)
                window = state.window
                window[0] += float(loss.detach()) * len(yb)
                window[1] += int((logits.argmax(1) == yb).sum())
                window[2] += len(yb)
                if state.images // HISTORY_EVERY > before // HISTORY_EVERY or state.images == config.images:
                    last = {"images": state.images, "loss": window[0] / window[2], "accuracy": window[1] / window[2]}
                    state.history.append(last)
                    state.window = [0.0, 0, 0]
                    bar.set_postfix(loss=f"{last['loss']:.3f}", acc=f"{last['accuracy']:.3f}", refresh=False)
                bar.update(len(yb))
                if state.images // checkpoint_every > before // checkpoint_every and state.images < config.images:
                    save_checkpoint()

    model.eval()
    record = {"format": _FORMAT, "config": config.to_dict(), "images": state.images}
    for split in ("validation", "test"):
        record[split] = {"split": split, "seed": config.seed, "images": config.eval_images,
                         "accuracy": evaluate(model, config.task, config.eval_images, seed=config.seed, split=split)}
    record.update(_provenance(model, config, state, base_seconds + time.perf_counter() - started))
    buffer = io.BytesIO()
    weights = model.state_dict()
    for name, tensor in weights.items():    # the standard layout (the state dict keeps its metadata)
        weights[name] = tensor.contiguous()
    torch.save(weights, buffer)
    record["sha256"] = hashlib.sha256(buffer.getbuffer()).hexdigest()
    with Outputs(force=True) as outputs:
        with outputs.open(folder / WEIGHTS_FILE) as handle:
            handle.write(buffer.getbuffer())
        with outputs.open(folder / RECORD_FILE, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(record, indent=1) + "\n")
        outputs.publish()   # weights.pt, then training.json: the record marks the result complete
    (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
    return _result(folder, record, reused=False, continued_from=continued_from)


def _provenance(model: nn.Module, config: TrainingConfig, state: _State, seconds: float) -> dict:
    from . import provenance

    return {"network": {"arch": ARCH, "parameters": parameter_count(model), "pool": list(POOL),
                        "widths": [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)],
                        "dense": [m.out_features for m in model.classifier if isinstance(m, nn.Linear)]},
            "input": "lrpkit.synthetic.Batch.normalized() (ImageNet mean and std)",
            "loss": state.history[-1]["loss"], "train_accuracy": state.history[-1]["accuracy"],
            "history": state.history, "resumed_at": state.resumed, "seconds": seconds,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "lrpkit": provenance.lrpkit_version(), "git_commit": provenance.git_commit(),
            "weights": WEIGHTS_FILE}


# --------------------------------------------------------------------------------------------
# Loading


def load_trained(out_dir, *, device: str | torch.device | None = None) -> nn.Module:
    """The network :func:`train` wrote into ``out_dir``, in eval mode, its sha256 checked.

    Parameters
    ----------
    out_dir : str or path
        A folder with ``training.json`` and ``weights.pt``.
    device : str or torch.device, optional
        Where to put the model (default: CPU).

    Returns
    -------
    torch.nn.Module
        The network, with a :class:`lrpkit.models.WeightsInfo` (``arch`` :data:`ARCH`, source
        ``"file"``, the sha256) for :func:`lrpkit.models.weights_info` and the provenance banner.

    Raises
    ------
    FileNotFoundError
        No ``training.json`` (no complete training) or no ``weights.pt``.
    ValueError
        ``weights.pt`` whose sha256 is not the recorded one, a record or file that is not lrpkit's.
    """
    from .models import WeightsInfo

    folder = Path(out_dir)
    record = read_record(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing (its {RECORD_FILE} is there); train again with "
                                f"lrpkit train --out {folder} --force")
    digest = sha256_file(weights)
    if digest != record.get("sha256"):
        raise ValueError(f"{weights} has sha256 {digest[:16]}... but {RECORD_FILE} records "
                         f"{str(record.get('sha256'))[:16]}...: the file was changed or damaged; train again with "
                         f"lrpkit train --out {folder} --force")
    config = TrainingConfig.from_dict(record["config"])
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"cannot read {weights} as a PyTorch state dict ({first})") from None
    with torch.random.fork_rng(devices=[]):   # the initialisation is overwritten: leave the caller's state
        model = _network(config)
    _load_state(model, state, weights)
    if device is not None:
        model = model.to(device)
    model.eval()
    model.lrpkit_weights = WeightsInfo(arch=ARCH, source="file", pretrained=False, requested=str(folder),
                                       path=str(weights.resolve()), sha256=digest)
    return model
