"""Models: torchvision VGG networks with pretrained, file or seeded random weights.

Every model built here carries a record of the weights it was given (:func:`weights_info`):
where they came from, whether they are the pretrained ImageNet weights, and the sha256 of the
file they were read from, so that a figure can say which network produced it.

Weights
-------
``"imagenet"``
    torchvision's ``<Arch>_Weights.IMAGENET1K_V1`` through torchvision's own weights API: the file
    is downloaded once into the torch hub cache (``$TORCH_HOME/hub/checkpoints``; ``TORCH_HOME``
    defaults to ``~/.cache/torch``) and read from there afterwards. Without network access and
    without the file, a :class:`FileNotFoundError` names the folder and the file to place there.
    A cached file whose sha256 does not start with the prefix torchvision publishes in its file
    name is refused (a :class:`ValueError`) unless ``allow_unverified=True``; then it is used with
    a loud :class:`UnverifiedWeightsWarning`, and its :class:`WeightsInfo` says so as prominently
    as it says "random".
``"random"``
    torchvision's own initialisation, drawn from ``torch.manual_seed(seed)`` on the CPU (the global
    random state is left untouched). The same seed gives the same weights on every machine with the
    same torch version.
``"auto"``
    ``"imagenet"`` when the weights can be had, otherwise ``"random"`` with a loud
    :class:`RandomWeightsWarning` that is also recorded in :func:`weights_info`. An unverified
    cached file is refused as with ``"imagenet"`` (it is there, but may be damaged or other weights).
a path
    A file holding a ``state_dict`` for the architecture (``torch.save(model.state_dict(), path)``).

Setting the environment variable ``LRPKIT_OFFLINE=1`` (or passing ``download=False``) forbids the
download: ``"imagenet"`` and ``"auto"`` then only use a file already in the hub cache.

The classes the networks predict, their names and the input normalization are ImageNet's
(:mod:`lrpkit.imagenet`).

References
----------
O. Russakovsky et al. ImageNet Large Scale Visual Recognition Challenge. IJCV 115, 2015.
K. Simonyan and A. Zisserman. Very Deep Convolutional Networks for Large-Scale Image Recognition.
ICLR 2015.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import urllib.error
import warnings
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from ._checks import choice
from .checksums import sha256_file

__all__ = [
    "VGG_ARCHS",
    "WEIGHTS_CHOICES",
    "WeightsWarning",
    "RandomWeightsWarning",
    "UnverifiedWeightsWarning",
    "WeightsInfo",
    "check_pretrained",
    "vgg",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "weights_info",
    "pretrained_file",
    "pretrained_url",
]

#: The torchvision VGG architectures this module builds.
VGG_ARCHS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
#: The named weights (besides a path): see the module docstring.
WEIGHTS_CHOICES = ("imagenet", "random", "auto")
_OFFLINE_ENV = "LRPKIT_OFFLINE"


class WeightsWarning(UserWarning):
    """Base class of the warnings about a model's weights."""


class UnverifiedWeightsWarning(WeightsWarning):
    """Warned when the file in the hub cache does not have the sha256 torchvision publishes and
    was used all the same (``allow_unverified=True``): it may not hold the pretrained weights."""


