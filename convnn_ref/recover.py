"""Exact constructors: ConvNN configurations and layers that *are* PyTorch's convolution and
attention, up to floating-point summation order (the conditions and their traps:
docs/semantics.md, "Exact recovery").

- `conv_config` / `from_conv`: ``nn.Conv1d/2d/3d`` and depthwise convolution. Exact for every kernel
  (odd, even, non-square), input shape, stride, padding (int, tuple, 'valid', 'same'),
  dilation, groups and padding mode, under the default ``convention='exact'``: integer
  positions, Chebyshev distance with each axis scaled by ``dilation*K/2``, queries at the
  window's centre, candidates on the dilation lattice of the zero-padded grid, slots by offset.
- ``convention='research'`` is the research code's selection instead (Euclidean on
  ``linspace(-1, 1)`` coordinates, no axis scaling). It is exact only for 1x1, 3x3 and 5x5
  kernels on inputs whose padded axes have near-equal spacing; it misses at 7x7 (the Euclidean
  ball is a disc) and on a 4x10 input (normalized coordinates are anisotropic). Kept so that
  the trap can be tested, not used.
- `from_multihead_attention`: ``nn.MultiheadAttention``; `scaled_dot_product_attention`:
  the functional twin of ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from convnn_ref import functional
from convnn_ref.config import ConvNNConfig, check_bool, check_int, padding_per_axis, per_axis
from convnn_ref.layers import ConvNNAttention, _ConvNNNd, convnn_layer
from convnn_ref.validation import as_allowed, check_probability

Convention = Literal["exact", "research"]


def resolve_conv_padding(
    padding: str | int | tuple[int, ...], kernel: tuple[int, ...], dilation: tuple[int, ...], stride: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """PyTorch's padding argument as ``(lo, hi)`` per axis. 'same' puts the extra point of an
    odd total ``dilation*(K-1)`` on the high side, as PyTorch does; it needs stride 1."""
    d = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * d
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"padding='same' needs stride 1 on every axis, got stride={stride}")
            pairs = []
            for k, dl in zip(kernel, dilation):
                total = dl * (k - 1)
                pairs.append((total // 2, total - total // 2))
            return tuple(pairs)
        raise ValueError(f"padding={padding!r} is not 'valid', 'same', an int or a tuple of ints")
    pads = per_axis(padding, d, "padding")
    if any(p < 0 for p in pads):
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return tuple((p, p) for p in pads)


def conv_config(
    kernel_size: int | tuple[int, ...],
    *,
    spatial_dims: int,
    stride: int | tuple[int, ...] = 1,
    padding: str | int | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    convention: Convention = "exact",
) -> ConvNNConfig:
    """The ConvNN configuration of ``nn.ConvNd(..., kernel_size, stride, padding, dilation,
    groups)``; its weight is ``conv.weight.reshape(C_out, C_in/groups, -1)``."""
    if convention not in ("exact", "research"):
        raise ValueError(f"convention={convention!r} is not one of ('exact', 'research')")
    spatial_dims = check_int(spatial_dims, "spatial_dims", minimum=1)
    if spatial_dims > 3:
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got spatial_dims={spatial_dims}")
    groups = check_int(groups, "groups", minimum=1)
    kernel = per_axis(kernel_size, spatial_dims, "kernel_size")
    strides = per_axis(stride, spatial_dims, "stride")
    dilations = per_axis(dilation, spatial_dims, "dilation")
    for name, values in (("kernel_size", kernel), ("stride", strides), ("dilation", dilations)):
        if any(v < 1 for v in values):
            raise ValueError(f"{name} must be >= 1 on every axis, got {name}={values}")
    pads = resolve_conv_padding(padding, kernel, dilations, strides)
    if convention == "exact":
        metric, coordinates, scaled = "chebyshev", "integer", True
    else:
        metric, coordinates, scaled = "euclidean", "normalized", False
    return ConvNNConfig(
        k=math.prod(kernel),
        basis="position",
        metric=metric,  # type: ignore[arg-type]
        coordinates=coordinates,  # type: ignore[arg-type]
        kernel_size=kernel,
        kernel_scaled=scaled,
        slot_order="offset",
        rho="ones",
        kernel="full" if groups == 1 else "grouped",
        groups=groups,
        stride=strides,
        padding=pads,
        dilation=dilations,
        border="zeros",
    )


def from_conv(conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, *, convention: Convention = "exact") -> _ConvNNNd:
    """A ConvNN layer computing the same function as ``conv`` (a copy of its weights).

    Transposed convolutions are refused. ``padding_mode`` reflect/replicate/circular is
    reproduced by padding the input first, as ``nn.ConvNd`` does.
    """
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        raise TypeError(f"conv must be nn.Conv1d, nn.Conv2d or nn.Conv3d, got {type(conv).__name__}")
    if isinstance(conv, LazyModuleMixin) and conv.has_uninitialized_params():
        raise ValueError(
            f"conv is an uninitialized {type(conv).__name__}: its in_channels and weight are not known until its first "
            "forward; run one input through it first"
        )
    d = len(conv.kernel_size)
    config = conv_config(
        tuple(conv.kernel_size),
        spatial_dims=d,
        stride=tuple(conv.stride),
        padding=conv.padding if isinstance(conv.padding, str) else tuple(conv.padding),
        dilation=tuple(conv.dilation),
        groups=conv.groups,
        convention=convention,
    )
    w = conv.weight
    padded = any(lo or hi for lo, hi in padding_per_axis(config.padding, d))
    layer = convnn_layer(d)(
        conv.in_channels,
        conv.out_channels,
        config,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode if padded else "zeros",  # without padding every mode is 'zeros'
        device=w.device,
        dtype=w.dtype,
    )
    with torch.no_grad():
        assert layer.weight is not None
        layer.weight.copy_(w.reshape(conv.out_channels, conv.in_channels // conv.groups, -1))
        if conv.bias is not None:
            assert layer.bias is not None
            layer.bias.copy_(conv.bias)
    return layer


def from_multihead_attention(mha: nn.MultiheadAttention, *, k: int | None = None) -> ConvNNAttention:
    """A ConvNN attention layer computing ``mha(q, k, v, need_weights=False)[0]`` (k = None:
    every allowed key), with the same heads, projections, biases, dropout and ``batch_first``.
    ``add_bias_kv`` and ``add_zero_attn`` are refused by name."""
    if not isinstance(mha, nn.MultiheadAttention):
        raise TypeError(f"mha must be nn.MultiheadAttention, got {type(mha).__name__}")
    if mha.bias_k is not None or mha.bias_v is not None:
        raise NotImplementedError("nn.MultiheadAttention(add_bias_kv=True) is not supported: its extra key/value is not a token")
    if mha.add_zero_attn:
        raise NotImplementedError("nn.MultiheadAttention(add_zero_attn=True) is not supported")
    e = mha.embed_dim
    ref = mha.out_proj.weight
    has_bias = mha.in_proj_bias is not None
    layer = ConvNNAttention(
        e,
        mha.num_heads,
        k,
        dropout=mha.dropout,
        bias=has_bias,
        batch_first=mha.batch_first,
        kdim=mha.kdim,
        vdim=mha.vdim,
        device=ref.device,
        dtype=ref.dtype,
    )
    with torch.no_grad():
        if mha._qkv_same_embed_dim:
            assert mha.in_proj_weight is not None
            wq, wk, wv = mha.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        layer.q_proj.weight.copy_(wq)
        layer.k_proj.weight.copy_(wk)
        layer.v_proj.weight.copy_(wv)
        if has_bias:
            bq, bk, bv = mha.in_proj_bias.chunk(3)
            layer.q_proj.bias.copy_(bq)
            layer.k_proj.bias.copy_(bk)
            layer.v_proj.bias.copy_(bv)
        layer.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.out_proj.bias is not None and layer.out_proj.bias is not None:
            layer.out_proj.bias.copy_(mha.out_proj.bias)
    return layer.train(mha.training)


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    k: int | None = None,
    memory_budget: int | None = None,
) -> torch.Tensor:
    """The ConvNN twin of ``F.scaled_dot_product_attention``: query ``(..., L, E)``, key
    ``(..., S, E)``, value ``(..., S, Ev)`` -> ``(..., L, Ev)``; the batch dimensions broadcast.

    ``attn_mask`` as in SDPA: bool True = *may* attend, or float holding only 0 and -inf
    (additive score biases raise NotImplementedError; NaN or +inf ValueError); it broadcasts
    to ``(..., L, S)``. ``is_causal`` is the top-left causal mask. ``k`` (default None: every
    allowed key) below S gives KVT attention. A fully masked query row returns 0, as SDPA does
    (docs/semantics.md). L = 0 or an empty batch returns an empty tensor, as SDPA does; S = 0
    is refused (ConvNN needs a candidate; SDPA returns zeros).
    """
    tensors = {"query": query, "key": key, "value": value}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have rank >= 2 (..., L or S, E), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {t.dtype}")
    for name in ("key", "value"):
        t = tensors[name]
        if t.device != query.device:
            raise ValueError(f"{name} is on {t.device} but query is on {query.device}; move them to one device")
        if t.dtype != query.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but query has dtype {query.dtype}; cast them to one dtype")
    nq, nk, e = query.shape[-2], key.shape[-2], query.shape[-1]
    if key.shape[-1] != e:
        raise ValueError(f"key must have the query's feature size E={e}, got key of shape {tuple(key.shape)}")
    if value.shape[-2] != nk:
        raise ValueError(f"value must have as many rows as key (S={nk}), got value of shape {tuple(value.shape)}")
    if nk == 0:
        raise ValueError(f"key must hold at least one key (S >= 1), got shape {tuple(key.shape)}")
    if e == 0 or value.shape[-1] == 0:
        raise ValueError(f"query and value must have at least one feature (E >= 1, Ev >= 1), got E={e}, Ev={value.shape[-1]}")
    try:
        lead = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"the batch dimensions of query {tuple(query.shape[:-2])}, key {tuple(key.shape[:-2])} and "
            f"value {tuple(value.shape[:-2])} must broadcast"
        ) from None
    dropout_p = check_probability(dropout_p, "dropout_p")
    check_bool(is_causal, "is_causal")
    if is_causal and attn_mask is not None:
        raise ValueError("pass either attn_mask or is_causal, not both (as SDPA requires)")
    config = ConvNNConfig(k=k, basis="feature", similarity="scaled_dot", scale=scale, rho="softmax", kernel="sum")
    b = math.prod(lead)
    allowed = None
    if attn_mask is not None:
        mask = as_allowed(attn_mask, "attn_mask", true_means="allowed")
        if mask.device != query.device:
            raise ValueError(f"attn_mask is on {mask.device} but query is on {query.device}; move them to one device")
        try:
            torch.broadcast_shapes(tuple(mask.shape), (*lead, nq, nk))
        except RuntimeError:
            raise ValueError(f"attn_mask of shape {tuple(mask.shape)} must broadcast to (..., L, S) = {(*lead, nq, nk)}") from None
        if mask.dim() > len(lead) + 2:
            raise ValueError(f"attn_mask of shape {tuple(mask.shape)} has more dimensions than (..., L, S) = {(*lead, nq, nk)}")
        allowed = mask.expand(*lead, nq, nk).reshape(b, nq, nk)
    elif is_causal:
        allowed = torch.ones(nq, nk, dtype=torch.bool, device=query.device).tril()[None]
    q = query.expand(*lead, *query.shape[-2:]).reshape(b, nq, e)
    kk = key.expand(*lead, *key.shape[-2:]).reshape(b, nk, e)
    v = value.expand(*lead, *value.shape[-2:]).reshape(b, nk, value.shape[-1])
    y = functional.convnn_attention(q, kk, v, config, allowed=allowed, memory_budget=memory_budget, dropout_p=dropout_p)
    return y.reshape(*lead, nq, value.shape[-1])
