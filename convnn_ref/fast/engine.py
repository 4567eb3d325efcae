"""The selection engine: step 2 of the gather route by a fused k-NN search (faiss's heaps fed
tile by tile), without a score block, under the reference's rule.

The fused search (`_search`) ranks every candidate column of a query by the same
order-equivalent scores as `ranking.rank_scores` (an inner product: raw queries against unit keys
for cosine, raw keys for dot and scaled dot; for euclidean the query ``(2q, -1)`` against the key
``(k, |k|^2)``, i.e. ``2 q.k - |k|^2``), computed in float32 one cache-sized tile at a time by
PyTorch's matrix product, each tile taken in by faiss's binary heaps (``faiss-cpu``, imported
lazily; C++, one heap per query), and keeps the best ``ranked + 1`` (one more when a forced own
column must be skipped). (faiss's own ``knn`` does the same with its bundled BLAS: 10-50% slower
here.) Its float32 scores differ from the exact ones by at most ``delta`` per query, a bound on
the rounding of a float32 inner product of length D in any summation order (and, for float64
inputs, of the inputs' rounding to float32):
``delta = (D + 8) * eps32 * sum_i |q_i k_i|``, with ``sum_i |q_i k_i| <= |q| max|k|``. Then:

- **the set**: when the engine's k-th and (k+1)-th scores are more than ``2 delta`` apart, its
  first k are exactly the k best candidates (every other candidate scores below them in exact
  arithmetic too). Otherwise (a tie or a near-tie straddles the k-th place, exact ties included:
  the heaps leave them in any order) the query is *ambiguous* and is selected again on the pure
  PyTorch path (`ranking.rank_scores` over its whole row, then `select.select` with the tie rule);
- **the order**: where two neighbouring slots of a query are within ``2 delta``, the query's k
  selected scores are recomputed in float64 from the very operands the pure path ranks (unit keys
  for cosine), and its slots sorted by that score, equal scores by lower index (the tie rule);
  elsewhere the engine's order is the exact order;
- the candidate map, the forced own slot and everything after ranking are `select.assemble`,
  shared with `select.select`.

So a selection the engine makes is one the reference's rule makes: the exact top-k set, ordered
by score with ties to the lower index. The selected scores that rho needs are recomputed with
autograd by the route, as on the pure path.

Second, lighter use of faiss (`heap_topk`): on the pure path, the top-(k+1) shortlist of each
row of the reference's own float32 score block is found by faiss's binary heaps instead of
``torch.topk`` (about twice as fast); `select.topk_lowest_index` applies the tie rule to it as
to ``torch.topk``'s, so the selection is bit for bit the pure path's.

When each is used: setting ``CONVNN_SELECT_ENGINE`` (read at every call):

- ``auto`` (default), where faiss is installed, on CPU tensors whose compute dtype is float32
  (float32 inputs; float16 and bfloat16, which the token routes compute in float32), finite, for
  at most `AUTO_MAX_SLOTS` slots: the fused search (`wanted`) from `AUTO_MIN_CANDIDATES`
  candidate columns on, the heaps below that (and with masks); each where it won in this
  project's measurements (docs/benchmarks.md);
- ``faiss``: the fused search whenever it can express the call, whatever its size, float64
  included (the set is still decided exactly, the order by float64 scores), else the pure path;
  the suite forces it to test the engine on small inputs. faiss missing is an error then;
- ``heap``: the heaps on every float32 score block (an error without faiss);
- ``torch``: neither (``torch.topk`` on the score blocks).

The fused search never runs with a mask (``allowed``), NaN or infinite inputs (the pure path
applies the NaN rule), inputs whose float32 products could overflow past the bound, slot order
by offset, fewer than ``ranked + 1`` candidates besides the own token, or off the CPU; the heaps
never with NaN or infinite inputs. The route then selects on the pure path.
"""

from __future__ import annotations

import os
from types import ModuleType

import torch

from convnn_ref import select
from convnn_ref.fast.plan import block_sizes, chunk_size
from convnn_ref.fast.ranking import rank_scores, row_norms
from convnn_ref.select import Neighbours, SelectionRule

