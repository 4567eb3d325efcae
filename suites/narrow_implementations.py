"""Correct implementations with the narrowest capabilities: the reference behind one metric, one
form, one kernel, one dtype, each with a shape-aware ``check(config, shapes)`` written as an
adapter's author would write it (reading ``shapes`` as given, the way the documented example
does). `suites/test_narrow_profiles.py` runs the equivalence properties against each: a correct
implementation must see every property either pass or skip with a named reason, never fail and
never be called with a case it refused (no false alarm by construction).

Name one with ``--impl suites.narrow_implementations:NarrowConv``.
"""

from __future__ import annotations

from convnn_ref.config import ConvNNConfig
from suites.implementations import Capabilities, ReferenceImplementation, Shapes


def _conv_check(config: ConvNNConfig, shapes: Shapes) -> str | None:
    """Square 2-D maps, a kernel_size, groups 1 or depthwise."""
    if shapes.form != "image":
        return "image form only"
    assert shapes.spatial is not None and shapes.channels is not None, shapes
    if len(set(shapes.spatial)) > 1:
        return "square inputs only"
    if config.kernel_size is None:
        return "needs a kernel_size"
    if config.groups not in (1, shapes.channels):
        return f"groups must be 1 or C_in={shapes.channels} (got {config.groups})"
    return None


def _attention_check(config: ConvNNConfig, shapes: Shapes) -> str | None:
    """Self-attention of at most 8 tokens with head dims up to 4."""
    if shapes.form != "attention":
        return "attention form only"
    assert shapes.nq is not None and shapes.nk is not None and shapes.dim is not None, shapes
    if not shapes.self_attention:
        return "self-attention only (queries are keys)"
    if shapes.nk > 8 or shapes.dim > 4:
        return "at most 8 tokens of dimension 4"
    return None


def _cosine_check(config: ConvNNConfig, shapes: Shapes) -> str | None:
    """One sample of at most 3 channels."""
    assert shapes.batch is not None and shapes.channels is not None, shapes
    if shapes.batch != 1:
        return "one sample a call"
    if shapes.channels > 3:
        return "at most 3 channels"
    return None


def _hybrid_check(config: ConvNNConfig, shapes: Shapes) -> str | None:
    """Even channel counts, no coordinate channels in the output."""
    assert shapes.channels is not None, shapes
    if shapes.channels % 2:
        return "an even number of channels"
    return None


def _narrow(**fields: object) -> Capabilities:
    """Capabilities that name every knob they accept; nothing beyond the contract."""
    base: dict[str, object] = {"devices": ("cpu",), "neighbours": False, "tie_rule": None, "options": ()}
    return Capabilities(**{**base, **fields})  # type: ignore[arg-type]


class NarrowConv(ReferenceImplementation):
    """The exact conv configuration only: 2-D, chebyshev, offset slots, full kernel, float32."""

    name = "narrow_conv"
    capabilities = _narrow(
        forms=("image",), bases=("position",), metrics=("chebyshev",), coordinates=("integer",),
        candidates=("all",), self_slots=("candidate",), slot_orders=("offset",), rhos=("ones",),
        kernels=("full",), coord_encodings=("none",), spatial_dims=(2,), dtypes=("float32",),
        masks=False, check=_conv_check,
    )


class NarrowAttention(ReferenceImplementation):
    """Dense-or-top-k scaled-dot softmax self-attention, float64, no masks, no backward."""

    name = "narrow_attention"
    capabilities = _narrow(
        forms=("attention",), bases=("feature",), similarities=("scaled_dot",), candidates=("all",),
        self_slots=("candidate",), rhos=("softmax",), kernels=("sum",), coord_encodings=("none",),
        dtypes=("float64",), masks=False, backward=False, check=_attention_check,
    )


class NarrowCosine(ReferenceImplementation):
    """Cosine feature basis, 1-D, sum kernel, bfloat16 only, nondeterministic, 8 tokens."""

    name = "narrow_cosine"
    capabilities = _narrow(
        forms=("image",), bases=("feature",), similarities=("cosine",), candidates=("all",),
        self_slots=("candidate",), slot_orders=("rank",), rhos=("softmax",), kernels=("sum",),
        coord_encodings=("none",), spatial_dims=(1,), dtypes=("bfloat16",), padding=False,
        stride=False, dilation=False, deterministic=False, max_tokens=8, check=_cosine_check,
    )


class NarrowHybrid(ReferenceImplementation):
    """Hybrid basis on normalized coordinates with euclidean similarity, the full kernel only,
    float64, no padding, even channel counts."""

    name = "narrow_hybrid"
    capabilities = _narrow(
        forms=("image",), bases=("hybrid",), coordinates=("normalized",), similarities=("euclidean",),
        kernels=("full",), dtypes=("float64",), padding=False, check=_hybrid_check,
    )


class NarrowFloat16Position(ReferenceImplementation):
    """Position basis, euclidean, random candidates, float16 only, 1-D and 3-D, with the
    canonical tie rule."""

    name = "narrow_float16_position"
    capabilities = _narrow(
        forms=("image",), bases=("position",), metrics=("euclidean",), candidates=("random",),
        rhos=("softmax",), kernels=("sum",), spatial_dims=(1, 3), dtypes=("float16",),
        tie_rule="lowest-index",
    )


PROFILES = (NarrowConv, NarrowAttention, NarrowCosine, NarrowHybrid, NarrowFloat16Position)
