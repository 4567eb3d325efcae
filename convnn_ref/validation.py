"""Argument checks that need tensors. Each raises TypeError / ValueError naming the argument
and the constraint it broke, before any torch kernel can fail deep inside (the message format
is in docs/semantics.md, "Errors"). Checks of plain numbers live in `convnn_ref.config`."""

from __future__ import annotations

import torch

from convnn_ref.config import ConvNNConfig, check_int, check_real

_FLOATS = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def check_config(config: object) -> ConvNNConfig:
    """``config`` is a `ConvNNConfig` (validated when it was built)."""
    if not isinstance(config, ConvNNConfig):
        raise TypeError(f"config must be a ConvNNConfig, got {type(config).__name__}")
    return config


def check_sequence_knobs(config: ConvNNConfig) -> None:
    """The sequence form (queries, keys, values) has no grid: the image-only knobs are refused by
    name rather than ignored (docs/semantics.md, "Inert knobs")."""
    image_only = {"coord_encoding": (config.coord_encoding, {"none"}), "stride": (config.stride, {1}), "padding": (config.padding, {0})}
    for name, (value, default) in image_only.items():
        if set(_flatten(value)) != default:
            raise ValueError(
                f"{name}={value!r} has no effect here and is refused: the sequence form (queries, keys, values) "
                f"has no grid; {name} applies to image input (convnn, the ConvNN layers)"
            )


def _flatten(value: object) -> list[object]:
    """The leaves of nested tuples (an int or a string is its own leaf)."""
    return [leaf for v in value for leaf in _flatten(v)] if isinstance(value, tuple) else [value]


def check_memory_budget(memory_budget: object) -> int | None:
    """None (the device's default) or a positive int number of bytes."""
    if memory_budget is None:
        return None
    return check_int(memory_budget, "memory_budget", minimum=1)


def check_generator(generator: object) -> torch.Generator | None:
    """None or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def check_probability(p: object, name: str) -> float:
    """A dropout probability in ``[0, 1)``."""
    value = check_real(p, name, low=0.0)
    if value >= 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {name}={value}")
    return value


def check_tensor(value: object, name: str, ndims: tuple[int, ...], what: str, *, allow_empty: bool = False) -> torch.Tensor:
    """``value`` is a floating tensor whose rank is one of ``ndims`` (and not empty, unless
    ``allow_empty``)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() not in ndims:
        raise ValueError(f"{name} must have rank {' or '.join(map(str, ndims))} ({what}), got shape {tuple(value.shape)}")
    if value.dtype not in _FLOATS:
        raise TypeError(f"{name} must be a floating tensor (float64/32/16, bfloat16), got dtype {value.dtype}")
    if value.numel() == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    return value


def check_like(value: torch.Tensor | None, name: str, ref: torch.Tensor, ref_name: str) -> None:
    """``value`` (if given) is on ``ref``'s device with ``ref``'s dtype."""
    if value is None:
        return
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(value).__name__}")
    if value.device != ref.device:
        raise ValueError(f"{name} is on {value.device} but {ref_name} is on {ref.device}; move them to one device")
    if value.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {value.dtype} but {ref_name} has dtype {ref.dtype}; cast them to one dtype")


