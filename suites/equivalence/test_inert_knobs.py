"""No knob is accepted and ignored (docs/semantics.md, "Inert knobs"): a generated matrix.

Rows are derived, not listed: every field of `ConvNNConfig` (its dataclass fields and their type
hints give the alternative values), and every parameter with a default of every public callable
(its signature). Columns are contexts, one base call per basis and form. For each row and column
the alternative value must either change what the call returns (output and neighbours), or be
refused with a named error that mentions the knob, or (only for the knobs documented as warned)
raise a warning that mentions it. A few values are, by definition, the same function as the base
(`ALIASES`); the matrix checks they are. A new field or parameter with no rule here fails
`test_every_knob_has_a_rule`, so it cannot arrive unseen.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import convnn_ref as cr
from convnn_ref.config import ConvNNConfig
from convnn_ref.testing import resolve_geometry

F64 = torch.float64
ENGINE_ENV = "CONVNN_SELECT_ENGINE"
_REFUSALS = (ValueError, TypeError, NotImplementedError)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ------------------------------------------------------------------ alternative values of a field


def alternatives(name: str, value: object) -> list[object]:
    """Values of field ``name`` other than ``value``, from its type hint alone: every other choice of
    a Literal, the other bool, one step up for an integer, another number for a real, a geometry
    value for a geometry field. A type the matrix does not know fails, naming the field."""
    hint = typing.get_type_hints(ConvNNConfig)[name]
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    concrete = [a for a in args if a is not type(None)]
    if len(concrete) == 1 and typing.get_origin(concrete[0]) is typing.Literal:
        return [c for c in typing.get_args(concrete[0]) if c != value]
    if concrete == [bool]:
        return [not value]
    if bool in concrete and any(typing.get_origin(a) is tuple for a in concrete):  # per-axis flags (causal)
        return [not any(_leaves(value)) if not isinstance(value, tuple) else not value[0]]
    if concrete == [int]:
        return [2 if value is None else value + 1]  # type: ignore[operator]
    if concrete == [float]:
        return [0.7 if value is None else float(value) / 2]  # type: ignore[arg-type]
    if int in concrete and any(typing.get_origin(a) is tuple for a in concrete):  # geometry: int or tuples
        if value is None:
            return [3]
        if name == "kernel_size":
            return [None]
        return [2 if set(_leaves(value)) == {1} else 0] if name != "padding" else [1 if set(_leaves(value)) == {0} else 0]
    raise AssertionError(f"field {name!r} has type {hint!r}, which the inert-knob matrix cannot vary: teach alternatives()")


def _leaves(value: object) -> list[object]:
    return [leaf for v in value for leaf in _leaves(v)] if isinstance(value, tuple) else [value]


# ------------------------------------------------------------------ contexts: one base call per basis and form


@dataclass(frozen=True)
class Context:
    """A base config and the form of the call (image: convnn and neighbours on a 5x6 map with 3
    channels; sequence: convnn_attention and attention_neighbours, 6 queries and 7 keys; window:
    window_attention on a 5x6 grid of 4-vectors)."""

    id: str
    form: str
    base: ConvNNConfig


CONTEXTS = [
    Context("position-window", "image", ConvNNConfig(k=5, basis="position", kernel_size=(3, 3), rho="softmax")),
    Context("position-grid", "image", ConvNNConfig(k=3, basis="position", candidates="grid", num_candidates=4, self_slot="forced", rho="scores")),
    Context("feature-dot", "image", ConvNNConfig(k=4, similarity="dot", rho="softmax")),
    Context("feature-cosine-ones", "image", ConvNNConfig(k=4, similarity="cosine", rho="ones", kernel="sum")),
    Context("feature-grid", "image", ConvNNConfig(k=3, similarity="scaled_dot", candidates="grid", num_candidates=4, rho="softmax")),
    Context("hybrid", "image", ConvNNConfig(k=4, basis="hybrid", similarity="dot", rho="softmax")),
    Context("sequence-dot", "sequence", ConvNNConfig(k=3, similarity="dot", rho="ones")),
    Context("window", "window", ConvNNConfig(k=None, basis="feature", similarity="scaled_dot", candidates="window",
                                             kernel_size=(3, 3), rho="softmax", kernel="sum")),
    Context("sequence-grid", "sequence", ConvNNConfig(k=2, similarity="scaled_dot", candidates="grid", num_candidates=5, rho="softmax", kernel="sum")),
]

#: Values that are, by definition, the same function as the base value where the condition holds
#: on the base: checked equal (to rounding: another matrix product computes them).
ALIASES: dict[tuple[str, object], tuple[Callable[[ConvNNConfig], bool], str]] = {
    ("kernel", "grouped"): (
        lambda base: base.kernel == "full" and base.groups == 1,
        "kernel='grouped' with groups=1 is kernel='full' (as nn.Conv1d with groups=1)",
    ),
}

#: Knobs that are warned about rather than refused (documented in docs/semantics.md).
WARNED = {"border": "border='in_bounds' only declares that there is no padding"}


def observe(context: Context, config: ConvNNConfig) -> list[torch.Tensor]:
    """What the call returns: the output and the neighbours (index and score)."""
    generator = torch.Generator().manual_seed(1)
    weight = None
    if config.weighted:
        assert config.k is not None
        extra = 2 if context.form == "image" and config.coord_encoding in ("aggregate", "both") else 0
        c_in = (3 if context.form == "image" else 2) + extra
        weight = _randn(2, c_in // config.groups, config.k, seed=5)
    if context.form == "window":
        q, k, v = _randn(1, 5, 6, 4, seed=1), _randn(1, 5, 6, 4, seed=2), _randn(1, 5, 6, 2, seed=3)
        return [cr.window_attention(q, k, v, config)]
    if context.form == "image":
        x = _image_input()
        y = cr.convnn(x, weight, None, config, generator=generator)
        nb = cr.neighbours(x, config, generator=torch.Generator().manual_seed(1))
    else:
        q, k, v = _randn(1, 6, 4, seed=1), _randn(1, 7, 4, seed=2), _randn(1, 7, 2, seed=3)
        y = cr.convnn_attention(q, k, v, config, weight=weight, generator=generator)
        nb = cr.attention_neighbours(q, k, config, generator=torch.Generator().manual_seed(1))
    return [y, nb.index, nb.score]


@functools.cache
def _base_observation(context: Context) -> list[torch.Tensor]:
    return observe(context, context.base)


def _image_input() -> torch.Tensor:
    """A 5x6 map of 3 channels whose first two tokens are equal (a tie: forced self is visible)."""
    x = _randn(1, 3, 5, 6)
    x[..., 0, 1] = x[..., 0, 0]
    return x


def _differ(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return any(s.shape != t.shape or not torch.equal(s.nan_to_num(7.0), t.nan_to_num(7.0)) for s, t in zip(a, b))


def _outcome(knob: str, run: Callable[[], object]) -> tuple[str, object]:
    """('refused', message) | ('warned', message) | ('ran', result)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = run()
        except _REFUSALS as error:
            return "refused", str(error)
    named = [str(w.message) for w in caught if knob in str(w.message)]
    if named:
        return "warned", named[0]
    return "ran", result


