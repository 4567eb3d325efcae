"""Blocks and chunks: every blocked or chunked loop of the reference crosses its boundaries.

The suite's inputs are small (at most a few dozen tokens), and at the reference's real sizes a
map of that size fits one query chunk, one gather block, one column block of the shifted route,
one tile of the engine and one chunk of the position table: a bug at a block boundary (a block
reading the first block's rows, an offset dropped) would pass every property. Here the key
properties run again under `convnn_ref.testing.small_blocks` (a few rows, columns or queries a
block, odd sizes so that the last block is partial), and a few cases run at the real sizes: a
map larger than 33x33 through the position table and the shifted route, and more than a
thousand queries through one call of the gather route's blocked aggregation.

``small_blocks`` changes only how the reference runs (the function is the same); on another
implementation these reruns repeat its properties.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import convnn_ref as cr
from convnn_ref.testing import BlockSizes, block_sizes, naive_convnn, small_blocks
from suites import tolerance
from suites.equivalence import test_gradients, test_oracle, test_position_table
from suites.equivalence._common import skip_outside
from suites.implementations import Implementation, Shapes
from suites.inputs import randn

#: The properties rerun with small blocks: every route (gather with and without autograd, dense,
#: shifted, the position table with its chunks, selection chunks) on every configuration.
PROPERTIES = (
    test_oracle.test_image_form_vs_oracle,
    test_oracle.test_position_basis_vs_oracle_all_dtypes,
    test_oracle.test_random_candidates_vs_oracle,
    test_oracle.test_attention_form_vs_oracle,
    test_gradients.test_conv_gradients_every_dtype,
    test_gradients.test_gradients_vs_oracle,
    test_position_table.test_neighbours_match_position_table,
)


@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.__name__)
def test_properties_hold_with_small_blocks(impl: Implementation, prop) -> None:  # type: ignore[no-untyped-def]
    """The property holds with every block and chunk of the reference a few rows wide."""
    with small_blocks() as sizes:
        assert block_sizes() == sizes
        prop(impl=impl, device="cpu")
    assert block_sizes() != sizes, "small_blocks() left its sizes in effect"


def test_small_blocks_split_the_suites_maps() -> None:
    """The small sizes split a 6x6 map: several query chunks, gather blocks, column blocks and
    table chunks (so the reruns above do cross the boundaries)."""
    with small_blocks() as sizes:
        assert isinstance(sizes, BlockSizes)
        assert sizes.max_chunk_queries is not None and sizes.max_chunk_queries < 36
        assert sizes.gather_block_bytes // (9 * 2 * 8) < 36  # k = 9 slots of 2 float64 channels
        assert max(sizes.min_block_columns, sizes.column_block_bytes // (9 * 2 * 8)) < 36
        assert sizes.table_chunk_bytes // (8 * 36 * 4) < 36
        assert sizes.tile_queries < 36 and sizes.tile_columns < 36


def _shapes(x: torch.Tensor) -> Shapes:
    return Shapes(form="image", batch=x.shape[0], channels=x.shape[1], spatial=tuple(x.shape[2:]))


def test_position_table_beyond_33x33_at_real_sizes(impl: Implementation) -> None:
    """A 40x40 map (1600 queries and candidates) in the exact conv configuration, float32 with 64
    channels: the position table runs in 3 chunks (655 queries) and the shifted route in 2 column
    blocks (910 columns) at the reference's real sizes; the output equals F.conv2d."""
    config = cr.conv_config((3, 3), spatial_dims=2, padding=1)
    x = randn((1, 64, 40, 40), 1, torch.float32)
    skip_outside(impl, config, form="image", dtype=torch.float32, device="cpu", spatial_dims=2, shapes=_shapes(x))
    w = randn((8, 64, 3, 3), 2, torch.float32)
    b = randn((8,), 3, torch.float32)
    cand = impl.convnn(x, w.reshape(8, 64, 9), b, config)
    base = F.conv2d(x, w, b, padding=1)
    gold = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    tolerance.check(
        "test_position_table_beyond_33x33_at_real_sizes", cand, base, gold, dtype=torch.float32, reduction=64 * 9,
        case={"x": (1, 64, 40, 40), "kernel": (3, 3), "padding": 1, "seeds": (1, 2, 3)},
    )


def test_position_table_of_a_34x34_map_matches_the_oracle() -> None:
    """The reference's position table of a 34x34 map (euclidean metric, 5 neighbours: not the
    shifted route) at the real chunk size, against the oracle on the same map (two channels)."""
    config = cr.ConvNNConfig(k=5, basis="position", metric="euclidean", kernel="full")
    x = randn((1, 2, 34, 34), 4, torch.float64)
    w = randn((3, 2, 5), 5, torch.float64)
    cand = cr.convnn(x, w, None, config)
    gold = naive_convnn(x, w, None, config)
    tolerance.check(
        "test_position_table_of_a_34x34_map_matches_the_oracle", cand, gold, gold, dtype=torch.float64,
        reduction=5 * 2 + 3, case={"x": (1, 2, 34, 34), "config": config, "seeds": (4, 5)},
    )


def test_more_than_a_thousand_queries_through_one_call(impl: Implementation) -> None:
    """1156 queries (34x34) in the feature basis with the full kernel and 48 float64 channels:
    without autograd the reference aggregates in gather blocks of its real size (303 queries), so
    the call crosses three block boundaries; the output equals the same call with autograd on
    (the gather route without blocks), which the oracle properties check."""
    config = cr.ConvNNConfig(k=9, basis="feature", similarity="cosine", kernel="full")
    x = randn((1, 48, 34, 34), 6, torch.float64)
    skip_outside(impl, config, form="image", dtype=torch.float64, device="cpu", spatial_dims=2, shapes=_shapes(x))
    w = randn((4, 48, 9), 7, torch.float64)
    rows = block_sizes().gather_block_bytes // (9 * 48 * 8)
    assert rows < 34 * 34 // 2, rows
    blocked = impl.convnn(x, w, None, config)
    unblocked = impl.convnn(x, w.clone().requires_grad_(True), None, config).detach()
    tolerance.check(
        "test_more_than_a_thousand_queries_through_one_call", blocked, unblocked, unblocked, dtype=torch.float64,
        reduction=9 * 48, case={"x": (1, 48, 34, 34), "config": config, "seeds": (6, 7)},
    )


try:
    import faiss  # noqa: F401

    HAVE_FAISS = True
except ImportError:
    HAVE_FAISS = False


@pytest.mark.skipif(not HAVE_FAISS, reason="faiss is not installed (pip install faiss-cpu)")
def test_engine_tiles_with_small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The selection engine's fused search forced (``CONVNN_SELECT_ENGINE=faiss``), its score
    tiles 5 queries x 7 columns: the feature-basis oracle property holds across the tiles."""
    from suites.implementations import ReferenceImplementation

    monkeypatch.setenv("CONVNN_SELECT_ENGINE", "faiss")
    with small_blocks():
        test_oracle.test_image_form_vs_oracle(impl=ReferenceImplementation(), device="cpu")