class RandomWeightsWarning(WeightsWarning):
    """Warned when a model asked for ``weights="auto"`` got seeded random weights instead of the
    pretrained ones. Its explanations and scores say nothing about a trained network."""


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
    """Which weights a model was built with.

    Attributes
    ----------
    arch : str
        torchvision architecture name, e.g. ``"vgg16"``.
    source : str
        ``"imagenet"`` (torchvision's pretrained weights), ``"file"`` (a state-dict file) or
        ``"random"`` (seeded initialisation).
    pretrained : bool
        True only for the ImageNet weights whose sha256 matches torchvision's published prefix.
    path : str or None
        File the weights were read from.
    sha256 : str or None
        sha256 of that file.
    verified : bool or None
        For ``source="imagenet"``: whether ``sha256`` starts with the hash prefix in torchvision's
        file name (torchvision checks this only when it downloads).
    seed : int or None
        Seed of random weights.
    url : str or None
        torchvision's download URL for the pretrained weights.
    requested : str
        What was asked for (``"auto"``, ``"imagenet"``, ``"random"`` or the path).
    warning : str or None
        The warning given when the weights are not what was hoped for.
    """

    arch: str
    source: str
    pretrained: bool
    requested: str
    path: str | None = None
    sha256: str | None = None
    verified: bool | None = None
    seed: int | None = None
    url: str | None = None
    warning: str | None = None

    def banner(self) -> str:
        """One line for the top of a figure or page, e.g. the provenance banner of the book."""
        if self.source == "random":
            text = (f"{self.arch} with RANDOM weights (torch seed {self.seed}, torch "
                    f"{torch.__version__}): not a trained network; heatmaps and scores show the "
                    "method, not what a trained VGG has learned")
        elif self.source == "imagenet" and not self.verified:
            text = (f"{self.arch} with UNVERIFIED weights ({self.path}: sha256 {self.sha256} does "
                    f"not start with torchvision's published prefix {_published_prefix(self.path)}): "
                    "possibly not the pretrained ImageNet weights; heatmaps and scores may not show "
                    "what the trained VGG has learned")
        elif self.source == "imagenet":
            text = f"{self.arch} with pretrained ImageNet weights (verified; sha256 {self.sha256})"
        else:
            text = f"{self.arch} with weights from {self.path} (sha256 {self.sha256})"
        return text


def weights_info(model: nn.Module) -> WeightsInfo:
    """Return the record of the weights a model of this module was built with.

    Raises
    ------
    TypeError
        If the model was not built by :mod:`lrpkit.models` (its weights are then unknown).
    """
    info = getattr(model, "lrpkit_weights", None)
    if not isinstance(info, WeightsInfo):
        raise TypeError(
            f"{type(model).__name__} was not built by lrpkit.models, so its weights are unknown; "
            "build it with lrpkit.models.vgg16(weights=...)")
    return info


def _published_prefix(file: str | os.PathLike) -> str:
    return Path(file).stem.rsplit("-", 1)[-1]


def check_pretrained(file: Path) -> tuple[str, str, bool]:
    """``(sha256, expected prefix, verified)`` of a torchvision weights file: torchvision names
    its files ``<arch>-<first hex digits of the sha256>.pth``."""
    digest = sha256_file(file)
    prefix = _published_prefix(file)
    return digest, prefix, digest.startswith(prefix)


def _check_arch(arch: str) -> str:
    return choice("architecture", arch, VGG_ARCHS)


def _imagenet_weights(arch: str) -> torchvision.models.WeightsEnum:
    return torchvision.models.get_model_weights(arch).IMAGENET1K_V1


def pretrained_url(arch: str = "vgg16") -> str:
    """torchvision's download address of the pretrained ImageNet weights of ``arch``."""
    return _imagenet_weights(_check_arch(arch)).url


def pretrained_file(arch: str = "vgg16") -> Path:
    """Where torchvision keeps (or would download) the pretrained ImageNet weights of ``arch``.

    This is ``torch.hub.get_dir()/checkpoints/<file>``, with ``torch.hub.get_dir()`` following
    ``TORCH_HOME``; e.g. ``~/.cache/torch/hub/checkpoints/vgg16-397923af.pth``.
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(pretrained_url(arch))


def _download_allowed(download: bool | None) -> bool:
    if download is not None:
        return bool(download)
    return os.environ.get(_OFFLINE_ENV, "").strip().lower() in ("", "0", "false", "no")


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"invalid device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    return dev


def _random_model(arch: str, seed: int) -> nn.Module:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, not {type(seed).__name__}")
    builder = getattr(torchvision.models, arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(weights=None)


def _empty_model(arch: str) -> nn.Module:
    """The architecture with uninitialised parameters (no time spent on a random init that a
    state dict overwrites)."""
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)(weights=None)
    return model.to_empty(device="cpu")


def _load_state(model: nn.Module, state: Any, arch: str, path: Path) -> None:
    """Load a state dict strictly, with one-line errors that name the file."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"weights file {path} does not hold a state dict (a mapping of names to "
                         "tensors, as written by torch.save(model.state_dict(), path))")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"weights file {path} does not fit {arch}: missing keys {missing[:3]}"
            f"{'...' if len(missing) > 3 else ''}, unexpected keys {unexpected[:3]}"
            f"{'...' if len(unexpected) > 3 else ''}")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
             for k, v in own.items() if state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"weights file {path} does not fit {arch}: shape of {wrong[0]}")
    model.load_state_dict(state)


