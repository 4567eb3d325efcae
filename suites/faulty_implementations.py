"""Deliberately faulty implementations, kept to test the conformance runner
(`suites/test_conformance.py`) and to show what its reports look like.

Each is the reference with one bug a real port could have, and claims the reference's
capabilities so that every property applies to it. None is a built-in or an entry point: they run
only when named, e.g. ``--impl suites.faulty_implementations:FlippedTaps``.

Wrong values (the report must name the failing properties and their counterexamples):
- `WrongSoftmaxAxis`: attention normalises over the queries instead of one query's slots.
- `FlippedTaps`: the image form applies the kernel taps in reverse order (convolution instead of
  cross-correlation).
- `OffByOnePadding`: the image form pads one point too many on the low side of every padded axis
  and one too few on the high side (same output size, windows shifted by one).
- `WrongTieRule`: among equal scores the candidate with the *higher* index ranks first (and
  still claims the canonical tie rule).
- `EuclideanAsDot`: the euclidean similarity scored as a plain dot product (the ``-|q|^2 - |k|^2``
  terms dropped): wrong only for one value of one knob.
- `ResearchConvention`: claims the exact conv configuration but selects as the research code does
  (Euclidean distance on ``linspace(-1, 1)`` coordinates): right for 3x3 windows on square
  inputs, wrong past 5x5 and on inputs much wider than tall.

Broken in other ways (the run must go on and say what happened):
- `Raises`: every call raises, as a kernel built for another device would.
- `WrongShape`: outputs one extra trailing element. `NaNOutput`: one NaN in every output.
- `WrongDtype`: the image form answers in the other precision (float64 for float32 inputs,
  float32 for float64 ones): right values, wrong dtype.
- `OutOfMemory`: attention raises ``torch.OutOfMemoryError``.
- `Hangs`: dense attention (k = Nk) never returns.
- `Segfaults`: the 2-D image form kills its process with SIGSEGV.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import torch

import convnn_ref
from convnn_ref.testing import resolve_geometry
from suites.correct_variants import OtherTieOrder, reordering_applies
from suites.implementations import ReferenceImplementation


class _Delegating(ReferenceImplementation):
    """The reference, claiming everything it can do (the canonical tie rule, named errors) but
    taking no keyword options; subclasses break one thing."""

    capabilities = dataclasses.replace(ReferenceImplementation.capabilities, options=())


# ------------------------------------------------------------------------------ wrong values


class WrongSoftmaxAxis(_Delegating):
    """Softmax attention (scaled dot, every candidate) normalised over dim 1, the queries."""

    name = "wrong-softmax-axis"

    def attention(self, q, k, v, config, *, allowed=None, generator=None):  # type: ignore[no-untyped-def]
        dense = config.similarity == "scaled_dot" and config.rho == "softmax" and config.kernel == "sum"
        if not dense or config.candidates != "all" or config.self_slot != "candidate":
            return super().attention(q, k, v, config, allowed=allowed, generator=generator)
        super().attention(q, k, v, config, allowed=allowed, generator=generator)  # the same input checks
        scale = config.scale if config.scale is not None else q.shape[-1] ** -0.5
        s = torch.einsum("bqd,bkd->bqk", q, k) * scale * config.rho_scale
        keep = torch.ones_like(s, dtype=torch.bool) if allowed is None else allowed.expand_as(s)
        s = s.masked_fill(~keep, float("-inf"))
        if config.k < k.shape[1]:
            kth = s.topk(config.k, dim=-1).values[..., -1:]
            s = s.masked_fill(s < kth, float("-inf"))
        p = torch.softmax(s, dim=1).nan_to_num(0.0)  # the bug: dim=1 (queries), not dim=-1 (keys)
        return torch.einsum("bqk,bkd->bqd", p, v)


class FlippedTaps(_Delegating):
    """Weight taps applied in reverse order: tap t gets ``weight[..., k-1-t]``."""

    name = "flipped-taps"

    def convnn(self, x, weight, bias, config, *, generator=None):  # type: ignore[no-untyped-def]
        flipped = None if weight is None else weight.flip(-1)
        return convnn_ref.convnn(x, flipped, bias, config, generator=generator)


class OffByOnePadding(_Delegating):
    """Padding ``(lo, hi)`` taken as ``(lo + 1, hi - 1)`` on every axis with ``hi > 0``."""

    name = "off-by-one-padding"

    def convnn(self, x, weight, bias, config, *, generator=None):  # type: ignore[no-untyped-def]
        if config.basis == "position":
            pairs = resolve_geometry(config, tuple(x.shape[2:])).padding
            shifted = tuple((lo + 1, hi - 1) if hi > 0 else (lo, hi) for lo, hi in pairs)
            config = config.replace(padding=shifted)
        return convnn_ref.convnn(x, weight, bias, config, generator=generator)


class WrongTieRule(OtherTieOrder):
    """Equal scores rank the higher index first (the reference: the lower), exactly as the correct
    variant `OtherTieOrder` does, but *declaring* the canonical tie rule: the tie properties must
    catch the claim."""

    name = "wrong-tie-rule"
    capabilities = _Delegating.capabilities

    def neighbours(self, x, config, *, generator=None):  # type: ignore[no-untyped-def]
        if not reordering_applies(config):
            return super().neighbours(x, config, generator=generator)
        axes = tuple(range(2, x.dim()))
        nb = convnn_ref.neighbours(x.flip(axes), config, generator=generator)
        n = x.shape[2:].numel()
        return (n - 1 - nb.index).flip(-2), nb.score.flip(-2)


class EuclideanAsDot(_Delegating):
    """The euclidean similarity computed as the dot product."""

    name = "euclidean-as-dot"

    def convnn(self, x, weight, bias, config, *, generator=None):  # type: ignore[no-untyped-def]
        if config.similarity == "euclidean":
            config = config.replace(similarity="dot")
        return super().convnn(x, weight, bias, config, generator=generator)

    def attention(self, q, k, v, config, *, allowed=None, generator=None):  # type: ignore[no-untyped-def]
        if config.similarity == "euclidean":
            config = config.replace(similarity="dot")
        return super().attention(q, k, v, config, allowed=allowed, generator=generator)


class ResearchConvention(_Delegating):
    """The research code's selection (Euclidean, normalized coordinates, no kernel scaling) where
    the exact conv configuration is asked for."""

    name = "research-convention"

    def convnn(self, x, weight, bias, config, *, generator=None):  # type: ignore[no-untyped-def]
        if config.basis == "position" and config.kernel_size is not None and config.slot_order == "offset":
            config = config.replace(metric="euclidean", coordinates="normalized", kernel_scaled=False)
        return super().convnn(x, weight, bias, config, generator=generator)


# ------------------------------------------------------------------------- broken otherwise


class Raises(_Delegating):
    """Every call raises."""

    name = "raises"

    def convnn(self, x, weight, bias, config, *, generator=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    def attention(self, q, k, v, config, *, allowed=None, generator=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    def neighbours(self, x, config, *, generator=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")


class WrongShape(_Delegating):
    """Outputs one element too many on the last axis."""

    name = "wrong-shape"

    def convnn(self, x, weight, bias, config, *, generator=None):  # type: ignore[no-untyped-def]
        y = super().convnn(x, weight, bias, config, generator=generator)
        return torch.cat([y, y[..., :1]], dim=-1)

    def attention(self, q, k, v, config, *, allowed=None, generator=None):  # type: ignore[no-untyped-def]
        y = super().attention(q, k, v, config, allowed=allowed, generator=generator)
        return torch.cat([y, y[..., :1]], dim=-1)


class WrongDtype(_Delegating):
    """The image form's output in the other precision: float64 <-> float32 (others unchanged)."""

    name = "wrong-dtype"

    def convnn(self, x, weight, bias, config, *, generator=None):  # type: ignore[no-untyped-def]
        y = super().convnn(x, weight, bias, config, generator=generator)
        other = {torch.float32: torch.float64, torch.float64: torch.float32}
        return y.to(other.get(y.dtype, y.dtype))