FIELD_ROWS = [
    (context, field.name, value)
    for context in CONTEXTS
    for field in dataclasses.fields(ConvNNConfig)
    for value in alternatives(field.name, getattr(context.base, field.name))
]


@pytest.mark.parametrize(("context", "knob", "value"), FIELD_ROWS, ids=[f"{c.id}-{n}={v!r}" for c, n, v in FIELD_ROWS])
def test_config_knob_is_live_or_refused(context: Context, knob: str, value: object) -> None:
    """Each field at another value: the output or the neighbours change, or the knob is refused (or warned) by name."""
    base = _base_observation(context)
    kind, what = _outcome(knob, lambda: observe(context, context.base.replace(**{knob: value})))
    where = f"{knob}={value!r} under {context.id} ({context.form} form, base {context.base})"
    if kind == "refused":
        assert knob in what, f"{where}: refused, but the message does not name {knob!r}: {what}"
    elif kind == "warned":
        assert knob in WARNED, f"{where}: warned, but only {sorted(WARNED)} are documented as warned: {what}"
    elif (knob, value) in ALIASES and ALIASES[(knob, value)][0](context.base):
        reason = ALIASES[(knob, value)][1]
        for s, t in zip(base, what):  # type: ignore[call-overload]
            torch.testing.assert_close(t, s, rtol=1e-12, atol=1e-12, msg=lambda m: f"{where}: declared an alias ({reason}): {m}")
    else:
        assert _differ(base, what), f"{where}: accepted and ignored (output and neighbours identical to the base)"  # type: ignore[arg-type]


