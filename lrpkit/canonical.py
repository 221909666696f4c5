"""The canonical, flat and indexed layer list of a VGG-style network.

LRP rules are assigned by *layer index* (thesis Tables 2.3 and 2.4). The index is the one of
Montavon's LRP tutorial: torchvision's ``features`` are indices 0-30 (for VGG-16), the
``classifier`` follows (31 = first Linear, read as a 7x7 convolution; 32 ReLU; 33 Dropout; ...),
and the ``AdaptiveAvgPool2d(7)`` between them gets no index. Batch normalization (the ``vgg*_bn``
models) is folded into the preceding convolution, so that a ``vgg16_bn`` has the same indices as a
``vgg16``.

A :class:`Layer` knows its forward pass and, for linear layers (convolutions and dense layers),
the transposed product that LRP's backward pass needs. Dense layers are kept as matrix products on
the flattened input, which is the same linear map as the tutorial's "Linear as convolution" and
much faster than a 7x7 convolution.

Input sizes
-----------
The adaptive average pool belongs to the first dense layer: that layer's map is
``x ↦ W · pool(x) + b`` with ``pool`` the adaptive average pool and its transposed product is
``poolᵀ(Wᵀ s)``. A 224x224 input gives the 7x7 map for which the pool is the identity, and nothing
changes; any other input of at least 32x32 pixels (VGG's five 2x2 max-pools need 32) runs as in
torchvision: 256x256 gives an 8x8 map that the pool averages in overlapping 2x2 windows, 32x32 a
1x1 map that it copies 49 times.

What LRP does through the pool: the rule of the first dense layer, with its modified weights
``ρ(W)`` (``W`` for LRP-0 and ε, ``W + γW⁺`` for γ), gives

.. math:: R_i = a_i \\sum_k \\frac{(\\rho(W) P)_{ki}}{\\mathrm{den}((\\rho(W) P a)_k + \\rho(b)_k)} R_k

with ``P`` the pool's matrix. That is exactly a separate pool layer under LRP-0 below the dense
layer's rule: the pool's own LRP-0 step ``R_i = a_i Σ_j P_ji R_j / p_j`` with ``p = P a`` cancels the
``p_j`` the dense rule multiplies its relevance by (``R_j = p_j Σ_k ρ(W)_kj s_k``). The pool has no
bias and no parameters to modify, and its relevance is conserved. zennit's composites treat
``AdaptiveAvgPool2d`` the same way (their ``Norm`` rule, LRP-0 with a 1e-6 stabilizer).

Where it would differ: LRP-γ applied to the *merged* matrix ``WP`` (reading pool and dense layer as
one linear layer) would use ``(WP)⁺`` in place of ``W⁺P``. The two are equal when the pooling
windows are disjoint (a map whose sides are multiples of 7, e.g. 448x448 inputs), since then each
input feeds one pooled value; with overlapping windows (8x8 → 7x7 at 256x256) positive and negative
weights of neighbouring windows cancel in ``WP`` before ``⁺`` is taken, and the γ heatmaps differ.
lrpkit applies ρ to the dense layer's own weights, as for a 224x224 input.

References
----------
G. Montavon, *LRP tutorial* (2021), https://git.tu-berlin.de/gmontavon/lrp-tutorial
R. Bermudez Schettino, *In-Depth Hyperparameter Selection for LRP*, TU Berlin (2022), §2.1.4.
M. Anders et al., *Software for dataset-wide XAI: from local explanations to global insights with
Zennit, CoRelAy, and ViRelAy*, arXiv:2106.13200 (2021) (zennit).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Layer", "layers", "check_feature_size", "NonCanonicalModelError", "VGG16_LAYERS"]


#: Layers of VGG-16's canonical list (:func:`layers`): the model of the thesis, and of any network of
#: its layout (13 convolutions, 5 max-pools, 3 dense layers), whatever their widths.
VGG16_LAYERS = 38


class NonCanonicalModelError(ValueError):
    """The model is not a plain chain of convolution, ReLU, pooling and linear layers."""


@dataclass(eq=False)
class Layer:
    """One layer of the canonical chain.

    Attributes
    ----------
    index : int
        Position in the flat list (the thesis's layer index).
    name : str
        Qualified name of the module in the original model, e.g. ``"features.0"``.
    kind : str
        ``"conv"``, ``"linear"``, ``"relu"``, ``"maxpool"`` or ``"identity"`` (dropout, flatten).
    weight, bias : torch.Tensor or None
        Parameters of a conv or linear layer (batch norm already folded in).
    options : dict
        Convolution or pooling options (stride, padding, ...).
    pool : tuple of int or None
        For a dense layer behind an ``AdaptiveAvgPool2d``: the pool's output size ``(h, w)``. The
        layer then averages its input down to ``h x w`` before the matrix product (see Input sizes).
    """

    index: int
    name: str
    kind: str
    weight: Optional[torch.Tensor] = None
    bias: Optional[torch.Tensor] = None
    options: dict = field(default_factory=dict)
    pool: Optional[tuple] = None

    @property
    def is_linear(self) -> bool:
        """Whether the layer is an affine map (convolution or dense) that LRP rules act on."""
        return self.kind in ("conv", "linear")

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """The layer's ordinary forward pass (dropout is the identity: models are in eval mode)."""
        if self.is_linear:
            return self.affine(a, self.weight, self.bias)
        if self.kind == "relu":
            return F.relu(a)
        if self.kind == "maxpool":
            return F.max_pool2d(a, **self.options)
        return a

    def affine(self, a: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """The layer's linear map with other parameters (e.g. ``W⁺``); ``bias`` may be None."""
        if self.kind == "conv":
            return F.conv2d(a, weight, bias, **self.options)
        if self._pools(a.shape):
            a = F.adaptive_avg_pool2d(a, self.pool)
        return F.linear(a.flatten(1), weight, bias)

    def _pools(self, input_shape) -> bool:
        """Whether the adaptive pool in front of this dense layer changes an input of this shape."""
        return self.pool is not None and len(input_shape) == 4 and tuple(input_shape[2:]) != self.pool

    def transpose(self, s: torch.Tensor, weight: torch.Tensor, input_shape: torch.Size) -> torch.Tensor:
        """The transposed linear map ``Wᵀ s`` (the gradient of ``affine`` with respect to its input).

        ``input_shape`` is the shape of the layer's input; its batch size is taken from ``s``.
        """
        shape = (s.shape[0], *input_shape[1:])
        if self.kind == "conv":
            # conv_transpose2d, unlike conv2d_input, keeps a channels-last ``s`` channels-last
            opts = self.options
            stride, padding, dilation = (_pair(opts[k]) for k in ("stride", "padding", "dilation"))
            size = [(s.shape[2 + d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (weight.shape[2 + d] - 1) + 1
                    for d in range(2)]
            output_padding = tuple(shape[2 + d] - size[d] for d in range(2))
            return F.conv_transpose2d(s, weight, None, stride, padding, output_padding, opts["groups"], dilation)
        if self._pools(shape):
            return _adaptive_pool_adjoint((s @ weight).view(*shape[:2], *self.pool), shape[2:])
        return (s @ weight).view(shape)


def _adaptive_pool_adjoint(c: torch.Tensor, size) -> torch.Tensor:
    """The transpose of ``adaptive_avg_pool2d(·, c.shape[2:])`` on maps of ``size``, applied to ``c``.

    The pool averages rows and columns separately, ``pool(a) = P_h a P_wᵀ``, so its transpose is
    ``P_hᵀ c P_w``.
    """
    rows, cols = (_adaptive_pool_matrix(n, m, c) for n, m in zip(size, c.shape[2:]))
    return rows.T @ c @ cols


def _adaptive_pool_matrix(size: int, pooled: int, like: torch.Tensor) -> torch.Tensor:
    """``P[i, j] = 1/|window i|`` for ``j`` in PyTorch's window ``[⌊i·n/m⌋, ⌈(i+1)·n/m⌉)``."""
    i = torch.arange(pooled)
    start, stop = (i * size) // pooled, -((-(i + 1) * size) // pooled)
    j = torch.arange(size)
    inside = ((j >= start[:, None]) & (j < stop[:, None])).to(like)
    return inside / (stop - start)[:, None].to(like)  # 1/|window| in the maps' own precision


_LINEAR_TYPES = (nn.Conv2d, nn.Linear)
_PASSTHROUGH_TYPES = (nn.Dropout, nn.Flatten, nn.Identity)


def layers(model: nn.Module) -> list[Layer]:
    """Flatten a VGG-style model into its canonical, indexed list of layers.

    Parameters
    ----------
    model : torch.nn.Module
        A torchvision ``VGG`` (``vgg11``/``13``/``16``/``19`` and their ``_bn`` variants) or an
        ``nn.Sequential`` (possibly nested) of ``Conv2d``, ``BatchNorm2d`` (after a convolution),
        ``ReLU``, ``MaxPool2d``, ``Flatten``, ``Dropout`` and ``Linear`` modules.

    Returns
    -------
    list of Layer
        The chain, indexed as in the thesis's tables.

    Raises
    ------
    NonCanonicalModelError
        If the model has residual connections, unknown layer types or a batch norm that does not
        follow a convolution; the message names the offending layer.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    from torchvision.models import VGG  # local import: torchvision is heavy

    if isinstance(model, VGG):
        if not isinstance(model.avgpool, nn.AdaptiveAvgPool2d):
            raise NonCanonicalModelError(
                f"layer 'avgpool' ({model.avgpool!r}) is not an AdaptiveAvgPool2d, which lrpkit reads into the first dense layer"
            )
        modules = _leaves(model.features, "features") + [("avgpool", model.avgpool)] + _leaves(
            model.classifier, "classifier"
        )
    elif isinstance(model, nn.Sequential):
        modules = _leaves(model, "")
    else:
        offending = _first_unsupported(model)
        where = f"layer '{offending[0]}' ({type(offending[1]).__name__})" if offending else "its forward pass"
        raise NonCanonicalModelError(
            f"{type(model).__name__} is not a canonical conv/ReLU/pool/linear chain: {where} cannot be "
            "read as a sequence (residual connections or unknown layer types); lrpkit handles torchvision "
            "VGG models and nn.Sequential chains"
        )

    chain: list[Layer] = []
    pool = None  # (name, output size) of an adaptive average pool waiting for its dense layer
    for name, module in modules:
        if isinstance(module, nn.BatchNorm2d):
            if not chain or chain[-1].kind != "conv":
                raise NonCanonicalModelError(f"layer '{name}' (BatchNorm2d) does not follow a convolution and cannot be folded")
            _fold_batchnorm(chain[-1], module, name)
            continue
        if isinstance(module, nn.AdaptiveAvgPool2d):  # no index: read into the next dense layer
            size = _pair(module.output_size)
            if pool is not None or None in size:
                raise NonCanonicalModelError(f"layer '{name}' ({module!r}) is not supported: one adaptive average "
                                             "pool with a fixed output size, in front of a dense layer")
            pool = (name, size)
            continue
        layer = _layer(len(chain), name, module)
        if pool is not None and layer.kind == "linear":
            layer.pool, pool = pool[1], None
        elif pool is not None and layer.kind != "identity":
            raise NonCanonicalModelError(f"layer '{pool[0]}' (AdaptiveAvgPool2d) must be followed by a dense layer "
                                         f"(Linear), not by '{name}' ({type(module).__name__})")
        chain.append(layer)
    if pool is not None:
        raise NonCanonicalModelError(f"layer '{pool[0]}' (AdaptiveAvgPool2d) must be followed by a dense layer (Linear)")
    return chain


def check_feature_size(chain: list[Layer], x: torch.Tensor) -> None:
    """Raise a clear error if ``x`` is too small for the chain's pooling and convolutions, or if a
    dense layer would not get the number of features its weights expect.

    Shapes are propagated on the ``meta`` device, which costs no computation.
    """
    size = tuple(x.shape[-2:])
    failed = _propagate_shape(chain, x.shape, x.dtype)
    if failed is None:
        return
    layer, got = failed
    if got is None:
        low = tuple(_smallest_side(chain, x.shape, x.dtype, d) for d in (2, 3))
        raise ValueError(f"input of size {size} is too small: layer {layer.index} ('{layer.name}', {layer.kind}) "
                         f"would get an empty feature map; this model needs inputs of at least {low[0]}x{low[1]} pixels")
    raise ValueError(f"input of size {size} gives {got} features at layer {layer.index} ('{layer.name}'), which expects "
                     f"{layer.weight.shape[1]}; the model has no adaptive pooling in front of that layer, so its "
                     "input size is fixed: use the size it was built for")


def _propagate_shape(chain: list[Layer], shape, dtype):
    """Run ``chain`` on a meta tensor of ``shape``: None if it runs, else (the layer that fails,
    the number of features it got, or None for a map that pooling or convolution empties)."""
    a = torch.empty(shape, device="meta", dtype=dtype)
    for layer in chain:
        if layer.kind == "linear":
            if layer._pools(a.shape) and min(a.shape[2:]) == 0:
                return layer, None
            got = a[0].numel() if not layer._pools(a.shape) else a.shape[1] * layer.pool[0] * layer.pool[1]
            return None if got == layer.weight.shape[1] else (layer, got)
        meta = Layer(layer.index, layer.name, layer.kind, _on_meta(layer.weight), _on_meta(layer.bias), layer.options)
        try:
            a = meta.forward(a)
        except RuntimeError:  # "output size is too small", "kernel size can't be greater than input size"
            return layer, None
        if a.dim() == 4 and min(a.shape[2:]) == 0:
            return layer, None
    return None


def _smallest_side(chain: list[Layer], shape, dtype, dim: int, largest: int = 4096) -> int:
    """The smallest input side along ``dim`` (the other side large) that no layer empties."""
    def fits(n):
        probe = list(shape[:2]) + [largest, largest]
        probe[dim] = n
        failed = _propagate_shape(chain, probe, dtype)
        return failed is None or failed[1] is not None  # a feature-count mismatch is not about emptiness

    return next((n for n in range(1, largest + 1) if fits(n)), largest)


def _on_meta(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else torch.empty(t.shape, device="meta", dtype=t.dtype)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _leaves(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """The leaf modules of a (nested) Sequential, with qualified names."""
    out = []
    for name, child in module.named_children():
        qualified = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Sequential):
            out.extend(_leaves(child, qualified))
        else:
            out.append((qualified, child))
    return out


def _first_unsupported(model: nn.Module):
    supported = _LINEAR_TYPES + _PASSTHROUGH_TYPES + (nn.ReLU, nn.MaxPool2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d, nn.Sequential)
    for name, module in model.named_modules():
        if name and not isinstance(module, supported):
            return name, module
    return None


def _layer(index: int, name: str, module: nn.Module) -> Layer:
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise NonCanonicalModelError(f"layer '{name}' (Conv2d) uses padding={module.padding!r}, "
                                         f"padding_mode={module.padding_mode!r}; only explicit zero padding is supported")
        options = dict(stride=module.stride, padding=module.padding, dilation=module.dilation, groups=module.groups)
        return Layer(index, name, "conv", module.weight.detach(), _bias(module), options)
    if isinstance(module, nn.Linear):
        return Layer(index, name, "linear", module.weight.detach(), _bias(module))
    if isinstance(module, nn.ReLU):
        return Layer(index, name, "relu")
    if isinstance(module, nn.MaxPool2d):
        if _pair(module.dilation) != (1, 1) or module.return_indices:
            raise NonCanonicalModelError(f"layer '{name}' (MaxPool2d) uses dilation or return_indices, which are not supported")
        options = dict(kernel_size=module.kernel_size, stride=module.stride, padding=module.padding, ceil_mode=module.ceil_mode)
        return Layer(index, name, "maxpool", options=options)
    if isinstance(module, _PASSTHROUGH_TYPES):
        return Layer(index, name, "identity")
    raise NonCanonicalModelError(
        f"layer '{name}' ({type(module).__name__}) is not a canonical conv/ReLU/pool/linear layer"
    )


def _bias(module: nn.Module) -> torch.Tensor:
    if module.bias is not None:
        return module.bias.detach()
    return module.weight.new_zeros(module.weight.shape[0])


def _fold_batchnorm(conv: Layer, bn: nn.BatchNorm2d, name: str) -> None:
    """Fold an eval-mode batch norm into the preceding convolution (in place on the Layer)."""
    if bn.running_mean is None or bn.running_var is None:
        raise NonCanonicalModelError(f"layer '{name}' (BatchNorm2d) keeps no running statistics and cannot be folded")
    scale = (bn.running_var + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    conv.weight = conv.weight * scale.view(-1, 1, 1, 1)
    conv.bias = conv.bias * scale + shift
    conv.name = f"{conv.name}+{name}"
