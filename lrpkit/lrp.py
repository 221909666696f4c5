"""Sequential Layer-wise Relevance Propagation (thesis Appendix C.1) and Gradient × Input.

The backward pass is Montavon's tutorial loop, batched over images and over hyperparameter
settings: one forward pass keeps every layer's input; the relevance starts as the target's logit
and walks back through the canonical layer list, each linear layer applying the rule its composite
assigns to its index.

A composite with ``forward`` set (the thesis code's composites) changes the forward pass itself:
each wrapped layer outputs ``z · (out / stabilize(z))``, and the backward divides by the exact
``z``. That is LRP as the thesis code computes it with autograd; its grids cannot share a forward
pass, since the forward pass depends on the rules.

If every sample of a batch shows the same image (a hyperparameter grid), the forward pass runs
once and is shared by all settings, and so is every layer above the first one whose rule has
per-sample hyperparameters. Below it each setting needs its own transposed products; on a CPU
those rows are carried down in blocks small enough to stay in cache, with the rules' terms that
depend only on the activations (``W⁺a``, zᴮ's bounds) computed once. On a CPU the feature maps
are kept channels-last, the layout oneDNN's convolutions work in.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple, Optional, Sequence, Union

import torch
from torch import nn

from . import _checks, canonical
from .composites import Composite
from .heuristics import divide, per_sample, stabilize
from .rules import _empty_rows, pool_relevance

__all__ = ["relevance", "explain", "forward_pass", "gradient_x_input", "Explanation", "ForwardPass"]

Target = Union[None, int, Sequence[int], torch.Tensor]


@dataclass
class Explanation:
    """The result of :func:`explain`.

    Attributes
    ----------
    relevance : torch.Tensor
        Relevance of the input pixels, ``[B, C, H, W]``.
    logits : torch.Tensor
        The model's output, ``[B, classes]`` (under a composite's rule-modified ``forward``, the
        modified network's output, whose target logit the relevance starts from).
    target : torch.Tensor
        The explained class of each sample, ``[B]``.
    layer_sums : torch.Tensor
        ``layer_sums[i, b]`` is Σ R at the *input* of layer ``i`` for sample ``b``;
        the last row is Σ R at the output (the target's logit).
    layers : list of Layer
        The canonical layer list.
    composite : Composite
    layer_relevance : list of torch.Tensor or None
        With ``keep_layers=True``: the relevance at the input of every layer (and, last, at the output).
    """

    relevance: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor
    layer_sums: torch.Tensor
    layers: list
    composite: Composite
    layer_relevance: Optional[list] = field(default=None, repr=False)

    def conservation(self, sample: int = 0):
        """A conservation report: Σ R at each layer's input against the target's logit.

        Returns a pandas DataFrame with the columns ``index``, ``layer``, ``kind``, ``rule``,
        ``relevance`` (Σ R at the layer's input) and ``ratio`` (that sum over the logit).
        """
        import pandas as pd

        logit = self.layer_sums[-1, sample].item()
        rows = []
        for layer in self.layers:
            rule = self.composite.rule(layer.index).label if layer.is_linear else ""
            total = self.layer_sums[layer.index, sample].item()
            rows.append((layer.index, layer.name, layer.kind, rule, total, total / logit if logit else float("nan")))
        rows.append((len(self.layers), "output", "logit", "", logit, 1.0))
        return pd.DataFrame(rows, columns=["index", "layer", "kind", "rule", "relevance", "ratio"])


def relevance(model: nn.Module, x: torch.Tensor, target: Target = None, composite: Optional[Composite] = None,
              *, chunk_size: int = 16) -> torch.Tensor:
    """LRP relevance of the input pixels.

    Parameters
    ----------
    model : torch.nn.Module
        A torchvision VGG (or canonical ``nn.Sequential``) in eval mode.
    x : torch.Tensor
        Normalized input, ``[B, C, H, W]``, on the model's device and dtype. A batch of one image
        with a composite of per-sample hyperparameters of length B explains that image B times.
    target : None, int, sequence of int or torch.Tensor
        The class to explain: None for the predicted class (argmax), an int for all samples, or a
        sequence or 1-D tensor of B class indices (e.g. the ground truth) or of one.
    composite : Composite
        The rules by layer index (:mod:`lrpkit.composites`). Default: LRP-Tutorial.
    chunk_size : int
        Samples per backward pass; bounds memory for large grids (on a CPU, the early layers of a
        grid over one image are further split into blocks of rows under ``CPU_BLOCK_BYTES``).

    Returns
    -------
    torch.Tensor
        ``[B, C, H, W]``; sums to about the target's logit per sample where the rules conserve.
    """
    return explain(model, x, target, composite, chunk_size=chunk_size).relevance


def explain(model: nn.Module, x: torch.Tensor, target: Target = None, composite: Optional[Composite] = None,
            *, keep_layers: bool = False, chunk_size: int = 16) -> Explanation:
    """Like :func:`relevance`, returning an :class:`Explanation` with logits, targets, per-layer
    sums (a conservation report) and, with ``keep_layers=True``, every layer's relevance."""
    if composite is None:
        from .composites import tutorial
        composite = tutorial()
    if not isinstance(composite, Composite):
        raise TypeError(f"composite must be an lrpkit Composite, got {type(composite).__name__}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    layers = canonical.layers(model)
    _check_model_and_input(model, layers, x)
    composite.check(len(layers))
    batch = _batch_size(x, composite)
    targets = _checks.targets(target, batch)
    # one image for every sample: share the forward pass, unless the rules change it per sample (then
    # share it up to the first layer that does)
    one_image = x.shape[0] == 1 or bool((x == x[:1]).all())
    shared = one_image and (composite.forward is None or composite.batch_size is None)

    chunks = []
    with torch.no_grad():
        forward = _forward(layers, x[:1], composite) if shared else None
        for start in range(0, batch, chunk_size):
            index = slice(start, min(start + chunk_size, batch))
            part = composite.take(index)
            chunk_forward = forward if shared else _forward(layers, x[:1] if one_image else x[index], part)
            logits = chunk_forward.activations[-1].flatten(1).expand(index.stop - index.start, -1)
            chunk_target = _target(targets, logits, index)
            pass_ = _Pass(layers, *chunk_forward, part, shared, keep_layers, {})
            chunks.append(_backward(pass_, logits, chunk_target))

    def cat(name, dim=0):
        return torch.cat([getattr(c, name) for c in chunks], dim=dim)

    layer_relevance = None
    if keep_layers:
        layer_relevance = [torch.cat([c.kept[k] for c in chunks]) for k in range(len(layers) + 1)]
    return Explanation(cat("relevance"), cat("logits"), cat("target"), cat("sums", 1), layers, composite,
                       layer_relevance)


class ForwardPass(NamedTuple):
    """A forward pass through the canonical layer list (:func:`forward_pass`).

    Attributes
    ----------
    activations : list of torch.Tensor
        The input of every layer, and the output last (``len(layers) + 1`` tensors).
    outputs : dict
        Under a composite's rule-modified ``forward``: each wrapped layer's own output ``W a + b``
        by layer index (``activations`` hold the modified output).
    preactivations : dict
        Under ``forward``: each wrapped layer's rule pre-activation ``z``, which its rule divides by
        in the backward pass (the same tensor, so that a ``z`` within rounding of zero is the same
        in both passes).
    pooled : tuple or None
        Under ``forward`` with an ``avgpool`` rule: ``(index, a, z)``, the index of the dense layer
        above torchvision's AdaptiveAvgPool2d, the pool's input and its rule's ``z``.
    """

    activations: list
    outputs: dict
    preactivations: dict
    pooled: Optional[tuple] = None


def forward_pass(model: nn.Module, x: torch.Tensor, composite: Optional[Composite] = None) -> ForwardPass:
    """The forward pass that :func:`explain` runs, with every layer's input kept.

    With a composite whose ``forward`` is set (the thesis code's composites), the pass is the
    thesis code's rule-modified one; otherwise the model's own. The composite's hyperparameters
    must be scalars or have one value per image of ``x``.
    """
    layers = canonical.layers(model)
    _check_model_and_input(model, layers, x)
    if composite is not None:
        composite.check(len(layers))
        if composite.batch_size not in (None, x.shape[0]):
            raise ValueError(f"the composite has per-sample hyperparameters for {composite.batch_size} samples "
                             f"but x has {x.shape[0]} images")
    with torch.no_grad():
        return _forward(layers, x, composite)


def _forward(layers, x, composite=None):
    """The forward pass, keeping the input of every layer (and the output, last).

    The pass runs in the input's own memory layout, as the model's ``forward`` does, so that every
    pre-activation ``z`` is the very value the model computes, bit for bit. That matters: a rule
    divides by ``z``, and a pre-activation within rounding of zero that a differently computed
    forward pass puts on the other side of zero switches a ReLU the model's own gradient does not
    (float32: Gradient × Input and uniform LRP-0 then differ by 10 % of the largest relevance
    instead of 1e-6).

    On a CPU the stored maps are then converted to channels-last: oneDNN's transposed convolutions
    need no layout conversion in that layout, which halves their cost for the wide early layers,
    and the rules' element-wise work follows the activations' layout. The conversion copies values
    exactly.

    Under a composite's rule-modified ``forward``, each wrapped layer's output ``out`` is replaced by
    ``z · (out / stabilize(z))`` as the thesis code's rules compute it (same operations, same
    order), and ``out`` is kept in ``outputs``. With per-sample hyperparameters and one image, the
    activations keep batch 1 up to the first layer whose rule has them.
    """
    stabilizer = None if composite is None else composite.forward
    activations, outputs, preactivations, pooled = [x], {}, {}, None
    for layer in layers:
        a = activations[-1]
        if stabilizer is not None and composite.avgpool is not None and layer.pool is not None:
            # the AdaptiveAvgPool2d in front of this dense layer under the code's rule: z = ε + a
            epsilon = composite.avgpool.epsilon
            z = a if epsilon is None else per_sample(epsilon, a) + a
            pooled = (layer.index, a, z)
            a = activations[-1] = _modified_output(z, a, stabilizer)
        out = layer.forward(a)
        z = composite.rule(layer.index).preactivation(layer, a, out) if stabilizer and layer.is_linear else None
        if z is not None:
            outputs[layer.index], preactivations[layer.index] = out, z
            out = _modified_output(z, out, stabilizer)
        activations.append(out)
    if x.device.type == "cpu":
        def layout(t):
            return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
        activations = [layout(a) for a in activations]
        outputs, preactivations = ({i: layout(t) for i, t in d.items()} for d in (outputs, preactivations))
    return ForwardPass(activations, outputs, preactivations, pooled)


def _modified_output(z, out, stabilizer):
    """The thesis code's forward output of a wrapped layer, ``z * (output / stabilize(z))``."""
    return z * (out / stabilize(z, stabilizer))


@dataclass
class _Pass:
    """What a backward pass reads besides the relevance.

    ``activations`` and ``outputs`` as in :class:`ForwardPass`; ``shared`` when the activations have
    batch 1 and serve every sample; ``memo`` keeps what the rules compute from the activations alone.
    """

    layers: list
    activations: list
    outputs: dict
    preactivations: dict
    pooled: Optional[tuple]
    composite: Composite
    shared: bool
    keep_layers: bool
    memo: dict

    def output(self, layer):
        """The layer's own output ``W a + b`` (``z`` of its rule)."""
        return self.outputs.get(layer.index, self.activations[layer.index + 1])

    def through_pool(self, layer, R):
        """``R`` at the input of ``layer``, carried through the code's avgpool below it if there is one:
        ``a ⊙ R / z``, the pool's own rule with the exact ``z``."""
        if self.pooled is None or self.pooled[0] != layer.index:
            return R
        _, a, z = self.pooled
        return divide(R * a, z)


class _Chunk(NamedTuple):
    relevance: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor
    sums: torch.Tensor
    kept: Optional[list]


def _backward(pass_, logits, target):
    """The LRP backward pass: the tutorial's loop, over a batch of samples and settings.

    When all samples show one image (``activations`` of batch 1), samples that agree on the target
    and on every hyperparameter seen so far share one row of ``R``: ``groups[b]`` is sample b's row.
    Rows split only at a layer whose rule has per-sample hyperparameters, so the part of the network
    above the first varied layer is computed once for the whole grid.
    """
    R = torch.zeros_like(logits).scatter_(1, target[:, None], logits.gather(1, target[:, None]))
    R = R.view(-1, *pass_.activations[-1].shape[1:])  # relevance at the top: the target's logit
    groups = torch.arange(R.shape[0], device=R.device)
    if pass_.shared:
        targets, groups = torch.unique(target, return_inverse=True)
        R = R[_first_of_each(groups, len(targets))]
    top_sum, top_kept = _total(R)[groups], (R[groups] if pass_.keep_layers else None)
    R, trace = _propagate(pass_, len(pass_.layers), R, groups)
    sums = trace.sums + [top_sum]
    for i in reversed(range(len(pass_.layers))):  # ReLU, dropout, flatten: the sum above them
        if sums[i] is None:
            sums[i] = sums[i + 1]
    kept = [r.contiguous() for r in trace.kept + [top_kept]] if pass_.keep_layers else None
    return _Chunk(R.contiguous(), logits, target, torch.stack(sums), kept)


class _Trace(NamedTuple):
    """What a backward pass records below layer ``top``, indexed by layer: ``sums[i]`` is Σ R at
    the input of layer ``i`` per sample (None where the layer passes relevance unchanged),
    ``kept[i]`` that relevance itself (with ``keep_layers``)."""

    sums: list
    kept: list

    @classmethod
    def empty(cls, top: int) -> "_Trace":
        return cls([None] * top, [None] * top)


def _propagate(pass_, top, R, groups):
    """Relevance from the output of ``layers[top - 1]`` down to the input, per sample, and the
    :class:`_Trace` of the layers below ``top``."""
    composite, trace = pass_.composite, _Trace.empty(top)
    for layer in reversed(pass_.layers[:top]):
        a = pass_.activations[layer.index]
        if layer.is_linear or layer.kind == "maxpool":
            rule = composite.rule(layer.index)
            if rule.batch_size is not None and pass_.shared:
                R, groups = _split(R, groups, rule)
            rows = _rows_per_block(a)
            if pass_.shared and R.shape[0] > rows:  # depth first, one block of rows after the other
                R, below = _in_blocks(pass_, layer.index + 1, R, groups, rows)
                trace.sums[:layer.index + 1], trace.kept[:layer.index + 1] = below.sums, below.kept
                return R, trace
            if rule.batch_size is not None:
                rule = rule.take(_first_of_each(groups, R.shape[0]))
            if layer.is_linear:
                R = rule.relevance(layer, a, pass_.output(layer), R, composite.heuristic, pass_.memo,
                                   pass_.preactivations.get(layer.index))
                R = pass_.through_pool(layer, R)
            else:
                R = pool_relevance(layer, a, R, composite.maxpool, rule.epsilon, composite.heuristic)
            trace.sums[layer.index] = _total(R)[groups]
        if pass_.keep_layers:
            trace.kept[layer.index] = R[groups]
    return R[groups], trace


def _in_blocks(pass_, top, R, groups, rows):
    """:func:`_propagate` for blocks of ``rows`` rows of ``R`` in turn, the results gathered per sample."""
    out, trace = None, None
    for start in range(0, R.shape[0], rows):
        samples = ((groups >= start) & (groups < start + rows)).nonzero().squeeze(1)
        block = replace(pass_, composite=pass_.composite.take(samples), shared=True)
        r, part = _propagate(block, top, R[start:start + rows], groups[samples] - start)
        if out is None:
            out = _empty_rows(r, len(groups))
            trace = _Trace([None if v is None else v.new_empty(len(groups)) for v in part.sums],
                           [None if t is None else _empty_rows(t, len(groups)) for t in part.kept])
        out[samples] = r
        for whole, piece in zip(trace.sums + trace.kept, part.sums + part.kept):
            if piece is not None:
                whole[samples] = piece
    return out, trace


#: On a CPU, the layers below a grid's split are processed in blocks of rows whose relevance
#: tensors stay under this size: glibc returns larger buffers to the system when they are freed,
#: so every fresh one costs page faults (a 200 MB tensor per layer and setting pass), while
#: smaller ones are reused, and stay in cache. Other devices have caching allocators: no blocks.
CPU_BLOCK_BYTES = 24 << 20


def _rows_per_block(a):
    if a.device.type != "cpu":
        return float("inf")
    return max(1, CPU_BLOCK_BYTES // (a[0].numel() * a.element_size()))


def _total(R):
    """Σ R per sample (over every non-batch dimension, in any memory layout)."""
    return R.sum(dim=tuple(range(1, R.dim())))


def _split(R, groups, rule):
    """Split the rows of ``R`` so that each row's samples share the rule's hyperparameters."""
    params = [v for v in vars(rule).values() if isinstance(v, torch.Tensor)]
    key = torch.stack([groups.to(params[0].dtype), *params], dim=1)
    unique, new_groups = torch.unique(key, dim=0, return_inverse=True)
    if unique.shape[0] == R.shape[0]:  # every row already shares its hyperparameters
        return R, groups
    rows = groups[_first_of_each(new_groups, unique.shape[0])]
    return R[rows], new_groups


def _first_of_each(groups, count):
    """For each group 0..count-1, the index of its first sample."""
    first = torch.full((count,), len(groups), dtype=torch.long, device=groups.device)
    return first.scatter_reduce(0, groups, torch.arange(len(groups), device=groups.device), "amin")


def gradient_x_input(model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
    """Gradient × Input: ``x ⊙ ∂f_target/∂x``, computed with the model's own autograd.

    Equals uniform LRP-0 without zᴮ and with winner-takes-all max-pooling (Shrikumar et al. 2016).
    """
    _check_model_and_input(model, None, x)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:  # only the input gradient is needed
            p.requires_grad_(False)
        try:
            logits = model(x)
            chosen = _target(_checks.targets(target, x.shape[0]), logits.detach(), slice(0, x.shape[0]))
            (grad,) = torch.autograd.grad(logits.gather(1, chosen[:, None]).sum(), x)
        finally:
            for p in params:
                p.requires_grad_(True)
    return (x * grad).detach()


def _check_model_and_input(model, layers, x):
    _checks.check_images(x)
    _checks.check_eval(model)
    param = next(model.parameters(), None)
    if param is not None and (param.device != x.device or param.dtype != x.dtype):
        raise ValueError(f"x is {x.dtype} on {x.device} but the model is {param.dtype} on {param.device}; "
                         "move one to the other (x.to(...) or model.to(...))")
    first_linear = next((l for l in (layers or []) if l.is_linear), None)
    if first_linear is not None and first_linear.kind == "conv" and x.shape[1] != first_linear.weight.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but layer {first_linear.index} ('{first_linear.name}') expects "
                         f"{first_linear.weight.shape[1]}")
    if layers is not None:
        canonical.check_feature_size(layers, x)


def _batch_size(x, composite):
    settings = composite.batch_size
    if settings is None or settings == x.shape[0]:
        return x.shape[0]
    if x.shape[0] == 1:
        return settings
    raise ValueError(f"the composite has per-sample hyperparameters for {settings} samples but x has {x.shape[0]} images")


def _target(targets, logits, index):
    """The explained class of each sample in ``index`` (``targets`` from :func:`lrpkit._checks.targets`;
    None: the predicted class), checked against the number of classes."""
    chosen = logits.argmax(1) if targets is None else targets[index].to(logits.device)
    _checks.check_class_range(chosen, logits.shape[1])
    return chosen