#: The environment variable that chooses the engine, and its values.
ENGINE_ENV = "CONVNN_SELECT_ENGINE"
ENGINES = ("auto", "faiss", "heap", "torch")

#: ``auto`` takes faiss from this many candidate columns on (below it per-call overhead loses).
AUTO_MIN_CANDIDATES = 2048

#: ``auto`` takes faiss for at most this many slots (faiss keeps a heap per query).
AUTO_MAX_SLOTS = 64

_EPS32 = torch.finfo(torch.float32).eps
#: Absolute slack for products below float32's normal range (each rounds by at most 2^-149).
_UNDERFLOW = 2.0**-120
#: Bound on |q| max|k| beyond which float32 products could overflow: the engine declines.
_MAX_MAGNITUDE = 1e30

_faiss: ModuleType | bool | None = False  # False: not tried yet; None: not installed


def setting() -> str:
    """The engine setting now in force (``CONVNN_SELECT_ENGINE``; ``auto`` when unset)."""
    value = os.environ.get(ENGINE_ENV, "").strip().lower() or "auto"
    if value not in ENGINES:
        raise ValueError(f"{ENGINE_ENV}={value!r} is not one of {ENGINES}")
    return value


def faiss_module() -> ModuleType | None:
    """faiss, imported on first use; None when it is not installed."""
    global _faiss
    if _faiss is False:
        try:
            import faiss  # optional: imported on first use

            _faiss = faiss
        except ImportError:
            _faiss = None
    return _faiss  # type: ignore[return-value]


def wanted(queries: torch.Tensor, rule: SelectionRule, m: int, masked: bool) -> bool:
    """Whether the engine selects for this call (see the module docstring)."""
    mode = setting()
    if mode not in ("auto", "faiss") or masked or rule.offsets is not None or queries.device.type != "cpu":
        return False
    if queries.dtype not in (torch.float32, torch.float64):
        return False
    width = _width(rule)
    if rule.ranked < 1 or width > m or queries.shape[1] == 0:
        return False
    if mode == "auto":
        if queries.dtype != torch.float32 or m < AUTO_MIN_CANDIDATES or width > AUTO_MAX_SLOTS:
            return False
        return faiss_module() is not None
    if faiss_module() is None:
        raise RuntimeError(f"{ENGINE_ENV}=faiss but faiss is not installed (pip install faiss-cpu)")
    return True


def heap_wanted(scores_dtype: torch.dtype, device: torch.device, rule: SelectionRule) -> bool:
    """Whether the pure path's top-(k+1) shortlist is found by faiss's heaps (`heap_topk`) instead
    of ``torch.topk``: ``heap`` forces it (float32 score blocks on the CPU); ``auto`` takes it
    there too, for at most `AUTO_MAX_SLOTS` slots, when faiss is installed (the fused search,
    `wanted`, is tried first)."""
    mode = setting()
    if mode not in ("auto", "heap") or device.type != "cpu" or scores_dtype != torch.float32:
        return False
    if mode == "auto" and rule.ranked + 1 > AUTO_MAX_SLOTS:
        return False
    if faiss_module() is None:
        if mode == "heap":
            raise RuntimeError(f"{ENGINE_ENV}=heap but faiss is not installed (pip install faiss-cpu)")
        return False
    return True


