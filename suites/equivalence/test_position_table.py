"""The position basis's cached neighbour table is the generic score-then-select of `ConvNNConfig` (as
the naive oracle computes it), its offset slots are the conv taps, and the research code's
gather-then-Conv1d view of step 3 is the same function as the main aggregation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import convnn_ref as cr
from convnn_ref.testing import naive_convnn, resolve_geometry
from suites import tolerance
from suites.equivalence._common import DEVICES, dtypes, skip_outside
from suites.implementations import Implementation
from suites.strategies import ConvCase, GeneralCase, conv_cases, general_cases, randn

F64 = torch.float64


def _oracle_table(case: GeneralCase, c: cr.ConvNNConfig) -> torch.Tensor:
    """``(Nq, k)`` real-token index + 1 in every slot (0 = a padded point), read off the oracle:
    one-hot features, one output channel per slot carrying the token's number."""
    n = math.prod(case.spatial)
    x = torch.eye(n, dtype=F64).reshape(1, n, *case.spatial)
    c = c.replace(rho="ones", rho_scale=1.0, kernel="full", groups=1, coord_encoding="none")
    w = torch.zeros(c.k, n, c.k, dtype=F64)
    for t in range(c.k):
        w[t, :, t] = torch.arange(1, n + 1, dtype=F64)
    return naive_convnn(x, w, None, c).reshape(c.k, -1).T.round().long()


def _real_index(index: torch.Tensor, case: GeneralCase, c: cr.ConvNNConfig) -> torch.Tensor:
    """Padded-grid indices -> real token index + 1 (0 for padded points)."""
    geo = resolve_geometry(c, case.spatial)
    out = torch.zeros_like(index)
    for flat, point in enumerate(itertools.product(*(range(p) for p in geo.padded))):
        real = [p - lo for p, (lo, _) in zip(point, geo.padding)]
        if all(0 <= r < s for r, s in zip(real, case.spatial)):
            num = 0
            for r, s in zip(real, case.spatial):
                num = num * s + r
            out[index == flat] = num + 1
    return out


@given(case=general_cases(bases=("position",), candidates=("all", "grid"), dims=(1, 2, 3)))
def test_position_table_equals_generic_selection(case: GeneralCase) -> None:
    """cr.position_table selects, slot by slot, the tokens the naive oracle's score-then-select picks."""
    c = case.config
    geo = resolve_geometry(c, case.spatial)
    index, _ = cr.position_table(geo, c, torch.device("cpu"), _grid_subset(case))
    got = _real_index(index, case, c)
    want = _oracle_table(case, c)
    if not torch.equal(got, want):
        row = int((got != want).any(-1).nonzero()[0])
        raise AssertionError(
            tolerance.describe(
                "test_position_table_equals_generic_selection",
                case,
                "table differs from the oracle's selection",
                [f"query {row}: table {got[row].tolist()} vs oracle {want[row].tolist()} (token + 1, 0 = padding)"],
            )
        )


def _grid_subset(case: GeneralCase) -> torch.Tensor | None:
    c = case.config
    if c.candidates != "grid":
        return None
    r = c.num_candidates or 1
    axes = [  # the research code's float32 truncation, or rounding (ConvNNConfig, candidates)
        torch.linspace(c.grid_margin, s - 1 - c.grid_margin, r, dtype=torch.float32).long().unique()
        if c.grid_rounding == "truncate"
        else torch.linspace(c.grid_margin, s - 1 - c.grid_margin, r, dtype=F64).round().long().unique()
        for s in case.spatial
    ]
    pts = torch.cartesian_prod(*axes).reshape(-1, len(case.spatial))
    flat = torch.zeros(pts.shape[0], dtype=torch.long)
    for a, s in enumerate(case.spatial):
        flat = flat * s + pts[:, a]
    return flat.sort().values