def _load_imagenet(arch: str, download: bool, progress: bool,
                   allow_unverified: bool) -> tuple[nn.Module, WeightsInfo]:
    """torchvision's weights API: ``<Arch>_Weights.IMAGENET1K_V1.get_state_dict(check_hash=True)``
    (``torch.hub.load_state_dict_from_url``: the hub cache, downloading once). A cached file is
    checked against torchvision's published sha256 prefix before it is read (torchvision checks
    only what it downloads)."""
    weights = _imagenet_weights(arch)
    file = pretrained_file(arch)
    where = (f"place {file.name} (from {weights.url}) in {file.parent} "
             f"(the torch hub cache; set TORCH_HOME to move it)")
    checked = None
    if not file.is_file():
        if not download:
            raise FileNotFoundError(
                f"pretrained {arch} weights are not in the cache and downloading is off "
                f"({_OFFLINE_ENV} is set or download=False): {where}")
    else:
        checked = check_pretrained(file)
        digest, prefix, verified = checked
        if not verified and not allow_unverified:
            raise ValueError(
                f"pretrained {arch} weights in {file} do not have the sha256 torchvision publishes "
                f"(expected prefix {prefix}, got {digest[:len(prefix)]}): they may be damaged or "
                f"other weights; delete the file and {where}, or pass allow_unverified=True "
                "(lrpkit: --allow-unverified-weights) to use them anyway")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # torch announces downloads on stdout
            state = weights.get_state_dict(progress=progress, check_hash=True)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise FileNotFoundError(
            f"cannot download pretrained {arch} weights ({reason}): {where}") from None
    except Exception as err:  # noqa: BLE001 - a damaged file (torch.load) or a bad download hash
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"pretrained {arch} weights in {file} cannot be used ({first}); delete "
                         f"the file and {where}") from None
    model = _empty_model(arch)
    _load_state(model, state, arch, file)
    digest, prefix, verified = checked or check_pretrained(file)
    warning = None
    if not verified:
        warning = (f"UNVERIFIED WEIGHTS - {file} does not have the sha256 torchvision publishes "
                   f"for {arch} (expected prefix {prefix}, got {digest[:len(prefix)]}): these may "
                   "not be the pretrained ImageNet weights, and results may not describe the "
                   "trained network")
        warnings.warn(warning, UnverifiedWeightsWarning, stacklevel=3)
    info = WeightsInfo(arch=arch, source="imagenet", pretrained=verified, requested="imagenet",
                       path=str(file), sha256=digest, verified=verified, url=weights.url,
                       warning=warning)
    return model, info


