"""Two knobs the research code uses, against the naive oracle (float64):

- feature and hybrid bases on a zero-padded grid (``padding`` outside the position basis): every
  padded point is a candidate with zero features, the queries are the real tokens, the output
  has the real query grid's shape (`ConvNNConfig`, "Geometry");
- ``grid_rounding``: grid candidates rounded (``torch.round``, float64) or truncated (float32
  ``linspace(...).long()``, the research code's convention)."""

from __future__ import annotations

import math

import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.config import ConvNNConfig
from convnn_ref.testing import naive_convnn

F64 = torch.float64
SIMILARITIES = ("cosine", "euclidean", "dot", "scaled_dot")


def _randn(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _padding(draw: st.DrawFn, spatial: tuple[int, ...]) -> int | tuple[int, ...] | tuple[tuple[int, int], ...]:
    """Up to 2 points a side, never more than the axis has (more is refused by name)."""
    form = draw(st.sampled_from(["int", "per-axis", "pairs"]))
    if form == "int":
        return draw(st.integers(0, min(2, *spatial)))
    if form == "per-axis":
        return tuple(draw(st.integers(0, min(2, s))) for s in spatial)
    return tuple((draw(st.integers(0, min(2, s))), draw(st.integers(0, min(2, s)))) for s in spatial)


@st.composite
def padded_cases(draw: st.DrawFn) -> dict[str, object]:
    dims = draw(st.sampled_from([1, 2]))
    spatial = tuple(draw(st.integers(1, 7 if dims == 1 else 4)) for _ in range(dims))
    padding = _padding(draw, spatial)
    per_axis = [padding] * dims if isinstance(padding, int) else list(padding)
    padded = [s + (2 * p if isinstance(p, int) else p[0] + p[1]) for s, p in zip(spatial, per_axis)]
    stride = draw(st.sampled_from([1, 2]))
    basis = draw(st.sampled_from(["feature", "hybrid"]))
    kernel = draw(st.sampled_from(["full", "grouped", "sum"]))
    channels = draw(st.integers(1, 3))
    coord = draw(st.sampled_from(["none", "score", "aggregate", "both"]))
    values = channels + (dims if coord in ("aggregate", "both") else 0)
    groups = values if kernel == "grouped" else 1
    config = ConvNNConfig(
        k=draw(st.integers(1, min(math.prod(padded), 9))),
        basis=basis,  # type: ignore[arg-type]
        similarity=draw(st.sampled_from(SIMILARITIES)),
        coordinates=draw(st.sampled_from(["integer", "normalized"])) if basis == "hybrid" else "integer",  # feature: refused
        hybrid_lambda=draw(st.sampled_from([0.25, 0.5, 0.75])) if basis == "hybrid" else 0.5,
        self_slot="forced" if stride == 1 and draw(st.booleans()) else "candidate",
        rho=draw(st.sampled_from(["ones", "softmax", "scores"])),
        kernel=kernel,  # type: ignore[arg-type]
        groups=groups,
        coord_encoding=coord,  # type: ignore[arg-type]
        stride=stride,
        padding=padding,
    )
    return {"config": config, "batch": draw(st.integers(1, 2)), "channels": channels, "spatial": spatial, "seed": draw(st.integers(0, 2**16))}


def _check_against_oracle(p: dict[str, object]) -> None:
    config, spatial, channels, seed = p["config"], p["spatial"], p["channels"], p["seed"]
    assert isinstance(config, ConvNNConfig) and isinstance(spatial, tuple) and isinstance(channels, int) and isinstance(seed, int)
    assert config.k is not None
    x = _randn((int(p["batch"]), channels, *spatial), seed)  # type: ignore[call-overload]
    values = channels + (len(spatial) if config.coord_encoding in ("aggregate", "both") else 0)
    weight = None if config.kernel == "sum" else _randn((values * (2 if config.kernel == "grouped" else 1), values // config.groups, config.k), seed + 1)
    bias = None if weight is None else _randn((weight.shape[0],), seed + 2)
    y = cr.convnn(x, weight, bias, config)
    gold = naive_convnn(x, weight, bias, config)
    out = tuple((s - 1) // config.stride + 1 for s in spatial)  # type: ignore[operator]
    assert y.shape == gold.shape == (x.shape[0], gold.shape[1], *out), f"shapes {tuple(y.shape)}, {tuple(gold.shape)}, real query grid {out}"
    err = float((y - gold).abs().max()) if y.numel() else 0.0
    assert err < 1e-9 * max(1.0, float(gold.abs().max())), f"reference differs from the oracle by {err:.3e}\n  {config}\n  x {tuple(x.shape)} seed {seed}"


@settings(max_examples=80)  # the oracle's Python loops
@given(p=padded_cases())
@example(p={"config": ConvNNConfig(k=4, padding=1), "batch": 1, "channels": 2, "spatial": (3, 3), "seed": 0})
@example(p={"config": ConvNNConfig(k=9, padding=1, kernel="sum", similarity="dot"), "batch": 1, "channels": 1, "spatial": (3, 3), "seed": 1})
@example(p={"config": ConvNNConfig(k=3, basis="hybrid", padding=1, stride=2, coord_encoding="both", rho="softmax"), "batch": 2, "channels": 2, "spatial": (3, 3), "seed": 2})
@example(p={"config": ConvNNConfig(k=3, padding=((2, 0),), self_slot="forced", similarity="euclidean"), "batch": 1, "channels": 2, "spatial": (5,), "seed": 3})
def test_padded_feature_bases_match_the_oracle(p: dict[str, object]) -> None:
    """Feature and hybrid bases on a zero-padded grid equal the oracle: 1-D and 2-D, every
    similarity, with and without stride, forced self, coordinate channels, every rho and kernel."""
    _check_against_oracle(p)


@given(similarity=st.sampled_from(SIMILARITIES), side=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_padded_points_are_zero_candidates(similarity: str, side: int, seed: int) -> None:
    """Selecting every candidate: the padded grid's points are candidates; a padded point's
    score is the similarity with a zero vector (cosine: 0, the norms clamped)."""
    x = _randn((1, 2, side, side), seed)
    n = (side + 2) ** 2
    config = ConvNNConfig(k=n, padding=1, similarity=similarity, kernel="sum")  # type: ignore[arg-type]
    nb = cr.neighbours(x, config)
    assert nb.index.shape == (1, side * side, n)
    assert sorted(nb.index[0, 0].tolist()) == list(range(n))
    real = torch.zeros(side + 2, side + 2, dtype=torch.bool)
    real[1:-1, 1:-1] = True
    padded_slots = ~real.reshape(-1)[nb.index]
    q = x.reshape(2, -1).T  # real tokens, row-major
    zero_score = {"cosine": torch.zeros(side * side), "dot": torch.zeros(side * side), "scaled_dot": torch.zeros(side * side),
                  "euclidean": -q.square().sum(-1)}[similarity]
    expected = zero_score[:, None].expand(-1, n)[None][padded_slots]
    assert torch.allclose(nb.score.detach()[padded_slots], expected.to(F64), atol=1e-12)


def test_padding_keeps_the_real_query_grid() -> None:
    """Output shape is the real query grid, whatever the padding; padding 0 is the unpadded layer."""
    x = _randn((2, 3, 5, 4), 0)
    for padding in (0, 1, (2, 0), ((0, 3), (1, 1))):
        for stride in (1, 2):
            y = cr.convnn(x, None, None, ConvNNConfig(k=3, kernel="sum", padding=padding, stride=stride))
            assert y.shape == (2, 3, (5 - 1) // stride + 1, (4 - 1) // stride + 1)
    config = ConvNNConfig(k=3, kernel="sum")
    assert torch.equal(cr.convnn(x, None, None, config), cr.convnn(x, None, None, config.replace(padding=0)))


# --------------------------------------------------------------------------- grid rounding


@st.composite
def grid_cases(draw: st.DrawFn) -> tuple[int, int, int]:
    length = draw(st.integers(1, 40))
    margin = draw(st.integers(0, max(0, (length - 1) // 2)))
    return length, draw(st.integers(1, length)), margin


def _research_grid(length: int, r: int, margin: int) -> list[int]:
    """The research code's grid: ``torch.linspace(...)`` in the default float32, then ``.long()``."""
    return sorted(set(torch.linspace(margin, length - 1 - margin, r).long().tolist()))


@given(case=grid_cases())
@example(case=(17, 15, 0))  # float32 rounding decides: 7, where exact arithmetic floors to 8
def test_truncated_grid_is_the_research_codes(case: tuple[int, int, int]) -> None:
    """grid_rounding='truncate' selects exactly the research code's ``linspace(...).long()`` points."""
    length, r, margin = case
    expected = _research_grid(length, r, margin)
    config = ConvNNConfig(k=len(expected), candidates="grid", num_candidates=r, grid_margin=margin, grid_rounding="truncate", kernel="sum")
    nb = cr.neighbours(_randn((1, 1, length), 0), config)
    assert sorted(nb.index[0, 0].tolist()) == expected


@settings(max_examples=60)  # the oracle's Python loops
@given(case=grid_cases(), rounding=st.sampled_from(["round", "truncate"]), basis=st.sampled_from(["position", "feature"]), seed=st.integers(0, 2**16))
@example(case=(8, 3, 0), rounding="round", basis="feature", seed=0)
@example(case=(8, 3, 0), rounding="truncate", basis="feature", seed=0)
def test_grid_rounding_matches_the_oracle(case: tuple[int, int, int], rounding: str, basis: str, seed: int) -> None:
    """Both grid conventions equal the oracle (position and feature bases, 1-D)."""
    length, r, margin = case
    x = _randn((1, 2, length), seed)
    config = ConvNNConfig(k=1, basis=basis, candidates="grid", num_candidates=r, grid_margin=margin, grid_rounding=rounding, rho="ones", kernel="sum")  # type: ignore[arg-type]
    y, gold = cr.convnn(x, None, None, config), naive_convnn(x, None, None, config)
    assert torch.allclose(y, gold, atol=1e-12), f"{config}: {y.tolist()} != {gold.tolist()}"


def test_grid_conventions_differ() -> None:
    """round and truncate are different candidate sets on L = 8, r = 3 (0, 4, 7 against 0, 3, 7),
    and so different outputs; on L = 10, r = 4 they coincide (0, 3, 6, 9)."""
    x = _randn((1, 1, 8), 0)
    sets = {}
    outputs = {}
    for rounding in ("round", "truncate"):
        config = ConvNNConfig(k=3, candidates="grid", num_candidates=3, grid_rounding=rounding, kernel="sum")  # type: ignore[arg-type]
        sets[rounding] = sorted(cr.neighbours(x, config).index[0, 0].tolist())
        outputs[rounding] = cr.convnn(x, None, None, config)
    assert sets == {"round": [0, 4, 7], "truncate": [0, 3, 7]}
    assert not torch.allclose(outputs["round"], outputs["truncate"])
    for rounding in ("round", "truncate"):
        config = ConvNNConfig(k=4, candidates="grid", num_candidates=4, grid_rounding=rounding, kernel="sum")  # type: ignore[arg-type]
        assert sorted(cr.neighbours(_randn((1, 1, 10), 0), config).index[0, 0].tolist()) == [0, 3, 6, 9]