@pytest.mark.parametrize("context", CONTEXTS, ids=[c.id for c in CONTEXTS])
def test_unknown_engine_setting_is_refused_on_every_route(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """CONVNN_SELECT_ENGINE set to an unknown value is an error whatever the basis (the position basis never selects by engine)."""
    monkeypatch.setenv(ENGINE_ENV, "fastest")
    with pytest.raises(ValueError, match=ENGINE_ENV):
        observe(context, context.base)


#: Cases a user found accepted and ignored; each must be among the matrix's refusals.
REPORTED = [
    ("feature-dot", "kernel_size", 3),
    ("feature-cosine-ones", "scale", 0.7),
    ("feature-dot", "metric", "euclidean"),
    ("feature-dot", "hybrid_lambda", 0.25),
    ("feature-cosine-ones", "rho_scale", 0.5),
    ("sequence-dot", "coord_encoding", "score"),
    ("sequence-dot", "coord_encoding", "aggregate"),
    ("sequence-dot", "stride", 2),
    ("sequence-dot", "padding", 1),
]


def test_reported_cases_are_in_the_matrix() -> None:
    """The reported inert cases are rows of the matrix (so each is refused by name there)."""
    rows = {(c.id, n, v) for c, n, v in FIELD_ROWS}
    missing = [r for r in REPORTED if r not in rows]
    assert not missing, f"reported inert cases the matrix no longer generates: {missing}"


# ------------------------------------------------------------------ keywords of the public callables


def _public_callables() -> dict[str, Callable[..., object]]:
    """Every public function and class of the package except the config (its fields are rows
    above) and the result type."""
    out = {}
    for name in cr.__all__:
        obj = getattr(cr, name)
        if name in ("ConvNNConfig", "Neighbours") or not callable(obj):
            continue
        out[name] = obj
    return out


def _knob_parameters() -> list[tuple[str, str]]:
    """(callable, parameter) for every parameter with a default: the knobs. Required parameters
    are the call's inputs (tensors, modules, channel counts, the config)."""
    rows = []
    for name, obj in _public_callables().items():
        for p in inspect.signature(obj).parameters.values():
            if p.default is not inspect.Parameter.empty:
                rows.append((name, p.name))
    return rows


#: Knobs that change no output by design, and why (docs/semantics.md, "Inert knobs").
NOT_OUTPUT_KNOBS = {
    "memory_budget": "a bound on the memory a call uses; the output does not depend on it (test_output_does_not_depend_on_the_budget)",
    "device": "where the parameters live; the function is the same",
    "generator": "the source of randomness, used when something is drawn (random candidates, dropout); one generator "
    "may be passed through a whole model, so it is accepted where nothing is drawn",
}

_IMG = _randn(1, 3, 5, 6)
_SEQ_Q, _SEQ_K, _SEQ_V = _randn(2, 6, 4, seed=1), _randn(2, 7, 4, seed=2), _randn(2, 7, 3, seed=3)
_FEATURE = ConvNNConfig(k=3, kernel="sum", similarity="dot")


def _seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in module.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed), dtype=p.dtype))
    return module