@given(case=conv_cases(dims=(1, 2, 3)))
def test_offset_slots_are_conv_taps(case: ConvCase) -> None:
    """In the exact conv configuration, slot t of every query is conv tap t (row-major kernel offsets times dilation)."""
    c = case.config()
    geo = resolve_geometry(c, case.spatial)
    index, _ = cr.position_table(geo, c, torch.device("cpu"))
    padded = torch.tensor(geo.padded)
    strides = [math.prod(geo.padded[a + 1 :]) for a in range(geo.ndim)]
    coords = torch.stack([(index // s) % p for s, p in zip(strides, padded.tolist())], dim=-1)  # (Nq, k, d)
    taps = torch.tensor(list(itertools.product(*(range(k) for k in geo.kernel)))) * torch.tensor(geo.dilation)
    rel = coords - coords[:, :1]
    if not torch.equal(rel, (taps - taps[0]).expand_as(rel)):
        raise AssertionError(
            tolerance.describe(
                "test_offset_slots_are_conv_taps",
                case,
                "slot offsets are not the kernel taps in row-major order",
                [f"first query: {rel[0].tolist()} vs taps {taps.tolist()}"],
            )
        )


@pytest.mark.parametrize("device", DEVICES)
@given(case=general_cases(bases=("position",), candidates=("all",), dims=(1, 2)))
def test_neighbours_match_position_table(impl: Implementation, device: str, case: GeneralCase) -> None:
    """impl.neighbours in the position basis returns the table's neighbours (as sets) with the table's scores."""
    c = case.config
    skip_outside(impl, c, form="image", dtype=F64, device=device, spatial_dims=len(case.spatial), shapes=case.shapes())
    if not impl.capabilities.neighbours:
        pytest.skip(f"{impl.name}: offers no neighbours()")
    out = impl.neighbours(case.tensors(F64, device)["x"], c)  # type: ignore[arg-type]
    assert out is not None, f"{impl.name} declares neighbours=True but returned None"
    index, score = (t.cpu() for t in out)
    geo = resolve_geometry(c, case.spatial)
    t_index, t_score = cr.position_table(geo, c, torch.device("cpu"))
    index = index.reshape(t_index.shape) if index.dim() == 2 else index[0]
    score = score.reshape(t_score.shape) if score.dim() == 2 else score[0]
    same = index.sort(-1).values == t_index.sort(-1).values
    if not bool(same.all()):
        row = int((~same).any(-1).nonzero()[0])
        raise AssertionError(
            tolerance.describe(
                "test_neighbours_match_position_table",
                case,
                "neighbour sets differ from the table",
                [f"query {row}: {sorted(index[row].tolist())} vs {sorted(t_index[row].tolist())}"],
            )
        )
    tolerance.check(
        "test_neighbours_match_position_table",
        score.sort(-1).values,
        t_score.sort(-1).values,
        t_score.sort(-1).values,
        dtype=F64,
        reduction=1,
        case=case,
        what="scores",
    )


@given(
    b=st.integers(1, 2),
    nq=st.integers(1, 9),
    k=st.integers(1, 5),
    groups=st.integers(1, 3),
    cg_in=st.integers(1, 3),
    cg_out=st.integers(1, 3),
    bias=st.booleans(),
    dtype=dtypes,
    seed=st.integers(0, 2**31 - 1),
)
def test_aggregate_as_conv1d_equals_apply_kernel(
    b: int, nq: int, k: int, groups: int, cg_in: int, cg_out: int, bias: bool, dtype: torch.dtype, seed: int
) -> None:
    """The research code's gather-then-Conv1d(kernel=k, stride=k) equals the main aggregation apply_kernel."""
    c_in, c_out = groups * cg_in, groups * cg_out
    nb = randn((b, nq, k, c_in), seed, dtype)
    w = randn((c_out, cg_in, k), seed + 1, dtype)
    bb = randn((c_out,), seed + 2, dtype) if bias else None
    kind = "full" if groups == 1 else "grouped"
    cand = cr.aggregate_as_conv1d(nb, w, bb, groups)
    base = cr.apply_kernel(nb, w, bb, kind, groups).transpose(1, 2)
    gold = cr.apply_kernel(nb.double(), w.double(), None if bb is None else bb.double(), kind, groups).transpose(1, 2)
    case = {"b": b, "nq": nq, "k": k, "groups": groups, "c_in": c_in, "c_out": c_out, "bias": bias, "seed": seed}
    tolerance.check(
        "test_aggregate_as_conv1d_equals_apply_kernel", cand, base, gold, dtype=dtype, reduction=k * cg_in, case=case
    )
