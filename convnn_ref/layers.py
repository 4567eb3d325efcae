"""ConvNN as ``nn.Module``s: image layers for 1 to 3 spatial axes, multi-head ConvNN attention,
the branching hybrid layer, coordinate channels and pixel (un)shuffle.

Every module accepts any input size; nothing is written onto a module during ``forward``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from convnn_ref import functional, positions
from convnn_ref.config import ConvNNConfig, check_bool, check_int, check_real, padding_per_axis
from convnn_ref.validation import as_allowed, check_config, check_factory_dtype, check_memory_budget, check_probability

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

#: The most weight elements a layer allocates (2**30: 4 GiB in float32). A weight layer holds
#: ``C_out * C_in/groups * k`` elements from construction on, before any input shows how many
#: candidates exist, so an absurd k is refused here by name (k against the input's candidates
#: is checked at forward).
MAX_WEIGHT_ELEMENTS = 2**30


class _ConvNNNd(nn.Module):
    """ConvNN over ``spatial_dims`` spatial axes: x ``(B, C_in, *S)`` -> ``(B, C_out, *S_out)``.

    Parameters follow ``nn.ConvNd``: ``weight`` ``(C_out, C_in'/groups, k)`` (the
    ``nn.Conv1d(C_in', C_out, k, stride=k, groups=groups)`` layout, ``C_in' = C_in + d`` when
    coordinates are aggregated) and ``bias`` ``(C_out,)``. ``padding_mode`` other than
    ``'zeros'`` pads the input with ``F.pad`` first (reflect, replicate, circular), exactly as
    ``nn.ConvNd`` does.
    """

    spatial_dims: int = 0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        config: ConvNNConfig,
        *,
        bias: bool = True,
        padding_mode: str = "zeros",
        memory_budget: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_config(config)
        in_channels = check_int(in_channels, "in_channels", minimum=1)
        out_channels = check_int(out_channels, "out_channels", minimum=1)
        check_bool(bias, "bias")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode={padding_mode!r} is not one of {_PADDING_MODES}")
        check_memory_budget(memory_budget)
        check_factory_dtype(dtype)
        d = self.spatial_dims
        c_in = in_channels + (d if config.coord_encoding in ("aggregate", "both") else 0)
        if config.kernel == "sum":
            if out_channels != c_in:
                raise ValueError(f"kernel='sum' keeps the channels: out_channels must be {c_in}, got {out_channels}")
        elif c_in % config.groups or out_channels % config.groups:
            raise ValueError(
                f"groups={config.groups} must divide in_channels={c_in} (coordinate channels included) "
                f"and out_channels={out_channels}"
            )
        self.pre_padding: tuple[int, ...] = ()
        if padding_mode != "zeros":
            pairs = padding_per_axis(config.padding, d)
            if not any(lo or hi for lo, hi in pairs):
                raise ValueError(
                    f"padding_mode={padding_mode!r} has no effect here and is refused: the config has no padding "
                    f"(padding={config.padding!r}); use padding_mode='zeros'"
                )
            if config.basis != "position" and any(lo or hi for lo, hi in pairs):
                raise NotImplementedError(
                    f"padding_mode={padding_mode!r} with basis={config.basis!r} is not supported: the feature and "
                    "hybrid bases take padded points as zero candidates (padding_mode='zeros')"
                )
            for lo, hi in reversed(pairs):
                self.pre_padding += (lo, hi)
            config = config.replace(padding=0)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.config = config
        self.padding_mode = padding_mode
        self.memory_budget = memory_budget
        if config.kernel == "sum":
            self.register_parameter("weight", None)
        else:
            assert config.k is not None  # the config refuses k=None with a weighted kernel
            shape = (out_channels, c_in // config.groups, config.k)
            if math.prod(shape) > MAX_WEIGHT_ELEMENTS:
                # The weight is allocated here, before any input shows how many candidates exist.
                raise ValueError(
                    f"k={config.k} gives a weight of shape {shape} ({math.prod(shape)} elements), more than the "
                    f"{MAX_WEIGHT_ELEMENTS} a layer allocates; k must not exceed the number of candidates of an input"
                )
            self.weight = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_channels, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.ConvNd``'s initialisation."""
        if self.weight is not None:
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            fan_in = self.weight.shape[1] * self.weight.shape[2]
        else:
            fan_in = self.in_channels
        if self.bias is not None:
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(x, self, self.spatial_dims, self.in_channels)
        if self.pre_padding:
            x = F.pad(x, self.pre_padding, mode=self.padding_mode)
        return functional.convnn(x, self.weight, self.bias, self.config, generator=generator, memory_budget=self.memory_budget)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, {self.config}"


class ConvNN1d(_ConvNNNd):
    """ConvNN on ``(B, C, L)``."""

    spatial_dims = 1


class ConvNN2d(_ConvNNNd):
    """ConvNN on ``(B, C, H, W)``."""

    spatial_dims = 2


class ConvNN3d(_ConvNNNd):
    """ConvNN on ``(B, C, D, H, W)``."""

    spatial_dims = 3


def convnn_layer(spatial_dims: int) -> type[_ConvNNNd]:
    """The ConvNN layer class for 1, 2 or 3 spatial axes."""
    classes: dict[int, type[_ConvNNNd]] = {1: ConvNN1d, 2: ConvNN2d, 3: ConvNN3d}
    spatial_dims = check_int(spatial_dims, "spatial_dims")
    if spatial_dims not in classes:
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got spatial_dims={spatial_dims}")
    return classes[spatial_dims]


def _check_image(x: object, module: nn.Module, spatial_dims: int | None = None, channels: int | None = None) -> None:
    """x is a floating tensor ``(B, C, *S)``: ``spatial_dims`` axes (1 to 3 when None) and
    ``channels`` channels (any when None)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    ranks = (spatial_dims + 2,) if spatial_dims is not None else (3, 4, 5)
    if x.dim() not in ranks:
        what = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{type(module).__name__} expects x of rank {what} (B, C, *S), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor, got dtype {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"x has {x.shape[1]} channels but in_channels={channels}")


class ConvNNAttention(nn.Module):
    """Multi-head ConvNN attention, a drop-in for ``nn.MultiheadAttention``.

    Per head: queries select ``k`` keys (all when None) by ``similarity`` (scaled dot product
    with scale ``1/sqrt(head_dim)`` by default), rho = softmax, sum aggregation. Projections as
    ``nn.MultiheadAttention``: ``in_proj`` (or q/k/v weights when ``kdim``/``vdim`` differ) and
    ``out_proj``, with biases when ``bias``. Masks follow ``nn.MultiheadAttention``: a bool
    ``attn_mask`` ``(L, S)`` or ``(B*H, L, S)`` marks *forbidden* pairs with True; a float one
    may hold only 0 and -inf; ``key_padding_mask`` ``(B, S)`` marks padded keys with True;
    ``is_causal`` adds the causal mask. Returns only the output ``(L, B, E)`` (or ``(B, L, E)``
    with ``batch_first``). Dropout acts on the probabilities.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        k: int | None = None,
        *,
        similarity: str = "scaled_dot",
        scale: float | None = None,
        candidates: str = "all",
        num_candidates: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        memory_budget: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        embed_dim = check_int(embed_dim, "embed_dim", minimum=1)
        num_heads = check_int(num_heads, "num_heads", minimum=1)
        if embed_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide embed_dim={embed_dim}")
        dropout = check_probability(dropout, "dropout")
        check_bool(bias, "bias")
        check_bool(batch_first, "batch_first")
        kdim = None if kdim is None else check_int(kdim, "kdim", minimum=1)
        vdim = None if vdim is None else check_int(vdim, "vdim", minimum=1)
        check_memory_budget(memory_budget)
        check_factory_dtype(dtype)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.config = ConvNNConfig(
            k=k,
            basis="feature",
            similarity=similarity,  # type: ignore[arg-type]
            scale=scale,
            candidates=candidates,  # type: ignore[arg-type]
            num_candidates=num_candidates,
            rho="softmax",
            kernel="sum",
        )
        self.dropout = dropout
        self.batch_first = batch_first
        self.kdim = kdim or embed_dim
        self.vdim = vdim or embed_dim
        self.memory_budget = memory_budget
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        key = query if key is None else key
        value = key if value is None else value
        layout = "(B, L, E)" if self.batch_first else "(L, B, E)"
        param = self.q_proj.weight
        for name, t, width in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() != 3:
                raise ValueError(f"{name} must be a 3-d tensor {layout}, got shape {tuple(t.shape)}")
            if t.shape[-1] != width:
                dim_name = {"query": "embed_dim", "key": "kdim", "value": "vdim"}[name]
                raise ValueError(f"{name} must have {dim_name}={width} features in its last axis, got shape {tuple(t.shape)}")
            if t.dtype != param.dtype:
                raise TypeError(f"{name} has dtype {t.dtype} but the layer's parameters have dtype {param.dtype}")
            if t.device != param.device:
                raise ValueError(f"{name} is on {t.device} but the layer's parameters are on {param.device}")
        check_bool(is_causal, "is_causal")
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, nq, _ = query.shape
        nk = key.shape[1]
        if key.shape[0] != b or value.shape[0] != b or value.shape[1] != nk:
            raise ValueError(f"query, key, value disagree on batch or length: {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        h, dh = self.num_heads, self.head_dim
        q = self.q_proj(query).reshape(b, nq, h, dh).transpose(1, 2).reshape(b * h, nq, dh)
        k = self.k_proj(key).reshape(b, nk, h, dh).transpose(1, 2).reshape(b * h, nk, dh)
        v = self.v_proj(value).reshape(b, nk, h, dh).transpose(1, 2).reshape(b * h, nk, dh)
        allowed = self._allowed(attn_mask, key_padding_mask, is_causal, b, nq, nk, query.device)
        y = functional.convnn_attention(
            q,
            k,
            v,
            self.config,
            allowed=allowed,
            generator=generator,
            memory_budget=self.memory_budget,
            dropout_p=self.dropout if self.training else 0.0,
        )
        y = self.out_proj(y.reshape(b, h, nq, dh).transpose(1, 2).reshape(b, nq, self.embed_dim))
        return y if self.batch_first else y.transpose(0, 1)

    def _allowed(
        self,
        attn_mask: torch.Tensor | None,
        key_padding_mask: torch.Tensor | None,
        is_causal: bool,
        b: int,
        nq: int,
        nk: int,
        device: torch.device,
    ) -> torch.Tensor | None:
        """Combine the masks into ``allowed`` ``(B*H, L, S)`` (True = may be a neighbour)."""
        h = self.num_heads
        allowed = None
        if attn_mask is not None:
            mask = as_allowed(attn_mask, "attn_mask", true_means="forbidden")
            if mask.shape not in ((nq, nk), (b * h, nq, nk)):
                raise ValueError(f"attn_mask must have shape ({nq}, {nk}) or ({b * h}, {nq}, {nk}), got {tuple(mask.shape)}")
            allowed = mask.to(device).expand(b * h, nq, nk)
        if key_padding_mask is not None:
            unpadded = as_allowed(key_padding_mask, "key_padding_mask", true_means="forbidden")
            if unpadded.shape != (b, nk):
                raise ValueError(f"key_padding_mask must have shape ({b}, {nk}), got {tuple(unpadded.shape)}")
            keep = unpadded.to(device)[:, None, None, :].expand(b, h, nq, nk).reshape(b * h, nq, nk)
            allowed = keep if allowed is None else allowed & keep
        if is_causal:
            causal = torch.ones(nq, nk, dtype=torch.bool, device=device).tril().expand(b * h, nq, nk)
            allowed = causal if allowed is None else allowed & causal
        return allowed


class CoordinateEncoding(nn.Module):
    """Appends CoordConv-like channels: x ``(B, C, *S)`` -> ``(B, C + d, *S)``, channel ``C + a``
    holding ``linspace(-1, 1)`` along axis a."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, self)
        coords = positions.coordinate_channels(tuple(x.shape[2:]), x.device, x.dtype)
        return torch.cat([x, coords.expand(x.shape[0], *coords.shape)], dim=1)


class PixelShuffleConvNN2d(nn.Module):
    """Space-to-depth around a ConvNN2d: ``pixel_unshuffle(s)``, ConvNN on ``C*s^2`` channels
    and ``N/s^2`` tokens, ``pixel_shuffle(s)``. x ``(B, C_in, H, W)`` with H, W divisible by s
    -> ``(B, C_out, H', W')``."""

    def __init__(self, in_channels: int, out_channels: int, config: ConvNNConfig, factor: int, *, bias: bool = True) -> None:
        super().__init__()
        self.factor = check_int(factor, "factor", minimum=1)
        in_channels = check_int(in_channels, "in_channels", minimum=1)
        out_channels = check_int(out_channels, "out_channels", minimum=1)
        self.in_channels = in_channels
        self.inner = ConvNN2d(in_channels * self.factor**2, out_channels * self.factor**2, config, bias=bias)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        s = self.factor
        _check_image(x, self, 2, self.in_channels)
        if x.shape[-1] % s or x.shape[-2] % s:
            raise ValueError(f"x must have H and W divisible by factor={s}, got shape {tuple(x.shape)}")
        return F.pixel_shuffle(self.inner(F.pixel_unshuffle(x, s), generator), s)


class BranchingConvNN(nn.Module):
    """The paper's hybrid: a ConvNN branch and a plain conv branch on the same input, outputs
    concatenated (``round(ratio * C_out)`` channels from ConvNN), then a 1x1 fusion conv.

    x ``(B, C_in, *S)`` -> ``(B, C_out, *S)``; the ConvNN config must keep the spatial size
    (stride 1, 'same'-like padding), and the conv branch uses ``padding='same'``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        config: ConvNNConfig,
        *,
        ratio: float = 0.5,
        conv_kernel_size: int = 3,
        spatial_dims: int = 2,
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_config(config)
        in_channels = check_int(in_channels, "in_channels", minimum=1)
        out_channels = check_int(out_channels, "out_channels", minimum=1)
        ratio = check_real(ratio, "ratio", low=0.0, high=1.0)
        conv_kernel_size = check_int(conv_kernel_size, "conv_kernel_size", minimum=1)
        spatial_dims = check_int(spatial_dims, "spatial_dims", minimum=1)
        if spatial_dims > 3:
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got spatial_dims={spatial_dims}")
        check_bool(bias, "bias")
        self.in_channels = in_channels
        self.spatial_dims = spatial_dims
        self.convnn_channels = round(ratio * out_channels)
        self.conv_channels = out_channels - self.convnn_channels
        conv_cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[spatial_dims - 1]
        self.convnn = (
            convnn_layer(spatial_dims)(in_channels, self.convnn_channels, config, bias=bias) if self.convnn_channels else None
        )
        self.conv = (
            conv_cls(in_channels, self.conv_channels, conv_kernel_size, padding="same", bias=bias) if self.conv_channels else None
        )
        self.fuse = conv_cls(out_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(x, self, self.spatial_dims, self.in_channels)
        parts = []
        if self.convnn is not None:
            parts.append(self.convnn(x, generator))
        if self.conv is not None:
            parts.append(self.conv(x))
        if len(parts) == 2 and parts[0].shape[2:] != parts[1].shape[2:]:
            raise ValueError(
                f"the ConvNN branch changes the spatial size {tuple(parts[0].shape[2:])} != {tuple(parts[1].shape[2:])}: "
                "use stride 1 and padding that keeps the size"
            )
        return self.fuse(torch.cat(parts, dim=1))
