"""Correct implementations that differ from the reference where a correct one may: the suite must
pass every property they declare (`suites/test_variants.py` runs them in ``make verify``). They
are the proof that a verdict is not a false alarm: each differs from the reference in one legal
way and claims exactly what it keeps.

- `OtherTieOrder`: breaks exact ties towards the *higher* index wherever that is a plain
  reordering of the tokens (feature basis, every token a candidate), so it declares no tie rule.
- `FoldedScale`: scaled dot products as ``(q * scale) . k`` (the scale folded into the queries),
  one rounding different from the reference's ``(q . k) * scale``.
- `ReversedSums`: every channel sum in the opposite order (channels reversed within each group,
  the weight's input channels with them).
- `Float64Inside`: computes in float64 and rounds the output to the input dtype: more accurate
  than the reference, so it differs by the reference's own rounding error.
- `OwnErrors`: the reference's values, but invalid input refused with its own ``RuntimeError``:
  error-convention findings, never failures.

None is a built-in; name one with ``--impl suites.correct_variants:OtherTieOrder``.
"""

from __future__ import annotations

import dataclasses

import torch

import convnn_ref
from convnn_ref.config import ConvNNConfig
from suites.implementations import ReferenceImplementation

_BASE = ReferenceImplementation.capabilities


def reordering_applies(config: ConvNNConfig) -> bool:
    """Reversing the token order breaks ties the other way and changes nothing else exactly when
    scores ignore positions and every token is a candidate."""
    strides = config.stride if isinstance(config.stride, tuple) else (config.stride,)
    return (
        config.basis == "feature"
        and config.coord_encoding == "none"
        and config.candidates == "all"
        and config.self_slot == "candidate"
        and all(s == 1 for s in strides)
    )


