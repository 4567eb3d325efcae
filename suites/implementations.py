"""Implementations under test: the adapter contract and the registry.

An implementation is a small object that computes ConvNN from the reference's canonical
inputs (a `ConvNNConfig`, tensors in the reference's layouts) and declares what it can do.
The equivalence properties run against any of them; the reference is just the first.

Contract (subclass `Implementation`, override what you support):
- ``name``: a short identifier used in reports.
- ``capabilities``: a `Capabilities`; a case outside them is a *skip with a reason*, never a
  silent fallback.
- ``convnn(x, weight, bias, config, *, generator)``: image form, x ``(B, C, *S)``, weight in the
  ``nn.Conv1d(C_in, C_out, k, stride=k, groups)`` layout ``(C_out, C_in/groups, k)``, bias
  ``(C_out,)``; returns ``(B, C_out, *S_out)``. Translate the weights into your own layout here.
- ``attention(q, k, v, config, *, allowed, generator)``: sequence form, q ``(B, Nq, D)``, k
  ``(B, Nk, D)``, v ``(B, Nk, Dv)``, allowed bool ``(B|1, Nq, Nk)`` or None; returns
  ``(B, Nq, Dv)``.
- ``window_attention(q, k, v, config)`` (optional; form ``"window"``): neighbourhood attention,
  ``config.candidates == "window"``; q, k ``(B, *S, D)``, v ``(B, *S, Dv)`` channels-last on a
  grid of 1 to 3 axes (heads folded into B); returns ``(B, *S, Dv)``.
- ``neighbours(x, config, *, generator)`` (optional): ``(index (B|1, Nq, k), score (B|1, Nq, k))``
  so that selection can be checked apart from aggregation; return None if not offered.
- ``teardown()`` (optional): release resources after a run.

Keyword options: an implementation that accepts extra keywords in ``convnn``/``attention`` lists
them in ``capabilities.options`` (the reference: ``memory_budget``); properties pass them only
then. Randomness: draw from the ``generator`` you are given (never from torch's global RNG) so
that a replayed case draws the same; the suite reseeds the global RNG before every example, so
code that cannot avoid it still replays.

Discovery: ``--impl module:object`` on the pytest command line (repeatable), ``IMPL=`` for make,
and the entry-point group ``convnn_ref.implementations`` for installed packages. ``object`` may
be an `Implementation` instance, a subclass, or a zero-argument factory.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

import torch

import convnn_ref
from convnn_ref.config import ConvNNConfig
from convnn_ref.testing import check_k, check_mask, resolve_geometry

ENTRY_POINT_GROUP = "convnn_ref.implementations"

ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")

#: The canonical tie rule: among exactly equal scores the lower candidate index ranks first.
LOWEST_INDEX = "lowest-index"


@dataclass(frozen=True)
class Shapes:
    """The shapes of one case, for capability checks that depend on them.

    image form: ``batch``, ``channels`` (C_in), ``spatial`` (S); attention form: ``batch`` (B*H:
    the suite folds heads into the batch), ``nq``, ``nk``, ``dim`` (D), ``vdim`` (Dv) and
    ``self_attention`` (queries and keys are one tensor). Fields that do not apply are None."""

    form: str
    batch: int | None = None
    channels: int | None = None
    spatial: tuple[int, ...] | None = None
    nq: int | None = None
    nk: int | None = None
    dim: int | None = None
    vdim: int | None = None
    self_attention: bool | None = None

    @property
    def num_tokens(self) -> int | None:
        if self.spatial is not None:
            n = 1
            for s in self.spatial:
                n *= s
            return n
        return self.nk


CheckFn = Callable[..., "str | None"]


@dataclass(frozen=True)
class Capabilities:
    """What an implementation claims to support. Each field lists the accepted values of one
    `ConvNNConfig` knob (None = any value), plus forms, dtypes, devices and limits."""

    forms: tuple[str, ...] = ("image", "attention")
    bases: tuple[str, ...] | None = None
    metrics: tuple[str, ...] | None = None
    coordinates: tuple[str, ...] | None = None
    similarities: tuple[str, ...] | None = None
    candidates: tuple[str, ...] | None = None
    self_slots: tuple[str, ...] | None = None
    slot_orders: tuple[str, ...] | None = None
    rhos: tuple[str, ...] | None = None
    kernels: tuple[str, ...] | None = None
    coord_encodings: tuple[str, ...] | None = None
    spatial_dims: tuple[int, ...] = (1, 2, 3)
    dtypes: tuple[str, ...] = ALL_DTYPES
    devices: tuple[str, ...] = ("cpu", "cuda")
    padding: bool = True
    stride: bool = True
    dilation: bool = True
    masks: bool = True
    backward: bool = True
    deterministic: bool = True
    neighbours: bool = False
    max_tokens: int | None = None
    #: The implementation orders exactly equal scores by the canonical rule (`LOWEST_INDEX`):
    #: the tie properties hold it to that. None: ties may go any way; the suite then draws only
    #: inputs whose selection (and slot order, where it matters) no tie can change.
    tie_rule: str | None = None
    #: Keywords ``convnn``/``attention`` accept beyond the contract's (e.g. ``memory_budget``).
    options: tuple[str, ...] = ()
    #: Invalid input raises the contract's ``ValueError``/``TypeError`` naming the argument. With
    #: False, an implementation that refuses invalid input loudly with its own exception gets an
    #: "error convention" verdict (xfailed, listed apart) instead of a failure.
    named_errors: bool = False
    #: Extra predicate for constraints the fields cannot say: ``check(config)`` or
    #: ``check(config, shapes)`` (a `Shapes`) -> reason or None.
    check: CheckFn | None = field(default=None, compare=False)

    def reason(
        self,
        config: ConvNNConfig,
        *,
        form: str,
        dtype: torch.dtype,
        device: str,
        spatial_dims: int | None = None,
        num_tokens: int | None = None,
        masked: bool = False,
        backward: bool = False,
        shapes: Shapes | None = None,
    ) -> str | None:
        """Why this case is outside the capabilities, or None when it is inside."""
        if form not in self.forms:
            return f"form {form!r} not supported (supports {self.forms})"
        knobs = (
            ("bases", "basis"),
            ("metrics", "metric"),
            ("coordinates", "coordinates"),
            ("similarities", "similarity"),
            ("candidates", "candidates"),
            ("self_slots", "self_slot"),
            ("slot_orders", "slot_order"),
            ("rhos", "rho"),
            ("kernels", "kernel"),
            ("coord_encodings", "coord_encoding"),
        )
        for field_name, knob in knobs:
            allowed = getattr(self, field_name)
            value = getattr(config, knob)
            if allowed is not None and value not in allowed:
                return f"{knob}={value!r} not supported (supports {allowed})"
        name = str(dtype).replace("torch.", "")
        if name not in self.dtypes:
            return f"dtype {name} not supported (supports {self.dtypes})"
        if device.split(":")[0] not in self.devices:
            return f"device {device} not supported (supports {self.devices})"
        if spatial_dims is not None and form == "image" and spatial_dims not in self.spatial_dims:
            return f"{spatial_dims} spatial dims not supported (supports {self.spatial_dims})"
        if not self.padding and config.padding not in (0, (0,), ((0, 0),)) and _has_padding(config):
            return "padding not supported"
        if not self.stride and _any_above_one(config.stride):
            return "stride not supported"
        if not self.dilation and _any_above_one(config.dilation):
            return "dilation not supported"
        if masked and not self.masks:
            return "masks not supported"
        if backward and not self.backward:
            return "backward not supported"
        if num_tokens is not None and self.max_tokens is not None and num_tokens > self.max_tokens:
            return f"{num_tokens} tokens exceed max_tokens={self.max_tokens}"
        if self.check is not None:
            if _arity(self.check) >= 2:
                return self.check(config, shapes if shapes is not None else Shapes(form=form))
            return self.check(config)
        return None


def _arity(fn: Callable[..., object]) -> int:
    """Positional parameters ``fn`` takes (2 for ``check(config, shapes)``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _any_above_one(value: object) -> bool:
    return any(v > 1 for v in (value if isinstance(value, tuple) else (value,)))  # type: ignore[operator]


def _has_padding(config: ConvNNConfig) -> bool:
    p = config.padding
    flat: list[int] = []
    for item in p if isinstance(p, tuple) else (p,):
        flat.extend(item if isinstance(item, tuple) else (item,))
    return any(v for v in flat)


class Implementation:
    """Base class of an implementation under test; see the module docstring for the contract."""

    name: str = "unnamed"
    capabilities: Capabilities = Capabilities()

    def convnn(
        self,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        config: ConvNNConfig,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no image form")

    def attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        config: ConvNNConfig,
        *,
        allowed: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no attention form")

    def neighbours(
        self, x: torch.Tensor, config: ConvNNConfig, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def window_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: ConvNNConfig) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no window form")

    def teardown(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<Implementation {self.name}>"


class ReferenceImplementation(Implementation):
    """convnn_ref's own functional path."""

    name = "reference"
    capabilities = Capabilities(
        forms=("image", "attention", "window"), neighbours=True, tie_rule=LOWEST_INDEX, options=("memory_budget",), named_errors=True
    )

    def convnn(self, x, weight, bias, config, *, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        return convnn_ref.convnn(x, weight, bias, config, generator=generator, memory_budget=memory_budget)

    def attention(self, q, k, v, config, *, allowed=None, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        return convnn_ref.convnn_attention(q, k, v, config, allowed=allowed, generator=generator, memory_budget=memory_budget)

    def neighbours(self, x, config, *, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        nb = convnn_ref.neighbours(x, config, generator=generator, memory_budget=memory_budget)
        return nb.index, nb.score

    def window_attention(self, q, k, v, config, *, memory_budget=None):  # type: ignore[no-untyped-def]
        return convnn_ref.window_attention(q, k, v, config, memory_budget=memory_budget)


def _torch_ops_check(config: ConvNNConfig, shapes: Shapes) -> str | None:
    if shapes.form == "image" and config.basis != "position":
        return "PyTorch has no image-form operator outside the conv configuration"
    if config.basis == "position":
        if not (config.metric == "chebyshev" and config.kernel_scaled and config.kernel_size is not None):
            return "PyTorch conv covers only the exact conv configuration (chebyshev, kernel-scaled, kernel_size set)"
        ks = config.kernel_size if isinstance(config.kernel_size, tuple) else (config.kernel_size,)
        k_expected = 1
        for v in ks:
            k_expected *= v
        if config.k != k_expected or config.slot_order != "offset" or config.rho != "ones" or config.kernel == "sum":
            return "PyTorch conv needs k = prod(kernel_size), slot_order='offset', rho='ones', a weighted kernel"
        return None
    if config.similarity != "scaled_dot" or config.rho != "softmax" or config.kernel != "sum":
        return "SDPA covers only scaled_dot + softmax + sum"
    return None


class TorchOpsImplementation(Implementation):
    """PyTorch's own operators as trivial implementations of ConvNN's special cases:
    ``F.conv{1,2,3}d`` for the exact conv configuration, SDPA for dense attention (k = Nk)
    and the dense masked KVT formula for k < Nk."""

    name = "torch-ops"
    capabilities = Capabilities(
        candidates=("all",),
        self_slots=("candidate",),
        coord_encodings=("none",),
        bases=("position", "feature"),
        check=_torch_ops_check,
    )

    def convnn(self, x, weight, bias, config, *, generator=None):  # type: ignore[no-untyped-def]
        if config.basis != "position":
            raise NotImplementedError("torch-ops computes the image form only in the conv configuration")
        d = x.dim() - 2
        geometry = resolve_geometry(config, tuple(x.shape[2:]))
        pad: list[int] = []
        for lo, hi in reversed(geometry.padding):
            pad += [lo, hi]
        xp = torch.nn.functional.pad(x, pad) if any(pad) else x
        conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)[d - 1]
        w = weight.reshape(weight.shape[0], weight.shape[1], *geometry.kernel)
        return conv(xp, w, bias, stride=geometry.stride, dilation=geometry.dilation, groups=config.groups)

    def attention(self, q, k, v, config, *, allowed=None, generator=None):  # type: ignore[no-untyped-def]
        check_k(config.k, k.shape[1], "keys")
        allowed = check_mask(allowed, "allowed", (q.shape[0], q.shape[1], k.shape[1]), q.device)
        if config.k == k.shape[1]:
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=config.scale)
            if allowed is not None:  # SDPA leaves fully masked rows undefined; ConvNN defines them as 0
                y = y.masked_fill(~allowed.expand(q.shape[0], -1, -1).any(-1, keepdim=True), 0.0)
            return y
        if allowed is not None:
            raise NotImplementedError("torch-ops KVT takes no mask")
        return convnn_ref.kvt_attention(q, k, v, config.k, config.scale)


BUILTINS: dict[str, Callable[[], Implementation]] = {
    "reference": ReferenceImplementation,
    "torch-ops": TorchOpsImplementation,
}


def load_implementation(spec: str) -> Implementation:
    """``spec``: a built-in name, an installed entry point's name, or ``module:object``."""
    if spec in BUILTINS:
        return BUILTINS[spec]()
    if ":" not in spec:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == spec:
                return _instantiate(ep.load(), spec)
        known = sorted(BUILTINS) + [ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
        raise ValueError(f"unknown implementation {spec!r}: not a built-in or entry point ({known}) and not module:object")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--impl {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"--impl {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return _instantiate(obj, spec)


def _instantiate(obj: object, spec: str) -> Implementation:
    if isinstance(obj, type):
        obj = obj()
    elif callable(obj) and not isinstance(obj, Implementation):
        obj = obj()
    if not isinstance(obj, Implementation):
        missing = [m for m in ("name", "capabilities") if not hasattr(obj, m)]
        if missing:
            raise TypeError(f"--impl {spec!r} gave {type(obj).__name__}, not an Implementation (missing {missing})")
    return obj  # type: ignore[return-value]
