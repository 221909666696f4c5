"""Scoring the images of a Pixel-Flipping plan: built chunk by chunk, scored in batched forward passes.

The images of a plan (:mod:`lrpkit.pf.plan`) are built by its fill (:mod:`lrpkit.pf.fills`) in
fixed chunks of ``batch_size``, without autograd, while worker threads inpaint a few chunks ahead
(:class:`lrpkit.inpainting.Inpainter`). The originals and the gray image are scored first: their
outputs resolve ``target=None`` and check the targets' range. Only the targets' scores are kept.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Set

import torch
from tqdm.auto import tqdm

from .. import _checks, inpainting
from .fills import _Fill
from .options import PixelFlippingOptions
from .plan import _Key, _Plan


class _Builder:
    """Builds the images of a plan chunk by chunk, handing inpainting jobs to the workers a few
    chunks ahead of the forward passes and dropping a job's output once its images are built."""

    def __init__(self, plan: _Plan, fill: _Fill, order: Sequence[_Key], workers: int, lookahead: int,
                 keep: Set[_Key]):
        position = {key: i for i, key in enumerate(order)}
        self.plan, self.fill, self.keep, self.lookahead = plan, fill, keep, lookahead
        self.job_start = [min(position[key] for key in produced) for produced in plan.jobs]
        self.uses_left = [len(produced) for produced in plan.jobs]
        self.inpainter = inpainting.Inpainter(workers) if plan.jobs else None
        self.futures: Dict[int, object] = {}
        self.kept: Dict[_Key, torch.Tensor] = {}
        self.built = self.submitted = 0

    def images(self, chunk: Sequence[_Key]) -> List[torch.Tensor]:
        while (self.submitted < len(self.plan.jobs)
               and self.job_start[self.submitted] < self.built + len(chunk) + self.lookahead):
            self.futures[self.submitted] = self.inpainter.submit(*self.fill.job(self.submitted))
            self.submitted += 1
        images = []
        for key in chunk:
            image = self.fill.build(key, lambda job: self.futures[job].result())
            if key in self.keep:
                self.kept[key] = image.clone()
            images.append(image)
            if key in self.plan.job_of_key:                       # free finished jobs' results
                job = self.plan.job_of_key[key].job
                self.uses_left[job] -= 1
                if self.uses_left[job] == 0:
                    del self.futures[job]
        self.built += len(chunk)
        return images

    def close(self) -> None:
        for future in self.futures.values():
            future.cancel()


def _score(plan: _Plan, fill: _Fill, model: torch.nn.Module, options: PixelFlippingOptions,
           targets: Optional[torch.Tensor], dtype: torch.dtype, keep: Set[_Key]):
    """Score every key of the plan in batched forward passes.

    The originals and the gray image come first, in chunks of their own: their whole outputs
    resolve ``target=None`` (the predicted class) and check the targets' range. The other keys
    follow in fixed chunks of ``batch_size``, so that the numbers do not depend on timing, and only
    the targets' scores are kept.

    Returns
    -------
    ``({(key, class): score}, targets [B] int64, {key: image} of the keys in keep)``
    """
    batch_size, device = options.batch_size, torch.device(options.device)
    head = [key for key in plan.keys if key.kind in ("original", "gray")]
    rest = [key for key in plan.keys if key.kind not in ("original", "gray")]
    builder = _Builder(plan, fill, head + rest, options.workers, 2 * batch_size + 8 * max(options.workers, 1), keep)
    bar = tqdm(total=len(plan.keys), unit="img", desc="pixel flipping", leave=False,
               disable=None if options.progress is None else not options.progress)

    forward = _Forward(model, device)

    def passes(keys):
        for chunk, out in _forward_passes(forward, _chunks(keys, batch_size), builder.images, device, dtype):
            bar.update(len(chunk))
            yield chunk, _scores(out, len(chunk), options.score)

    try:
        with torch.inference_mode():
            outputs = {key: row for chunk, out in passes(head) for key, row in zip(chunk, out)}
            targets = _resolve_targets(targets, outputs, plan.row_keys)
            needed = _needed_classes(plan.row_keys, targets)
            values = {(key, cls): float(outputs[key][cls]) for key in head for cls in needed[key]}
            for chunk, out in passes(rest):
                for i, key in enumerate(chunk):
                    for cls in needed[key]:
                        values[key, cls] = float(out[i, cls])
    finally:
        bar.close()
        builder.close()
    return values, targets, builder.kept


def _needed_classes(row_keys: List[List[_Key]], targets: torch.Tensor) -> Dict[_Key, Set[int]]:
    """The classes whose score each key needs: the targets of the rows that use it."""
    needed: Dict[_Key, Set[int]] = {}
    for b, row in enumerate(row_keys):
        for key in row:
            needed.setdefault(key, set()).add(int(targets[b]))
    return needed


def _chunks(keys: Sequence[_Key], size: int) -> List[Sequence[_Key]]:
    return [keys[i:i + size] for i in range(0, len(keys), size)]


class _Forward:
    """The model's forward pass on a batch of images, channels-last on the CPU.

    oneDNN's convolutions run faster on a channels-last input (VGG-16, 2 cores, batches of 8: 1.2x
    per image at 224 and 112 px; ``bench/forward_layout.py``), with the same outputs up to float
    rounding (about 1e-6 of the largest). A model that cannot take that layout (a ``view`` of its
    input) raises on the first batch; it then gets the standard layout for the whole run, so that
    every score of a run is computed the same way. An error after a first batch that went through
    is the model's own and is raised.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model = model
        self.channels_last = device.type == "cpu"
        self.worked = False

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.channels_last and batch.dim() == 4:
            try:
                out = self.model(batch.contiguous(memory_format=torch.channels_last))
            except RuntimeError:
                if self.worked:
                    raise
                self.channels_last = False
            else:
                self.worked = True
                return out
        return self.model(batch)


def _forward_passes(forward: _Forward, chunks, images_of, device, dtype):
    """``(chunk, model output)`` of every chunk. Each output is fetched only after the next chunk is
    built: on an accelerator its forward pass, launched asynchronously, overlaps the building."""
    pending = None
    for chunk in chunks:
        images = images_of(chunk)
        if pending is not None:
            yield pending
        pending = (chunk, forward(torch.stack(images).to(device, dtype)))
    if pending is not None:
        yield pending


def _scores(out, n: int, score: str) -> torch.Tensor:
    """A chunk's model output as ``[n, classes]`` float64 scores on the CPU (softmax if asked)."""
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != n:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must return [N, classes] scores, got {shape}")
    out = out.detach().to("cpu", torch.float64)
    return torch.softmax(out, dim=1) if score == "softmax" else out


def _resolve_targets(targets: Optional[torch.Tensor], outputs: Dict[_Key, torch.Tensor],
                     row_keys: List[List[_Key]]) -> torch.Tensor:
    """The targets, or for None the class predicted for each row's original; range checked."""
    if targets is None:
        return torch.tensor([int(outputs[row[0]].argmax()) for row in row_keys], dtype=torch.long)
    _checks.check_class_range(targets, next(iter(outputs.values())).shape[0])
    return targets
