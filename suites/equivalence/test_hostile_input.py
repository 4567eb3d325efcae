"""Hostile input through the public API: every entry point validates its arguments before it
computes, and refuses a bad one with a TypeError / ValueError (NotImplementedError for a
documented unsupported feature) whose message names the argument and the constraint
(docs/semantics.md, "Errors"). One case per class of bad call; each asserts the type, the
argument's name and the constraint's wording."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import convnn_ref as cr
from convnn_ref.config import ConvNNConfig
from convnn_ref.testing import resolve_geometry

NAN, INF = float("nan"), float("inf")
F64 = torch.float64


def _x(*shape: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _sum(**kw: object) -> ConvNNConfig:
    return ConvNNConfig(k=2, kernel="sum", **kw)  # type: ignore[arg-type]


X = _x(1, 2, 5)
Q = _x(2, 10, 16)


@dataclass(frozen=True)
class Bad:
    """A bad call, the exception it must raise, and what its message must name."""

    id: str
    call: Callable[[], object]
    error: type[Exception]
    argument: str  # regex: the argument's name
    constraint: str  # regex: the constraint's wording


CASES = [
    # --- ConvNNConfig: integers
    Bad("k-float", lambda: ConvNNConfig(k=2.0), TypeError, r"\bk\b", r"must be an int"),  # type: ignore[arg-type]
    Bad("k-bool", lambda: ConvNNConfig(k=True), TypeError, r"\bk\b", r"must be an int"),
    Bad("k-zero", lambda: ConvNNConfig(k=0), ValueError, r"\bk\b", r">= 1"),
    Bad("k-none-weighted", lambda: ConvNNConfig(k=None), ValueError, r"k=None", r"kernel='sum'"),
    Bad("groups-zero", lambda: ConvNNConfig(k=1, kernel="grouped", groups=0), ValueError, r"groups", r">= 1"),
    Bad("groups-full", lambda: ConvNNConfig(k=1, groups=2), ValueError, r"groups", r"kernel='full' needs groups=1"),
    Bad("grid-margin-float", lambda: ConvNNConfig(k=1, grid_margin=2.5), TypeError, r"grid_margin", r"must be an int"),  # type: ignore[arg-type]
    Bad("grid-margin-negative", lambda: ConvNNConfig(k=1, grid_margin=-1), ValueError, r"grid_margin", r">= 0"),
    Bad("num-candidates-missing", lambda: ConvNNConfig(k=1, candidates="grid"), ValueError, r"num_candidates", r">= 1"),
    Bad("num-candidates-unused", lambda: ConvNNConfig(k=1, num_candidates=3), ValueError, r"num_candidates", r"only used with"),
    Bad("stride-zero", lambda: ConvNNConfig(k=1, stride=(1, 0)), ValueError, r"stride", r">= 1"),
    Bad("stride-list", lambda: ConvNNConfig(k=1, stride=[1, 1]), TypeError, r"stride", r"int or a tuple of ints"),  # type: ignore[arg-type]
    Bad("kernel-size-zero", lambda: ConvNNConfig(k=1, basis="position", kernel_size=0), ValueError, r"kernel_size", r">= 1"),
    Bad("padding-negative", lambda: ConvNNConfig(k=1, basis="position", padding=-1), ValueError, r"padding", r">= 0"),
    Bad("padding-string", lambda: ConvNNConfig(k=1, basis="position", padding="same"), ValueError, r"padding", r"string paddings"),  # type: ignore[arg-type]
    Bad("padding-bad-pair", lambda: ConvNNConfig(k=1, basis="position", padding=((1, 2, 3),)), ValueError, r"padding", r"\(lo, hi\) pairs"),  # type: ignore[arg-type]
    # --- ConvNNConfig: real numbers and flags
    Bad("rho-scale-nan", lambda: ConvNNConfig(k=1, rho_scale=NAN), ValueError, r"rho_scale", r"finite"),
    Bad("rho-scale-inf", lambda: ConvNNConfig(k=1, rho_scale=INF), ValueError, r"rho_scale", r"finite"),
    Bad("rho-scale-string", lambda: ConvNNConfig(k=1, rho_scale="1"), TypeError, r"rho_scale", r"real number"),  # type: ignore[arg-type]
    Bad("scale-zero", lambda: ConvNNConfig(k=1, scale=0.0), ValueError, r"scale", r"> 0"),
    Bad("scale-inf", lambda: ConvNNConfig(k=1, scale=INF), ValueError, r"scale", r"finite"),
    Bad("hybrid-lambda-nan", lambda: ConvNNConfig(k=1, basis="hybrid", hybrid_lambda=NAN), ValueError, r"hybrid_lambda", r"finite"),
    Bad("hybrid-lambda-above", lambda: ConvNNConfig(k=1, basis="hybrid", hybrid_lambda=1.5), ValueError, r"hybrid_lambda", r"<= 1"),
    Bad("kernel-scaled-int", lambda: ConvNNConfig(k=1, kernel_scaled=1), TypeError, r"kernel_scaled", r"bool"),  # type: ignore[arg-type]
    Bad("choice-unknown", lambda: ConvNNConfig(k=1, similarity="cos"), ValueError, r"similarity", r"not one of"),  # type: ignore[arg-type]
    Bad("choice-list", lambda: ConvNNConfig(k=1, basis=["feature"]), ValueError, r"basis", r"not one of"),  # type: ignore[arg-type]
    Bad("grid-rounding-unknown", lambda: ConvNNConfig(k=1, grid_rounding="floor"), ValueError, r"grid_rounding", r"not one of"),  # type: ignore[arg-type]
    # --- ConvNNConfig: combinations
    Bad("dilation-feature", lambda: ConvNNConfig(k=1, dilation=2), ValueError, r"dilation", r"basis='position'"),
    Bad("offset-feature", lambda: ConvNNConfig(k=1, slot_order="offset"), ValueError, r"slot_order", r"basis='position'"),
    Bad("forced-stride", lambda: ConvNNConfig(k=1, self_slot="forced", stride=2), ValueError, r"self_slot", r"stride 1"),
    Bad("padding-random", lambda: ConvNNConfig(k=1, basis="position", candidates="random", num_candidates=2, padding=1), ValueError, r"padding", r"no padding"),
    # --- functional: tensors and arguments
    Bad("x-not-tensor", lambda: cr.convnn([1.0], None, None, _sum()), TypeError, r"\bx\b", r"torch\.Tensor"),  # type: ignore[arg-type]
    Bad("x-rank", lambda: cr.convnn(_x(2, 5), None, None, _sum()), ValueError, r"\bx\b", r"rank"),
    Bad("x-integer", lambda: cr.convnn(torch.ones(1, 2, 5, dtype=torch.int64), None, None, _sum()), TypeError, r"\bx\b", r"floating"),
    Bad("x-empty", lambda: cr.convnn(_x(0, 2, 5), None, None, _sum()), ValueError, r"\bx\b", r"not be empty"),
    Bad("config-type", lambda: cr.convnn(X, None, None, {"k": 2}), TypeError, r"config", r"ConvNNConfig"),  # type: ignore[arg-type]
    Bad("weight-missing", lambda: cr.convnn(X, None, None, ConvNNConfig(k=2)), ValueError, r"weight", r"needs a weight"),
    Bad("weight-shape", lambda: cr.convnn(X, _x(3, 2, 4), None, ConvNNConfig(k=2)), ValueError, r"weight", r"shape"),
    Bad("weight-dtype", lambda: cr.convnn(X, _x(3, 2, 2, dtype=torch.float32), None, ConvNNConfig(k=2)), TypeError, r"weight", r"dtype"),
    Bad("weight-for-sum", lambda: cr.convnn(X, _x(3, 2, 2), None, _sum()), ValueError, r"weight", r"takes no weight"),
    Bad("bias-shape", lambda: cr.convnn(X, _x(3, 2, 2), _x(4), ConvNNConfig(k=2)), ValueError, r"bias", r"shape"),
    Bad("groups-divide", lambda: cr.convnn(_x(1, 3, 5), _x(2, 1, 2), None, ConvNNConfig(k=2, kernel="grouped", groups=2)), ValueError, r"groups", r"divide"),
    Bad("k-above-candidates", lambda: cr.convnn(X, None, None, ConvNNConfig(k=9, kernel="sum")), ValueError, r"\bk=9\b", r"larger than the candidate set"),
    Bad("memory-budget-negative", lambda: cr.convnn(X, None, None, _sum(), memory_budget=-1), ValueError, r"memory_budget", r">= 1"),
    Bad("memory-budget-float", lambda: cr.convnn(X, None, None, _sum(), memory_budget=1.5), TypeError, r"memory_budget", r"int"),  # type: ignore[arg-type]
    Bad("generator-type", lambda: cr.convnn(X, None, None, _sum(), generator=3), TypeError, r"generator", r"torch\.Generator"),  # type: ignore[arg-type]
    Bad("generator-missing", lambda: cr.convnn(X, None, None, _sum(candidates="random", num_candidates=3)), ValueError, r"generator", r"needs"),
    Bad("kernel-size-axes", lambda: cr.convnn(X, None, None, ConvNNConfig(k=1, basis="position", kernel_size=(1, 1), kernel="sum")), ValueError, r"kernel_size", r"spatial axes"),
    Bad("kernel-too-large", lambda: cr.convnn(X, None, None, ConvNNConfig(k=1, basis="position", kernel_size=7, kernel="sum")), ValueError, r"kernel_size", r"more than the padded input"),
    Bad("position-table-geometry", lambda: cr.position_table((5,), ConvNNConfig(k=1, basis="position"), torch.device("cpu")), TypeError, r"geometry", r"Geometry"),  # type: ignore[arg-type]
    # --- functional: sequences and masks
    Bad("attention-feature-size", lambda: cr.convnn_attention(Q, _x(2, 10, 8), Q, _sum()), ValueError, r"\bq and k\b", r"feature size"),
    Bad("attention-keys-values", lambda: cr.convnn_attention(Q, Q, _x(2, 9, 16), _sum()), ValueError, r"\bk and v\b", r"number of keys"),
    Bad("attention-no-keys", lambda: cr.convnn_attention(Q, _x(2, 0, 16), _x(2, 0, 16), _sum()), ValueError, r"\bk\b", r"at least one key"),
    Bad("allowed-dtype", lambda: cr.convnn_attention(Q, Q, Q, _sum(), allowed=torch.ones(10, 10)), TypeError, r"allowed", r"torch\.bool"),
    Bad("allowed-shape", lambda: cr.convnn_attention(Q, Q, Q, _sum(), allowed=torch.ones(3, 3, dtype=torch.bool)), ValueError, r"allowed", r"broadcast"),
    Bad("dropout-range", lambda: cr.convnn_attention(Q, Q, Q, _sum(), dropout_p=1.0), ValueError, r"dropout_p", r"\[0, 1\)"),
    Bad("attention-position-basis", lambda: cr.convnn_attention(Q, Q, Q, ConvNNConfig(k=2, basis="position", kernel="sum")), NotImplementedError, r"basis", r"features only"),
    # --- scaled_dot_product_attention
    Bad("sdpa-length-mismatch", lambda: cr.scaled_dot_product_attention(Q, Q, _x(2, 9, 16)), ValueError, r"\bvalue\b", r"as many rows as key"),
    Bad("sdpa-feature-mismatch", lambda: cr.scaled_dot_product_attention(Q, _x(2, 10, 8), Q), ValueError, r"\bkey\b", r"feature size"),
    Bad("sdpa-rank", lambda: cr.scaled_dot_product_attention(_x(16), Q, Q), ValueError, r"\bquery\b", r"rank >= 2"),
    Bad("sdpa-batch", lambda: cr.scaled_dot_product_attention(Q, _x(3, 10, 16), _x(3, 10, 16)), ValueError, r"batch dimensions", r"broadcast"),
    Bad("sdpa-no-keys", lambda: cr.scaled_dot_product_attention(Q, _x(2, 0, 16), _x(2, 0, 16)), ValueError, r"\bkey\b", r"at least one key"),
    Bad("sdpa-mask-shape", lambda: cr.scaled_dot_product_attention(Q, Q, Q, attn_mask=torch.ones(3, 3, dtype=torch.bool)), ValueError, r"attn_mask", r"broadcast"),
    Bad("sdpa-mask-nan", lambda: cr.scaled_dot_product_attention(Q, Q, Q, attn_mask=torch.full((10, 10), NAN)), ValueError, r"attn_mask", r"only 0 .* and -inf"),
    Bad("sdpa-mask-posinf", lambda: cr.scaled_dot_product_attention(Q, Q, Q, attn_mask=torch.full((10, 10), INF)), ValueError, r"attn_mask", r"only 0 .* and -inf"),
    Bad("sdpa-mask-bias", lambda: cr.scaled_dot_product_attention(Q, Q, Q, attn_mask=torch.full((10, 10), 0.5)), NotImplementedError, r"attn_mask", r"additive score biases"),
    Bad("sdpa-mask-int", lambda: cr.scaled_dot_product_attention(Q, Q, Q, attn_mask=torch.ones(10, 10, dtype=torch.int64)), TypeError, r"attn_mask", r"bool or floating"),
    Bad("sdpa-mask-and-causal", lambda: cr.scaled_dot_product_attention(Q, Q, Q, attn_mask=torch.ones(10, 10, dtype=torch.bool), is_causal=True), ValueError, r"is_causal", r"not both"),
    Bad("sdpa-dtype", lambda: cr.scaled_dot_product_attention(Q, Q.float(), Q), TypeError, r"\bkey\b", r"dtype"),
    Bad("sdpa-k-above", lambda: cr.scaled_dot_product_attention(Q, Q, Q, k=11), ValueError, r"\bk=11\b", r"larger than the candidate set"),
    Bad("sdpa-scale", lambda: cr.scaled_dot_product_attention(Q, Q, Q, scale=-1.0), ValueError, r"scale", r"> 0"),
    Bad("sdpa-causal-type", lambda: cr.scaled_dot_product_attention(Q, Q, Q, is_causal="yes"), TypeError, r"is_causal", r"bool"),  # type: ignore[arg-type]
    # --- kvt
    Bad("kvt-topk-zero", lambda: cr.kvt_attention(Q, Q, Q, 0), ValueError, r"topk", r">= 1"),
    Bad("kvt-topk-above", lambda: cr.kvt_attention(Q, Q, Q, 11), ValueError, r"topk", r"\[1, Nk=10\]"),
    Bad("kvt-shapes", lambda: cr.kvt_attention(Q, _x(2, 10, 8), Q, 2), ValueError, r"\bk\b", r"\(\.\.\., Nk, D\)"),
    Bad("kvt-config-k", lambda: cr.kvt_config(0), ValueError, r"\bk\b", r">= 1"),
    Bad("kvt-module-heads", lambda: cr.KVTAttention(10, num_heads=3), ValueError, r"num_heads", r"divide"),
    Bad("kvt-module-dim", lambda: cr.KVTAttention(16, num_heads=2, topk=2)(_x(1, 4, 8).float()), ValueError, r"\bx\b", r"dim=16"),
    Bad("kvt-module-topk", lambda: cr.KVTAttention(16, num_heads=2, topk=5)(_x(1, 4, 16).float()), ValueError, r"topk", r"larger than the number of tokens"),
    Bad("kvt-module-drop", lambda: cr.KVTAttention(16, num_heads=2, attn_drop=1.5), ValueError, r"attn_drop", r"\[0, 1\)"),
    # --- layers
    Bad("layer-channels", lambda: cr.ConvNN2d(0, 2, ConvNNConfig(k=2)), ValueError, r"in_channels", r">= 1"),
    Bad("layer-config", lambda: cr.ConvNN2d(2, 2, "k=2"), TypeError, r"config", r"ConvNNConfig"),  # type: ignore[arg-type]
    Bad("layer-padding-mode", lambda: cr.ConvNN2d(2, 2, ConvNNConfig(k=2), padding_mode="mirror"), ValueError, r"padding_mode", r"not one of"),
    Bad("layer-padding-mode-feature", lambda: cr.ConvNN1d(2, 2, ConvNNConfig(k=2, padding=1), padding_mode="reflect"), NotImplementedError, r"padding_mode='reflect'", r"not supported"),
    Bad("layer-huge-k", lambda: cr.ConvNN2d(4, 4, ConvNNConfig(k=10**9)), ValueError, r"\bk=1000000000\b", r"more than the \d+ a layer allocates"),
    Bad("layer-x-channels", lambda: cr.ConvNN1d(3, 3, ConvNNConfig(k=2)).double()(X), ValueError, r"\bx\b", r"in_channels=3"),
    Bad("layer-x-rank", lambda: cr.ConvNN2d(2, 2, ConvNNConfig(k=2)).double()(X), ValueError, r"\bx\b", r"rank 4"),
    Bad("layer-sum-channels", lambda: cr.ConvNN1d(2, 3, _sum()), ValueError, r"out_channels", r"keeps the channels"),
    Bad("convnn-layer-dims", lambda: cr.convnn_layer(4), ValueError, r"spatial_dims", r"1, 2 or 3"),
    Bad("attention-embed-dim", lambda: cr.ConvNNAttention(16, 2, batch_first=True)(_x(2, 5, 8).float()), ValueError, r"\bquery\b", r"embed_dim=16"),
    Bad("attention-kdim", lambda: cr.ConvNNAttention(16, 2, kdim=4, batch_first=True)(_x(2, 5, 16).float(), _x(2, 5, 8).float(), _x(2, 5, 16).float()), ValueError, r"\bkey\b", r"kdim=4"),
    Bad("attention-dtype", lambda: cr.ConvNNAttention(16, 2, batch_first=True)(_x(2, 5, 16)), TypeError, r"\bquery\b", r"dtype"),
    Bad("attention-heads", lambda: cr.ConvNNAttention(10, 3), ValueError, r"num_heads", r"divide"),
    Bad("attention-dropout", lambda: cr.ConvNNAttention(16, 2, dropout=-0.1), ValueError, r"dropout", r">= 0"),
    Bad("attention-k", lambda: cr.ConvNNAttention(16, 2, k=0), ValueError, r"\bk\b", r">= 1"),
    Bad("attention-mask-shape", lambda: cr.ConvNNAttention(16, 2, batch_first=True)(_x(2, 5, 16).float(), attn_mask=torch.ones(4, 4, dtype=torch.bool)), ValueError, r"attn_mask", r"shape"),
    Bad("attention-padding-mask", lambda: cr.ConvNNAttention(16, 2, batch_first=True)(_x(2, 5, 16).float(), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)), ValueError, r"key_padding_mask", r"shape"),
    Bad("coordinate-encoding-rank", lambda: cr.CoordinateEncoding()(torch.ones(2, 3)), ValueError, r"\bx\b", r"rank"),
    Bad("coordinate-encoding-type", lambda: cr.CoordinateEncoding()([1.0]), TypeError, r"\bx\b", r"torch\.Tensor"),  # type: ignore[arg-type]
    Bad("pixel-shuffle-factor", lambda: cr.PixelShuffleConvNN2d(2, 2, ConvNNConfig(k=2), factor=0), ValueError, r"factor", r">= 1"),
    Bad("pixel-shuffle-divisible", lambda: cr.PixelShuffleConvNN2d(2, 2, ConvNNConfig(k=2), factor=2).double()(_x(1, 2, 5, 4)), ValueError, r"\bx\b", r"divisible by factor=2"),
    Bad("branching-ratio", lambda: cr.BranchingConvNN(2, 2, ConvNNConfig(k=2), ratio=NAN), ValueError, r"ratio", r"finite"),
    Bad("branching-dims", lambda: cr.BranchingConvNN(2, 2, ConvNNConfig(k=2), spatial_dims=4), ValueError, r"spatial_dims", r"1, 2 or 3"),
    Bad("branching-kernel", lambda: cr.BranchingConvNN(2, 2, ConvNNConfig(k=2), conv_kernel_size=0), ValueError, r"conv_kernel_size", r">= 1"),
    # --- constructors
    Bad("conv-config-dims", lambda: cr.conv_config(3, spatial_dims=4), ValueError, r"spatial_dims", r"1, 2 or 3"),
    Bad("conv-config-kernel", lambda: cr.conv_config(0, spatial_dims=2), ValueError, r"kernel_size", r">= 1"),
    Bad("conv-config-padding", lambda: cr.conv_config(3, spatial_dims=1, padding="full"), ValueError, r"padding", r"'valid', 'same'"),  # type: ignore[arg-type]
    Bad("conv-config-same-stride", lambda: cr.conv_config(3, spatial_dims=1, padding="same", stride=2), ValueError, r"padding='same'", r"stride 1"),
    Bad("conv-config-convention", lambda: cr.conv_config(3, spatial_dims=1, convention="paper"), ValueError, r"convention", r"not one of"),  # type: ignore[arg-type]
    Bad("conv-config-axes", lambda: cr.conv_config((3, 3, 3), spatial_dims=2), ValueError, r"kernel_size", r"spatial axes"),
    Bad("from-conv-type", lambda: cr.from_conv(nn.ConvTranspose2d(1, 1, 3)), TypeError, r"\bconv\b", r"nn\.Conv1d"),  # type: ignore[arg-type]
    Bad("from-mha-type", lambda: cr.from_multihead_attention(nn.Linear(2, 2)), TypeError, r"\bmha\b", r"MultiheadAttention"),  # type: ignore[arg-type]
    Bad("from-mha-bias-kv", lambda: cr.from_multihead_attention(nn.MultiheadAttention(8, 2, add_bias_kv=True)), NotImplementedError, r"add_bias_kv", r"not supported"),
    # --- errors that used to come from deep inside torch: named, before any allocation
    Bad("k-bool-tensor", lambda: ConvNNConfig(k=torch.tensor(True)), TypeError, r"\bk\b", r"must be an int, got a bool"),  # type: ignore[arg-type]
    Bad("k-shaped-tensor", lambda: ConvNNConfig(k=torch.tensor([3])), TypeError, r"\bk\b", r"must be an int, got Tensor of shape \(1,\)"),  # type: ignore[arg-type]
    Bad("allowed-extra-dimension", lambda: cr.convnn_attention(_x(1, 6, 4), _x(1, 7, 4), _x(1, 7, 4), _sum(), allowed=torch.ones(1, 2, 6, 7, dtype=torch.bool)), ValueError, r"allowed", r"does not broadcast to \(1, 6, 7\)"),
    Bad("position-table-cand-index-range", lambda: cr.position_table(resolve_geometry(ConvNNConfig(k=1, basis="position"), (5,)), ConvNNConfig(k=1, basis="position"), torch.device("cpu"), torch.tensor([0, 10**6])), ValueError, r"cand_index", r"must lie in \[0, 5\)"),
    Bad("position-table-cand-index-repeats", lambda: cr.position_table(resolve_geometry(ConvNNConfig(k=1, basis="position"), (5,)), ConvNNConfig(k=1, basis="position"), torch.device("cpu"), torch.tensor([1, 1])), ValueError, r"cand_index", r"distinct"),
    Bad("feature-padding-huge", lambda: cr.convnn(_x(1, 2, 5, 5), None, None, _sum(padding=10**5)), ValueError, r"padding", r"more than its 5 points"),
    Bad("from-conv-lazy", lambda: cr.from_conv(nn.LazyConv2d(3, 3)), ValueError, r"\bconv\b", r"uninitialized LazyConv2d"),
    Bad("layer-complex-dtype", lambda: cr.ConvNN2d(2, 2, ConvNNConfig(k=2), dtype=torch.complex64), TypeError, r"dtype", r"floating dtype"),
    Bad("attention-complex-dtype", lambda: cr.ConvNNAttention(8, 2, dtype=torch.complex64), TypeError, r"dtype", r"floating dtype"),
    Bad("neighbours-meta", lambda: cr.neighbours(torch.empty(1, 2, 5, device="meta"), _sum()), NotImplementedError, r"\bx\b", r"meta device"),
    Bad("layer-padding-mode-unpadded", lambda: cr.ConvNN2d(2, 2, ConvNNConfig(k=2, basis="position"), padding_mode="reflect"), ValueError, r"padding_mode='reflect'", r"no effect"),
    Bad("from-mha-zero-attn", lambda: cr.from_multihead_attention(nn.MultiheadAttention(8, 2, add_zero_attn=True)), NotImplementedError, r"add_zero_attn", r"not supported"),
]


# (The parameter is not called `case`: suites/bench/conftest.py takes every `case` for a bench case.)
@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_call_raises_a_named_error(bad: Bad) -> None:
    """The bad call raises the documented exception type; its message names the argument and the constraint."""
    with pytest.raises(bad.error) as info:
        bad.call()
    message = str(info.value)
    assert re.search(bad.argument, message), f"{bad.id}: the message does not name the argument ({bad.argument!r}): {message}"
    assert re.search(bad.constraint, message), f"{bad.id}: the message does not state the constraint ({bad.constraint!r}): {message}"


def test_cases_are_distinct_classes() -> None:
    """At least 40 distinct classes, each listed once."""
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


# --------------------------------------------------------------- what is accepted, and how


@given(k=st.integers(1, 6), kind=st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8]))
def test_numpy_integers_are_accepted_and_stored_as_ints(k: int, kind: type) -> None:
    """Anything operator.index takes is an int argument; the config stores a plain int."""
    config = ConvNNConfig(k=kind(k), stride=(kind(1),), groups=kind(1))
    assert type(config.k) is int and config.k == k
    assert type(config.stride[0]) is int and type(config.groups) is int  # type: ignore[index]
    assert config == ConvNNConfig(k=k, stride=(1,), groups=1)


@given(batch=st.integers(0, 2), length=st.integers(0, 3), keys=st.integers(1, 4))
def test_empty_queries_give_an_empty_output_as_sdpa(batch: int, length: int, keys: int) -> None:
    """L = 0 or an empty batch: an empty output of the right shape, as F.scaled_dot_product_attention gives."""
    if batch and length:
        return
    q, k, v = _x(batch, length, 3), _x(batch, keys, 3), _x(batch, keys, 2)
    y = cr.scaled_dot_product_attention(q, k, v)
    assert y.shape == torch.nn.functional.scaled_dot_product_attention(q, k, v).shape == (batch, length, 2)


@given(value=st.sampled_from([NAN, INF, -INF]), k=st.integers(1, 4))
def test_nonfinite_config_numbers_are_refused(value: float, k: int) -> None:
    """rho_scale, scale and hybrid_lambda refuse NaN and infinities by name."""
    for name in ("rho_scale", "scale", "hybrid_lambda"):
        with pytest.raises(ValueError, match=name):
            ConvNNConfig(k=k, basis="hybrid", **{name: value})  # type: ignore[arg-type]


def test_meta_device_builds_and_infers_shapes_as_conv() -> None:
    """ConvNN2d on the meta device builds as nn.Conv2d does and its forward gives the output's shape
    (no values: nothing is scored on meta)."""
    conv = nn.Conv2d(2, 3, 3, padding=1, device="meta")
    layer = cr.ConvNN2d(2, 3, ConvNNConfig(k=9, basis="position", kernel_size=3, padding=1), device="meta")
    x = torch.empty(2, 2, 5, 6, device="meta")
    assert layer.weight.device.type == "meta"
    y = layer(x)
    assert y.device.type == "meta" and y.shape == conv(x).shape == (2, 3, 5, 6)
    assert cr.ConvNN2d(2, 3, ConvNNConfig(k=4, stride=2), device="meta")(x).shape == (2, 3, 3, 3)


def test_zero_dim_integer_tensors_are_ints() -> None:
    """A 0-d integer tensor is an int argument (as a numpy integer is), stored as a plain int."""
    config = ConvNNConfig(k=torch.tensor(3))  # type: ignore[arg-type]
    assert type(config.k) is int and config == ConvNNConfig(k=3)



def test_a_callers_candidate_subset_never_enters_the_table_cache() -> None:
    """position_table with a cand_index computes that subset's table and caches nothing under the
    config's key: a later call without it gets every candidate (and a grid config its grid)."""
    config = ConvNNConfig(k=2, basis="position", kernel="sum")
    geometry = resolve_geometry(config, (6,))
    subset, _ = cr.position_table(geometry, config, torch.device("cpu"), torch.tensor([0, 5]))
    assert set(subset.unique().tolist()) == {0, 5}
    full, _ = cr.position_table(geometry, config, torch.device("cpu"))
    assert full[:, 0].tolist() == list(range(6))  # every query's nearest candidate is itself
    grid = config.replace(candidates="grid", num_candidates=2)
    index, _ = cr.position_table(geometry, grid, torch.device("cpu"))
    assert set(index.unique().tolist()) == {0, 5}  # the grid's two points, not every candidate