class NaNOutput(_Delegating):
    """The first element of every output is NaN."""

    name = "nan-output"

    def convnn(self, x, weight, bias, config, *, generator=None):  # type: ignore[no-untyped-def]
        return _poison(super().convnn(x, weight, bias, config, generator=generator))

    def attention(self, q, k, v, config, *, allowed=None, generator=None):  # type: ignore[no-untyped-def]
        return _poison(super().attention(q, k, v, config, allowed=allowed, generator=generator))


def _poison(y: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros_like(y, dtype=torch.bool)
    mask.view(-1)[:1] = True
    return y.masked_fill(mask, float("nan"))


class OutOfMemory(_Delegating):
    """Attention runs out of (pretend) device memory."""

    name = "out-of-memory"

    def attention(self, q, k, v, config, *, allowed=None, generator=None):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


class Hangs(_Delegating):
    """Dense attention (k = Nk) never returns: a deadlock in Python code, which a signal can
    interrupt. Sparse attention and the image form are the reference's."""

    name = "hangs"

    def attention(self, q, k, v, config, *, allowed=None, generator=None):  # type: ignore[no-untyped-def]
        while config.k >= k.shape[1]:
            time.sleep(0.05)
        return super().attention(q, k, v, config, allowed=allowed, generator=generator)


class Segfaults(_Delegating):
    """The 2-D image form kills its own process with SIGSEGV, as a native kernel's bad read
    would; 1-D and 3-D inputs and attention are the reference's."""

    name = "segfaults"

    def convnn(self, x, weight, bias, config, *, generator=None):  # type: ignore[no-untyped-def]
        if x.dim() != 4:
            return super().convnn(x, weight, bias, config, generator=generator)
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(5)  # the signal is delivered asynchronously; never return a result
        raise RuntimeError("SIGSEGV was not delivered")