def _layer_out(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)  # dropout uses torch's global RNG, as PyTorch's layers do
    return module(x)


def _attention_layer(**kw: object) -> torch.Tensor:
    kw = {"batch_first": True, **kw}
    layer = _seeded(cr.ConvNNAttention(8, 2, dtype=F64, **kw)).train()  # type: ignore[arg-type]
    kdim, vdim = kw.get("kdim") or 8, kw.get("vdim") or 8
    q = _randn(2, 5, 8, seed=1)
    key, value = _randn(2, 5, kdim, seed=2), _randn(2, 5, vdim, seed=3)  # type: ignore[arg-type]
    if not kw["batch_first"]:
        q, key, value = (t.transpose(0, 1) for t in (q, key, value))
    torch.manual_seed(0)
    return layer(q, key, value)


def _conv_output(conv_config: ConvNNConfig) -> torch.Tensor:
    c_in = 3
    weight = _randn(2, c_in // conv_config.groups, conv_config.k or 1, seed=5)  # type: ignore[arg-type]
    return cr.convnn(_randn(1, c_in, 7, 7), weight, None, conv_config)


#: (callable, parameter) -> (run with keyword overrides, the alternative value).
PROBES: dict[tuple[str, str], tuple[Callable[..., object], object]] = {
    ("convnn_attention", "allowed"): (
        lambda **kw: cr.convnn_attention(_SEQ_Q, _SEQ_K, _SEQ_V, _FEATURE, **kw),
        torch.ones(6, 7, dtype=torch.bool).tril(),
    ),
    ("convnn_attention", "weight"): (
        lambda **kw: cr.convnn_attention(_SEQ_Q, _SEQ_K, _SEQ_V, ConvNNConfig(k=3, similarity="dot"), **{"weight": _randn(2, 3, 3), **kw}),
        _randn(2, 3, 3, seed=9),
    ),
    ("convnn_attention", "bias"): (lambda **kw: cr.convnn_attention(_SEQ_Q, _SEQ_K, _SEQ_V, _FEATURE, **kw), _randn(3)),
    ("convnn_attention", "dropout_p"): (lambda **kw: (torch.manual_seed(0), cr.convnn_attention(_SEQ_Q, _SEQ_K, _SEQ_V, _FEATURE.replace(rho="softmax"), **kw))[1], 0.5),
    ("attention_neighbours", "allowed"): (
        lambda **kw: cr.attention_neighbours(_SEQ_Q, _SEQ_K, _FEATURE, **kw).index,
        torch.ones(6, 7, dtype=torch.bool).tril(),
    ),
    ("position_table", "cand_index"): (
        lambda **kw: cr.position_table(_geometry(), ConvNNConfig(k=2, basis="position"), torch.device("cpu"), **kw)[0],
        torch.tensor([0, 3, 4, 7]),
    ),
    ("scaled_dot_product_attention", "attn_mask"): (lambda **kw: cr.scaled_dot_product_attention(_SEQ_Q, _SEQ_K, _SEQ_V, **kw), torch.ones(6, 7, dtype=torch.bool).tril()),
    ("scaled_dot_product_attention", "dropout_p"): (lambda **kw: (torch.manual_seed(0), cr.scaled_dot_product_attention(_SEQ_Q, _SEQ_K, _SEQ_V, **kw))[1], 0.5),
    ("scaled_dot_product_attention", "is_causal"): (lambda **kw: cr.scaled_dot_product_attention(_SEQ_Q, _SEQ_K, _SEQ_V, **kw), True),
    ("scaled_dot_product_attention", "scale"): (lambda **kw: cr.scaled_dot_product_attention(_SEQ_Q, _SEQ_K, _SEQ_V, **kw), 0.2),
    ("scaled_dot_product_attention", "k"): (lambda **kw: cr.scaled_dot_product_attention(_SEQ_Q, _SEQ_K, _SEQ_V, **kw), 2),
    ("kvt_attention", "scale"): (lambda **kw: cr.kvt_attention(_SEQ_Q, _SEQ_K, _SEQ_V, 3, **kw), 0.2),
    ("kvt_attention", "dropout_p"): (lambda **kw: (torch.manual_seed(0), cr.kvt_attention(_SEQ_Q, _SEQ_K, _SEQ_V, 3, **kw))[1], 0.5),
    ("kvt_config", "scale"): (lambda **kw: cr.convnn_attention(_SEQ_Q, _SEQ_K, _SEQ_V, cr.kvt_config(3, **kw)), 0.2),
    ("KVTAttention", "num_heads"): (lambda **kw: _layer_out(_seeded(cr.KVTAttention(8, topk=3, **kw).double()), _randn(2, 5, 8)), 2),
    ("KVTAttention", "topk"): (lambda **kw: _layer_out(_seeded(cr.KVTAttention(8, **{"topk": 3, **kw}).double()), _randn(2, 5, 8)), 2),
    ("KVTAttention", "qkv_bias"): (lambda **kw: _layer_out(_seeded(cr.KVTAttention(8, topk=3, **kw).double()), _randn(2, 5, 8)), True),
    ("KVTAttention", "qk_scale"): (lambda **kw: _layer_out(_seeded(cr.KVTAttention(8, topk=3, **kw).double()), _randn(2, 5, 8)), 0.2),
    ("KVTAttention", "attn_drop"): (lambda **kw: _layer_out(_seeded(cr.KVTAttention(8, topk=3, **kw).double()).train(), _randn(2, 5, 8)), 0.5),
    ("KVTAttention", "proj_drop"): (lambda **kw: _layer_out(_seeded(cr.KVTAttention(8, topk=3, **kw).double()).train(), _randn(2, 5, 8)), 0.5),
    ("conv_config", "stride"): (lambda **kw: _conv_output(cr.conv_config(3, spatial_dims=2, **kw)), 2),
    ("conv_config", "padding"): (lambda **kw: _conv_output(cr.conv_config(3, spatial_dims=2, **kw)), 1),
    ("conv_config", "dilation"): (lambda **kw: _conv_output(cr.conv_config(3, spatial_dims=2, **kw)), 2),
    ("conv_config", "groups"): (lambda **kw: _conv_output(cr.conv_config(3, spatial_dims=2, **kw)), 3),
    ("conv_config", "convention"): (lambda **kw: _conv_output(cr.conv_config(7, spatial_dims=2, padding=3, **kw)), "research"),
    ("from_conv", "convention"): (lambda **kw: _layer_out(cr.from_conv(_seeded(nn.Conv2d(3, 2, 7, padding=3).double()), **kw), _randn(1, 3, 7, 7)), "research"),
    ("from_multihead_attention", "k"): (lambda **kw: _layer_out(cr.from_multihead_attention(_seeded(nn.MultiheadAttention(8, 2, batch_first=True).double()), **kw), _randn(2, 5, 8)), 2),
    ("ConvNNAttention", "k"): (lambda **kw: _attention_layer(**kw), 2),
    ("ConvNNAttention", "similarity"): (lambda **kw: _attention_layer(**kw), "dot"),
    ("ConvNNAttention", "scale"): (lambda **kw: _attention_layer(**kw), 0.2),
    ("ConvNNAttention", "candidates"): (lambda **kw: _attention_layer(**kw, **({"num_candidates": 3} if kw else {})), "random"),
    ("ConvNNAttention", "num_candidates"): (lambda **kw: _attention_layer(candidates="grid", **{"num_candidates": 4, **kw}), 3),
    ("ConvNNAttention", "dropout"): (lambda **kw: _attention_layer(**kw), 0.5),
    ("ConvNNAttention", "bias"): (lambda **kw: _attention_layer(**kw), False),
    ("ConvNNAttention", "batch_first"): (lambda **kw: _attention_layer(**kw), False),
    ("ConvNNAttention", "kdim"): (lambda **kw: _attention_layer(**kw), 4),
    ("ConvNNAttention", "vdim"): (lambda **kw: _attention_layer(**kw), 4),
    ("ConvNNAttention", "dtype"): (lambda **kw: _seeded(cr.ConvNNAttention(8, 2, **{"dtype": F64, **kw})).q_proj.weight.dtype, torch.float32),
    ("BranchingConvNN", "ratio"): (lambda **kw: _layer_out(_seeded(cr.BranchingConvNN(3, 4, ConvNNConfig(k=3), **kw).double()), _IMG), 0.25),
    ("BranchingConvNN", "conv_kernel_size"): (lambda **kw: _layer_out(_seeded(cr.BranchingConvNN(3, 4, ConvNNConfig(k=3), **kw).double()), _IMG), 5),
    ("BranchingConvNN", "spatial_dims"): (
        lambda **kw: _layer_out(_seeded(cr.BranchingConvNN(3, 4, ConvNNConfig(k=3), **kw).double()), _IMG[..., 0, :] if kw else _IMG[..., :1, :]),
        1,
    ),
    ("rho_weights", "rho_scale"): (lambda **kw: cr.rho_weights(_randn(2, 5), None, "softmax", **kw), 0.5),
    ("apply_kernel", "groups"): (lambda groups=1: cr.apply_kernel(_randn(1, 4, 3, 6), _randn(4, 6 // groups, 3, seed=groups), None, "grouped", groups=groups), 2),
    ("aggregate_as_conv1d", "groups"): (lambda groups=1: cr.aggregate_as_conv1d(_randn(1, 4, 3, 6), _randn(4, 6 // groups, 3, seed=groups), groups=groups), 2),
    ("aggregate_as_conv1d", "bias"): (lambda **kw: cr.aggregate_as_conv1d(_randn(1, 4, 3, 6), _randn(4, 6, 3), **kw), _randn(4)),
    ("BranchingConvNN", "bias"): (lambda **kw: _layer_out(_seeded(cr.BranchingConvNN(3, 4, ConvNNConfig(k=3), **kw).double()), _IMG), False),
    ("PixelShuffleConvNN2d", "bias"): (lambda **kw: _layer_out(_seeded(cr.PixelShuffleConvNN2d(3, 2, ConvNNConfig(k=3), 2, **kw).double()), _randn(1, 3, 4, 6)), False),
}
_NA_Q, _NA_K, _NA_V = _randn(1, 7, 8, 2, 4, seed=1), _randn(1, 7, 8, 2, 4, seed=2), _randn(1, 7, 8, 2, 3, seed=3)
_NA_ALTERNATIVES = {"dilation": 2, "stride": 2, "is_causal": True, "scale": 0.2}
for _param, _value in _NA_ALTERNATIVES.items():
    PROBES[("neighborhood_attention", _param)] = (lambda **kw: cr.neighborhood_attention(_NA_Q, _NA_K, _NA_V, 3, **kw), _value)
    PROBES[("neighborhood_config", _param)] = (
        lambda **kw: cr.window_attention(_NA_Q[..., 0, :], _NA_K[..., 0, :], _NA_V[..., 0, :], cr.neighborhood_config(3, **kw)),
        _value,
    )
    PROBES[("NeighborhoodAttention", _param)] = (
        lambda **kw: _layer_out(_seeded(cr.NeighborhoodAttention(8, 2, 3, **kw).double()), _randn(1, 7, 8, 8)), _value,
    )
PROBES[("NeighborhoodAttention", "qkv_bias")] = (
    lambda **kw: _layer_out(_seeded(cr.NeighborhoodAttention(8, 2, 3, **kw).double()), _randn(1, 7, 8, 8)), False,
)
PROBES[("NeighborhoodAttention", "spatial_dims")] = (
    lambda **kw: _layer_out(_seeded(cr.NeighborhoodAttention(8, 2, 3, **kw).double()), _randn(1, 7, 8) if kw else _randn(1, 7, 8, 8)), 1,
)
for _layer in ("ConvNN1d", "ConvNN2d", "ConvNN3d"):
    _shape = {"ConvNN1d": (1, 3, 7), "ConvNN2d": (1, 3, 5, 6), "ConvNN3d": (1, 3, 3, 3, 4)}[_layer]

    def _image_layer(_cls: str = _layer, _x_shape: tuple[int, ...] = _shape, **kw: object) -> object:
        padded = ConvNNConfig(k=3, basis="position", kernel_size=3, padding=1)
        layer = getattr(cr, _cls)(3, 2, padded, **{"dtype": F64, **kw})
        return _layer_out(_seeded(layer), _randn(*_x_shape)) if layer.weight.dtype == F64 else layer.weight.dtype

    PROBES[(_layer, "bias")] = (_image_layer, False)
    PROBES[(_layer, "padding_mode")] = (_image_layer, "reflect")
    PROBES[(_layer, "dtype")] = (_image_layer, torch.float32)


def _geometry() -> object:
    return resolve_geometry(ConvNNConfig(k=2, basis="position"), (3, 3))


def test_every_knob_has_a_rule() -> None:
    """Every parameter with a default of every public callable is probed here or documented as no output knob."""
    unruled = [
        (name, param) for name, param in _knob_parameters() if (name, param) not in PROBES and param not in NOT_OUTPUT_KNOBS
    ]
    assert not unruled, f"knobs without a liveness probe or a documented reason: {unruled}"
    stale = [key for key in PROBES if key not in set(_knob_parameters())]
    assert not stale, f"probes of parameters that no longer exist: {stale}"


PROBE_ROWS = sorted(PROBES)


@pytest.mark.parametrize(("callable_name", "param"), PROBE_ROWS, ids=[f"{c}-{p}" for c, p in PROBE_ROWS])
def test_keyword_is_live_or_refused(callable_name: str, param: str) -> None:
    """The keyword at another value changes the result, or is refused by a named error."""
    run, value = PROBES[(callable_name, param)]
    base = run()
    kind, what = _outcome(param, lambda: run(**{param: value}))
    where = f"{callable_name}({param}={value!r})"
    if kind == "refused":
        assert param in what, f"{where}: refused, but the message does not name {param!r}: {what}"
        return
    assert kind == "ran", f"{where}: warned ({what}); no keyword is documented as warned"

    def flat(r: object) -> list[torch.Tensor]:
        if isinstance(r, torch.Tensor):
            return [r]
        return [torch.tensor([hash(str(r))])]

    assert _differ(flat(base), flat(what)), f"{where}: accepted and ignored (the result is identical)"


def test_padding_mode_without_padding_is_refused() -> None:
    """A padding mode where nothing is padded is refused by name (from_conv maps such a conv to 'zeros')."""
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        cr.ConvNN2d(3, 2, ConvNNConfig(k=9, basis="position", kernel_size=3), padding_mode="reflect")
    conv = nn.Conv2d(3, 2, 3, padding=0, padding_mode="reflect").double()
    x = _randn(1, 3, 5, 6)
    assert torch.equal(cr.from_conv(conv)(x), cr.from_conv(conv)(x))
    torch.testing.assert_close(cr.from_conv(conv)(x), conv(x), rtol=0, atol=1e-12)


def test_helpers_refuse_inert_arguments() -> None:
    """The exported building blocks refuse what they would ignore: rho_scale off softmax, groups of the sum kernel."""
    with pytest.raises(ValueError, match="rho_scale"):
        cr.rho_weights(_randn(2, 5), None, "ones", rho_scale=2.0)
    with pytest.raises(ValueError, match="groups"):
        cr.apply_kernel(_randn(1, 4, 3, 6), None, None, "sum", groups=2)