def heap_topk(scores: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(scores, n, dim=-1, sorted=True)`` by faiss's binary heaps (one per row, C++):
    the n largest values of each row of a float32 CPU block without NaN, descending, equal values
    in any order (`select.topk_lowest_index` applies the tie rule). A heap never takes an entry
    at -inf (nor at -FLT_MAX, its empty value): a row with fewer than n larger entries keeps empty
    places, returned as -inf with index -1, so that its n-th value is -inf as ``torch.topk``'s
    would be, and `topk_lowest_index` sees a tie there and sorts the row exactly."""
    faiss = faiss_module()
    assert faiss is not None
    m = scores.shape[-1]
    rows = scores.reshape(-1, m).contiguous()
    values = torch.empty(rows.shape[0], n, dtype=torch.float32)
    indices = torch.empty(rows.shape[0], n, dtype=torch.int64)
    if rows.shape[0]:
        faiss.omp_set_num_threads(torch.get_num_threads())
        heaps = faiss.float_minheap_array_t()  # a min-heap of size n keeps the n largest
        heaps.nh, heaps.k = rows.shape[0], n
        heaps.val, heaps.ids = faiss.swig_ptr(values.numpy()), faiss.swig_ptr(indices.numpy())
        heaps.heapify()
        heaps.addn(m, faiss.swig_ptr(rows.numpy()), 0, 0, rows.shape[0])
        heaps.reorder()
        values.masked_fill_(indices < 0, float("-inf"))
    return values.view(*scores.shape[:-1], n), indices.view(*scores.shape[:-1], n)


def _width(rule: SelectionRule) -> int:
    """Neighbours asked of faiss per query: ranked + 1, and one more to skip a forced own column."""
    own = rule.own_columns is not None and bool((rule.own_columns >= 0).any())
    return rule.ranked + 1 + int(own)


def select_all(
    queries: torch.Tensor,
    ranked: torch.Tensor,
    stats: torch.Tensor | None,
    rule: SelectionRule,
    similarity: str,
    budget: int,
) -> Neighbours | None:
    """Step 2 for every query at once: queries ``(B, Nq, D)``, ranked keys and stats from
    `ranking.rank_keys` over the candidate columns ``(B, M, D)``, in the compute dtype, all
    finite. Returns `select.select`'s result for all queries (``score``: the selection scores,
    NaN in a forced own slot), or None when the engine declines (magnitudes out of its bound)."""
    faiss = faiss_module()
    assert faiss is not None
    b, nq = queries.shape[:2]
    q32, k32 = queries.to(torch.float32), ranked.to(torch.float32)  # any layout: tiles read views
    kmax = row_norms(k32).amax(dim=-1, keepdim=True)  # (B, 1)
    qnorm = row_norms(q32)  # (B, Nq)
    if similarity == "euclidean":
        assert stats is not None
        s32 = stats.to(torch.float32)
        magnitude = 2 * qnorm * kmax + s32.amax(dim=-1, keepdim=True)
        q32 = torch.cat([2 * q32, q32.new_full((b, nq, 1), -1.0)], dim=-1)
        k32 = torch.cat([k32, s32[..., None]], dim=-1)
    else:
        magnitude = qnorm * kmax
    if not bool(torch.isfinite(magnitude).all()) or float(magnitude.max()) > _MAX_MAGNITUDE:
        return None
    length = q32.shape[-1]
    delta = (length + 8) * _EPS32 * magnitude.double() + length * _UNDERFLOW  # (B, Nq)

    width = _width(rule)
    vals, cols = _search(q32, k32, width)
    r = rule.ranked
    if width > r + 1:  # skip the forced own column (or, where it is not among them, the last)
        assert rule.own_columns is not None
        is_own = cols == rule.own_columns[None, :, None]
        keep = is_own.to(torch.uint8).argsort(dim=-1, stable=True)[..., : r + 1]
        vals, cols = vals.gather(-1, keep), cols.gather(-1, keep)
    vals64 = vals.double()
    ambiguous = ~(vals64[..., r - 1] - vals64[..., r] > 2 * delta)  # (B, Nq); NaN counts as ambiguous
    values, columns = vals64[..., :r].to(queries.dtype), cols[..., :r].contiguous()
    if r >= 2:
        close = ~(vals64[..., :-2] - vals64[..., 1:-1] > 2 * delta[..., None])
        reorder = close.any(dim=-1) & ~ambiguous
        if bool(reorder.any()):
            _exact_order(queries, ranked, stats, similarity, reorder, values, columns)
    nb = select.assemble(values, columns, rule)
    if bool(ambiguous.any()):
        _select_rows(queries, ranked, stats, rule, similarity, ambiguous, nb, budget)
    return nb


def _search(queries: torch.Tensor, keys: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n largest inner products of every query ``(B, Nq, D)`` with the keys ``(B, M, D)``
    (float32, any layout): ``(values, columns)`` ``(B, Nq, n)``, descending, equal values in any
    order. Tile by tile, one matrix product (PyTorch's BLAS) into a reused buffer, then faiss's
    heaps (C++, one per query) take the tile's columns in; no score block beyond one tile."""
    faiss = faiss_module()
    assert faiss is not None
    faiss.omp_set_num_threads(torch.get_num_threads())
    b, nq = queries.shape[:2]
    m = keys.shape[1]
    values = torch.empty(b, nq, n, dtype=torch.float32)
    columns = torch.empty(b, nq, n, dtype=torch.int64)
    # tiles of queries x candidate columns (512 x 1024 float32 by default: 2 MiB) stay in cache
    # between the matrix product that writes them and the heaps that read them
    tile_queries, tile_columns = block_sizes().tile_queries, block_sizes().tile_columns
    tile = torch.empty(min(nq, tile_queries) * min(m, tile_columns), dtype=torch.float32)
    for i in range(b):
        heaps = faiss.float_minheap_array_t()  # a min-heap of size n keeps the n largest
        heaps.nh, heaps.k = nq, n
        heaps.val, heaps.ids = faiss.swig_ptr(values[i].numpy()), faiss.swig_ptr(columns[i].numpy())
        heaps.heapify()
        keys_t = keys[i].t()
        for q0 in range(0, nq, tile_queries):
            q1 = min(nq, q0 + tile_queries)
            for k0 in range(0, m, tile_columns):
                k1 = min(m, k0 + tile_columns)
                block = torch.mm(queries[i, q0:q1], keys_t[:, k0:k1], out=tile[: (q1 - q0) * (k1 - k0)].view(q1 - q0, k1 - k0))
                heaps.addn(k1 - k0, faiss.swig_ptr(block.numpy()), k0, q0, q1 - q0)
        heaps.reorder()
    values.masked_fill_(columns < 0, float("-inf"))
    return values, columns


