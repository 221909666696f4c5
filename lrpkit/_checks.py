"""The checks that several modules make of the same arguments, with one wording each.

A choice among a closed set of strings (:func:`choice`), an integer option (:func:`integer`), a
batch of images (:func:`check_images`, :func:`check_finite`), a model in evaluation mode
(:func:`check_eval`) and the classes to explain or score (:func:`targets`,
:func:`check_class_range`). :mod:`lrpkit.lrp`, :mod:`lrpkit.pf`, :mod:`lrpkit.models`,
:mod:`lrpkit.heuristics`, :mod:`lrpkit.composites`, :mod:`lrpkit.data` and the experiment's config
call them, so that one kind of mistake reads alike wherever it is made: a line in lower case that
names the argument, the value (``!r``), what is allowed and the fix.

This module is private: it imports nothing of lrpkit, so that every module may use it.
"""
from __future__ import annotations

import difflib
import math
import numbers
from typing import Any, Optional, Sequence

import torch

__all__ = ["choice", "integer", "check_images", "check_finite", "check_eval", "targets", "check_class_range"]


def choice(name: str, value: Any, options: Sequence[Any], *, fold_case: bool = False, alternative: str = "",
           known: str = "") -> Any:
    """``value`` if it is one of ``options``, else a ValueError in the one wording of lrpkit.

    "unknown heuristic 'magic'; choose one of 'vanilla', 'zennit', 'tutorial'", with a guess
    ("(did you mean 'morf'?)") when a close option exists. ``fold_case`` compares (and returns)
    strings in lower case; ``alternative`` names what else is accepted ("a list of cumulative patch
    counts"); ``known`` names the options ("the known sets": "choose one of the known sets: ...").
    """
    given = value.lower() if fold_case and isinstance(value, str) else value
    try:
        found = given in options
    except TypeError:  # an unhashable value in a set of options
        found = False
    if found:
        return given
    shown = ", ".join(repr(o) for o in options)
    near = difflib.get_close_matches(str(given), [str(o) for o in options], n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    also = f" or {alternative}" if alternative else ""
    among = f"{known}: " if known else ""
    raise ValueError(f"unknown {name} {value!r}{hint}; choose one of {among}{shown}{also}")


def integer(name: str, value: Any, minimum: Optional[int] = None, *, hint: str = "") -> int:
    """``value`` as an int: a TypeError if it is not an integer (bools are not), a ValueError if
    it is below ``minimum``. ``hint`` is added in parentheses ("0: inpaint in the calling thread")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        note = f" ({hint})" if hint else ""
        raise ValueError(f"{name} must be an int >= {minimum}{note}, got {value!r}")
    return int(value)


def real(name: str, value: Any, minimum: Optional[float] = None) -> float:
    """``value`` as a finite float: a TypeError if it is not a real number (bools are not), a
    ValueError if it is NaN, infinite or below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return value


def check_images(x: Any, name: str = "x") -> None:
    """A batch of normalized images: a floating-point tensor ``[B, C, H, W]`` with ``B >= 1``,
    without NaN or Inf."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be 4-D [B, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} holds no image (batch size 0)")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (normalized image), got {x.dtype}")
    check_finite(name, x)


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """A ValueError if ``tensor`` holds NaN or Inf."""
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or Inf")


def check_eval(model: Any) -> None:
    """A ``torch.nn.Module`` in evaluation mode (dropout and batch norm in training mode would
    change its output from call to call)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("model is in training mode (dropout, batch-norm statistics); call model.eval() first")


_TARGET_FORMS = "None, an int, a sequence of ints or a 1-D tensor of class indices"


def targets(target: Any, batch: int) -> Optional[torch.Tensor]:
    """The class of every sample: ``[batch]`` int64 on the CPU, or None (the caller takes the
    predicted class).

    ``target`` is None, an int (every sample), or a sequence, array or tensor of one class index
    per sample or of a single one. The range is checked once the number of classes is known
    (:func:`check_class_range`).
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError(f"target must be {_TARGET_FORMS}, got a bool")
    if isinstance(target, numbers.Integral):
        return torch.full((batch,), int(target), dtype=torch.long)
    try:
        resolved = torch.as_tensor(target)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"target must be {_TARGET_FORMS}, got {target!r}") from None
    if resolved.is_floating_point() or resolved.is_complex() or resolved.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got {resolved.dtype}")
    if resolved.dim() > 1:
        raise ValueError(f"target must be 1-D (one class index per sample), got shape {tuple(resolved.shape)}")
    resolved = resolved.reshape(-1)
    if resolved.numel() == 1:
        resolved = resolved.expand(batch)
    if resolved.numel() != batch:
        raise ValueError(f"target has {resolved.numel()} entries for a batch of {batch}; give one class index "
                         "per sample or a single one")
    return resolved.to("cpu", torch.long).clone()


def check_class_range(chosen: torch.Tensor, classes: int) -> None:
    """A ValueError naming the first class index outside ``[0, classes)``."""
    bad = (chosen < 0) | (chosen >= classes)
    if bad.any():
        value = chosen[bad][0].item()
        raise ValueError(f"target {value} is out of range: the model has {classes} classes (0-{classes - 1})")