def _load_file(arch: str, path: Path, requested: str) -> tuple[nn.Module, WeightsInfo]:
    if not path.exists():
        raise FileNotFoundError(
            f"weights file not found: {path} (weights must be 'imagenet', 'random', 'auto' or "
            "the path of a state-dict file)")
    if not path.is_file():
        raise ValueError(f"weights path is not a file: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"cannot read weights file {path} as a PyTorch state dict ({first})") from None
    model = _empty_model(arch)
    _load_state(model, state, arch, path)
    info = WeightsInfo(arch=arch, source="file", pretrained=False, requested=requested,
                       path=str(path.resolve()), sha256=sha256_file(path))
    return model, info


def vgg(arch: str = "vgg16", weights: Any = "auto", *, seed: int = 0,
        device: str | torch.device | None = None, download: bool | None = None,
        progress: bool = True, allow_unverified: bool = False) -> nn.Module:
    """Build a torchvision VGG network in evaluation mode.

    Parameters
    ----------
    arch : str
        One of :data:`VGG_ARCHS`.
    weights : {"auto", "imagenet", "random"}, path or torchvision WeightsEnum
        See the module docstring. A torchvision ``IMAGENET1K_V1`` enum member means ``"imagenet"``.
    seed : int
        Seed of random weights (``"random"``, and ``"auto"`` when it falls back).
    device : str or torch.device, optional
        Where to put the model (CPU by default). Random weights are drawn on the CPU first, so a
        seed gives the same weights on every device.
    download : bool, optional
        Whether ``"imagenet"``/``"auto"`` may download; default: yes unless ``LRPKIT_OFFLINE`` is
        set to a true value.
    progress : bool
        Show torchvision's download progress bar.
    allow_unverified : bool
        Use a cached ``"imagenet"``/``"auto"`` file whose sha256 does not match torchvision's
        published prefix (with an :class:`UnverifiedWeightsWarning`); by default it is refused.

    Returns
    -------
    torch.nn.Module
        The model, in ``eval()`` mode, with its :class:`WeightsInfo` available from
        :func:`weights_info`.

    Raises
    ------
    FileNotFoundError
        ``"imagenet"`` weights neither cached nor downloadable (the message names the folder and
        the file to place there), or a weights path that does not exist.
    ValueError
        Unknown architecture, a weights file that is not a fitting state dict, a bad device, an
        unverified cached ImageNet file without ``allow_unverified``.
    TypeError
        ``weights`` of a wrong type.
    """
    arch = _check_arch(arch)
    dev = _resolve_device(device)
    allowed = _download_allowed(download)
    if isinstance(weights, torchvision.models.WeightsEnum):
        if weights != _imagenet_weights(arch):
            raise ValueError(f"weights {weights} are not {arch}'s IMAGENET1K_V1; only those are "
                             "supported (use a path for other state dicts)")
        weights = "imagenet"
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise TypeError(f"weights must be 'imagenet', 'random', 'auto' or a path, "
                        f"not {type(weights).__name__}")
    if weights == "random":
        model = _random_model(arch, seed)
        info = WeightsInfo(arch=arch, source="random", pretrained=False, requested="random",
                           seed=seed)
    elif weights == "imagenet":
        model, info = _load_imagenet(arch, allowed, progress, allow_unverified)
    elif weights == "auto":
        try:
            model, info = _load_imagenet(arch, allowed, progress, allow_unverified)
            info = dataclasses.replace(info, requested="auto")
        except FileNotFoundError as err:
            model = _random_model(arch, seed)
            message = (f"PRETRAINED WEIGHTS UNAVAILABLE - using RANDOM {arch} weights (seed {seed}): "
                       f"results describe an untrained network. Why: {err}")
            info = WeightsInfo(arch=arch, source="random", pretrained=False, requested="auto",
                               seed=seed, url=_imagenet_weights(arch).url, warning=message)
            warnings.warn(message, RandomWeightsWarning, stacklevel=2)
    else:
        model, info = _load_file(arch, Path(weights).expanduser(), requested=weights)
    model = model.to(dev).eval()
    model.lrpkit_weights = info
    return model


def _builder(arch: str):
    def build(weights: Any = "auto", **kwargs: Any) -> nn.Module:
        return vgg(arch, weights, **kwargs)

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = f"Build torchvision's ``{arch}``; see :func:`vgg` for the parameters."
    return build


vgg11 = _builder("vgg11")
vgg11_bn = _builder("vgg11_bn")
vgg13 = _builder("vgg13")
vgg13_bn = _builder("vgg13_bn")
vgg16 = _builder("vgg16")
vgg16_bn = _builder("vgg16_bn")
vgg19 = _builder("vgg19")
vgg19_bn = _builder("vgg19_bn")