def _exact_order(
    queries: torch.Tensor,
    ranked: torch.Tensor,
    stats: torch.Tensor | None,
    similarity: str,
    rows: torch.Tensor,
    values: torch.Tensor,
    columns: torch.Tensor,
) -> None:
    """Reorder the slots of ``rows`` ``(B, Nq)`` bool in place by their rank scores recomputed in
    float64 from the pure path's operands, equal scores by lower column (the tie rule)."""
    bi, qi = rows.nonzero(as_tuple=True)
    cols = columns[bi, qi]  # (n, r)
    keys = ranked[bi[:, None], cols].double()  # (n, r, D)
    exact = (keys * queries[bi, qi].double()[:, None, :]).sum(-1)
    if similarity == "euclidean":
        assert stats is not None
        exact = 2 * exact - stats[bi[:, None], cols].double()
    cols, by_column = cols.sort(dim=-1)
    exact = exact.gather(-1, by_column)
    exact, order = exact.sort(dim=-1, descending=True, stable=True)
    columns[bi, qi] = cols.gather(-1, order)
    values[bi, qi] = exact.to(values.dtype)


def _select_rows(
    queries: torch.Tensor,
    ranked: torch.Tensor,
    stats: torch.Tensor | None,
    rule: SelectionRule,
    similarity: str,
    rows: torch.Tensor,
    nb: Neighbours,
    budget: int,
) -> None:
    """Select the queries ``rows`` ``(B, Nq)`` bool again on the pure path (their whole score rows,
    `select.select`), in place into ``nb``, within the memory budget."""
    m = ranked.shape[1]
    step = chunk_size(1, m, queries.element_size(), budget)
    for i in range(queries.shape[0]):
        which = rows[i].nonzero()[:, 0]
        for s in range(0, which.shape[0], step):
            part = which[s : s + step]
            block = rank_scores(queries[i : i + 1, part], ranked[i : i + 1], None if stats is None else stats[i : i + 1], similarity)
            again = select.select(block, rule, part)
            nb.index[i, part] = again.index[0]
            nb.score[i, part] = again.score[0].to(nb.score.dtype)