def check_weight(weight: torch.Tensor | None, bias: torch.Tensor | None, c_in: int, config: ConvNNConfig, ref: torch.Tensor) -> int:
    """Weight and bias fit the config and ``c_in`` input channels. Returns C_out."""
    groups = config.groups
    if config.kernel != "sum":
        if weight is None:
            raise ValueError(f"kernel={config.kernel!r} needs a weight of shape (C_out, C_in/groups, k)")
        check_like(weight, "weight", ref, "x")
        if c_in % groups:
            raise ValueError(f"groups={groups} must divide the input channels C_in={c_in} (coordinate channels included)")
        c_out = weight.shape[0] if weight.dim() == 3 else -1
        expected = (c_out, c_in // groups, config.k)
        if weight.dim() != 3 or tuple(weight.shape) != expected:
            raise ValueError(
                f"weight must have shape (C_out, C_in/groups, k) = (C_out, {c_in // groups}, {config.k}), "
                f"got {tuple(weight.shape)}"
            )
        if c_out % groups:
            raise ValueError(f"groups={groups} must divide the output channels C_out={c_out}")
    else:
        if weight is not None:
            raise ValueError("kernel='sum' takes no weight; pass weight=None")
        c_out = c_in
    if bias is not None:
        check_like(bias, "bias", ref, "x")
        if tuple(bias.shape) != (c_out,):
            raise ValueError(f"bias must have shape (C_out,) = ({c_out},), got {tuple(bias.shape)}")
    return c_out


def check_k(k: int, available: int, what: str) -> None:
    """k may not exceed the candidate set: an error, never a silent clamp."""
    if k > available:
        raise ValueError(f"k={k} is larger than the candidate set ({available} {what}); choose k <= {available}")


def check_mask(mask: torch.Tensor | None, name: str, shape: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
    """A boolean mask broadcastable to ``shape`` on ``device`` (True = may be a neighbour)."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must have dtype torch.bool (True = allowed), got {mask.dtype}")
    if mask.device != device:
        raise ValueError(f"{name} is on {mask.device} but the queries are on {device}")
    try:
        broadcast = torch.broadcast_shapes(tuple(mask.shape), shape)
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(mask.shape)} does not broadcast to {shape}") from None
    if mask.dim() > len(shape) or tuple(broadcast) != tuple(shape):
        raise ValueError(f"{name} of shape {tuple(mask.shape)} does not broadcast to {shape}: it has more dimensions or larger sizes")
    return mask


def check_feature_padding(config: ConvNNConfig, spatial: tuple[int, ...], padding: tuple[tuple[int, int], ...]) -> None:
    """Feature and hybrid bases: no side of an axis is padded by more points than the axis has
    (``padding`` ``(lo, hi)`` per axis, as resolved for an input of shape ``spatial``). Padded
    points are extra candidates with zero features; more of them than the map has points only
    adds copies of the zero token (docs/semantics.md, "Padding in the feature and hybrid bases")."""
    if config.basis == "position":
        return
    for axis, (size, (lo, hi)) in enumerate(zip(spatial, padding)):
        if max(lo, hi) > size:
            raise ValueError(
                f"padding={config.padding!r} pads axis {axis} by {max(lo, hi)} points, more than its {size} "
                f"points (basis={config.basis!r}: padding must be <= the input's size on every axis, spatial={spatial})"
            )


def check_candidate_index(cand_index: object, tokens: int) -> torch.Tensor | None:
    """None or a 1-d int64 tensor of distinct token indices in ``[0, tokens)`` (the padded grid)."""
    if cand_index is None:
        return None
    if not isinstance(cand_index, torch.Tensor) or cand_index.dtype != torch.int64 or cand_index.dim() != 1:
        raise TypeError("cand_index must be None or a 1-d int64 tensor of token indices into the padded grid")
    if cand_index.numel() == 0:
        raise ValueError("cand_index must hold at least one token index, got an empty tensor")
    low, high = int(cand_index.min()), int(cand_index.max())
    if low < 0 or high >= tokens:
        raise ValueError(f"cand_index must lie in [0, {tokens}) (the padded grid's tokens), got values from {low} to {high}")
    if int(torch.unique(cand_index).numel()) != cand_index.numel():
        raise ValueError("cand_index must hold distinct token indices, got repeats")
    return cand_index


def check_factory_dtype(dtype: object) -> None:
    """A layer's ``dtype``: None or a floating dtype the reference computes in."""
    if dtype is not None and dtype not in _FLOATS:
        raise TypeError(f"dtype must be None or a floating dtype (float64/32/16, bfloat16), got dtype={dtype!r}")


def as_allowed(mask: object, name: str, *, true_means: str) -> torch.Tensor:
    """A PyTorch attention mask as bool *allowed* (True = may be a neighbour).

    bool: True means ``true_means`` ('allowed' as in ``F.scaled_dot_product_attention``,
    'forbidden' as in ``nn.MultiheadAttention``). float: a mask, not a score bias: 0 allows and
    -inf forbids; other values (additive score biases) are not supported.
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return mask if true_means == "allowed" else ~mask
    if mask.is_floating_point():
        if bool(mask.isnan().any()):
            raise ValueError(f"float {name} must hold only 0 (allowed) and -inf (forbidden), got NaN")
        if bool((mask == float("inf")).any()):
            raise ValueError(f"float {name} must hold only 0 (allowed) and -inf (forbidden), got +inf")
        finite = torch.isfinite(mask)
        if bool((mask[finite] != 0).any()):
            raise NotImplementedError(
                f"float {name} must hold only 0 (allowed) and -inf (forbidden): additive score biases are not supported"
            )
        return finite
    raise TypeError(f"{name} must be bool or floating, got dtype {mask.dtype}")