class OtherTieOrder(ReferenceImplementation):
    """Exact ties to the higher index (tokens reversed, output put back) where that is legal."""

    name = "other-tie-order"
    capabilities = dataclasses.replace(_BASE, tie_rule=None, neighbours=False)

    def convnn(self, x, weight, bias, config, *, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        if not reordering_applies(config):
            return super().convnn(x, weight, bias, config, generator=generator, memory_budget=memory_budget)
        axes = tuple(range(2, x.dim()))
        y = convnn_ref.convnn(x.flip(axes), weight, bias, config, generator=generator, memory_budget=memory_budget)
        return y.flip(axes)

    def attention(self, q, k, v, config, *, allowed=None, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        if not reordering_applies(config):
            return super().attention(q, k, v, config, allowed=allowed, generator=generator, memory_budget=memory_budget)
        flipped = None if allowed is None else allowed.flip(-1)
        return convnn_ref.convnn_attention(
            q, k.flip(1), v.flip(1), config, allowed=flipped, generator=generator, memory_budget=memory_budget
        )


class FoldedScale(ReferenceImplementation):
    """Scaled dot products with the scale folded into the queries (attention form)."""

    name = "folded-scale"
    capabilities = dataclasses.replace(_BASE, tie_rule=None, neighbours=False)

    def attention(self, q, k, v, config, *, allowed=None, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        if config.similarity != "scaled_dot":
            return super().attention(q, k, v, config, allowed=allowed, generator=generator, memory_budget=memory_budget)
        scale = config.scale if config.scale is not None else q.shape[-1] ** -0.5
        folded = config.replace(similarity="dot", scale=None)
        return convnn_ref.convnn_attention(
            q * scale, k, v, folded, allowed=allowed, generator=generator, memory_budget=memory_budget
        )


def _reversed_channels(c: int, groups: int) -> torch.Tensor:
    """The permutation reversing the channel order inside each of ``groups`` groups."""
    per = c // groups
    return torch.cat([torch.arange(g * per + per - 1, g * per - 1, -1) for g in range(groups)])


class ReversedSums(ReferenceImplementation):
    """Channels reversed within each group (input, weight's input axis; the sum kernel's output
    put back): every channel sum runs in the opposite order."""

    name = "reversed-sums"
    capabilities = dataclasses.replace(_BASE, tie_rule=None, neighbours=False, coord_encodings=("none",))

    def convnn(self, x, weight, bias, config, *, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        groups = config.groups if config.kernel == "grouped" else 1
        if x.dim() < 3 or x.shape[1] % groups:
            return super().convnn(x, weight, bias, config, generator=generator, memory_budget=memory_budget)
        perm = _reversed_channels(x.shape[1], groups).to(x.device)
        w = None if weight is None else weight.flip(1)
        if config.kernel != "sum":
            return convnn_ref.convnn(x[:, perm], w, bias, config, generator=generator, memory_budget=memory_budget)
        b = None if bias is None else bias[perm]  # the sum kernel's output channels are the input's
        y = convnn_ref.convnn(x[:, perm], w, b, config, generator=generator, memory_budget=memory_budget)
        return y[:, perm]

    def attention(self, q, k, v, config, *, allowed=None, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        if q.dim() != 3:
            return super().attention(q, k, v, config, allowed=allowed, generator=generator, memory_budget=memory_budget)
        y = convnn_ref.convnn_attention(
            q.flip(-1), k.flip(-1), v.flip(-1), config, allowed=allowed, generator=generator, memory_budget=memory_budget
        )
        return y.flip(-1)


class Float64Inside(ReferenceImplementation):
    """Everything in float64, the output rounded to the input's dtype."""

    name = "float64-inside"
    capabilities = dataclasses.replace(_BASE, tie_rule=None, neighbours=False)

    def convnn(self, x, weight, bias, config, *, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        if not _same_float(x, weight, bias):  # let the reference name what is wrong
            return super().convnn(x, weight, bias, config, generator=generator, memory_budget=memory_budget)
        wide = [None if t is None else t.double() for t in (x, weight, bias)]
        y = convnn_ref.convnn(*wide, config, generator=generator, memory_budget=memory_budget)  # type: ignore[arg-type]
        return y.to(x.dtype)

    def attention(self, q, k, v, config, *, allowed=None, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        if not _same_float(q, k, v):
            return super().attention(q, k, v, config, allowed=allowed, generator=generator, memory_budget=memory_budget)
        y = convnn_ref.convnn_attention(
            q.double(), k.double(), v.double(), config, allowed=allowed, generator=generator, memory_budget=memory_budget
        )
        return y.to(q.dtype)


def _same_float(first: object, *others: object) -> bool:
    """``first`` is a floating tensor and every other tensor among ``others`` shares its dtype and device."""
    if not isinstance(first, torch.Tensor) or not first.is_floating_point():
        return False
    return all(
        t is None or (isinstance(t, torch.Tensor) and t.dtype == first.dtype and t.device == first.device) for t in others
    )


class OwnErrors(ReferenceImplementation):
    """The reference's values; invalid input refused with a ``RuntimeError`` of its own."""

    name = "own-errors"
    capabilities = dataclasses.replace(_BASE, named_errors=False)

    def convnn(self, x, weight, bias, config, *, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        try:
            return super().convnn(x, weight, bias, config, generator=generator, memory_budget=memory_budget)
        except (ValueError, TypeError) as exc:
            raise RuntimeError("kernel launch failed: bad arguments") from exc

    def attention(self, q, k, v, config, *, allowed=None, generator=None, memory_budget=None):  # type: ignore[no-untyped-def]
        try:
            return super().attention(q, k, v, config, allowed=allowed, generator=generator, memory_budget=memory_budget)
        except (ValueError, TypeError) as exc:
            raise RuntimeError("kernel launch failed: bad arguments") from exc


VARIANTS: tuple[type[ReferenceImplementation], ...] = (OtherTieOrder, FoldedScale, ReversedSums, Float64Inside, OwnErrors)
__all__ = ["VARIANTS", "Float64Inside", "FoldedScale", "OtherTieOrder", "OwnErrors", "ReversedSums"]
