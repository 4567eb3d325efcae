"""Step 2 of ConvNN: which candidates fill each query's k slots, and in which order.

`select` is the one place where the rules of step 2 live (`ConvNNConfig`, "Step 2"; the
conventions at the edges are in docs/semantics.md): k, the candidate subset, forced self,
masks that leave slots empty, the tie rule and the slot order. `selection_rule` resolves, once
per call, what does not depend on the scores (k, with ``None`` meaning every candidate; the
own tokens; the candidate map). Every route of the reference selects through `select`: the
position table (`table.py`) and the gather and dense routes of `convnn_ref.fast`.

Tie rule (the only one in this project): among equal scores, the candidate with the lower
index ranks first. ``torch.topk`` leaves the order of ties unspecified (and CPU and CUDA
differ), so `topk_lowest_index` canonicalises its result and falls back to a stable sort on
the rows where a tie straddles the k-th place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from convnn_ref.config import ConvNNConfig
from convnn_ref.validation import check_k


@dataclass(frozen=True)
class Neighbours:
    """The outcome of steps 1 and 2.

    index ``(B, Nq, k)``, or ``(Nq, k)`` when shared by the batch (position basis): int64 into
    the candidate tokens (the padded grid, row-major, for image input).
    score ``(B, Nq, k)`` or ``(Nq, k)``: the selected scores (autograd flows through them for
    feature and hybrid scores). valid: bool like ``index``, or None when every slot is filled.
    """

    index: Tensor
    score: Tensor
    valid: Tensor | None


@dataclass(frozen=True)
class SelectionRule:
    """What step 2 needs besides the scores, resolved once per call by `selection_rule`.

    k: slots per query. candidates ``(M,)`` int64: the token of each candidate column,
    ascending; None when column j is token j. own ``(Nq,)``: each query's own token
    (``self_slot='forced'``), None otherwise; own_columns ``(Nq,)``: its candidate column, -1
    when it is not a candidate. offsets: ``(token positions (T, d), query positions (Nq, d))``
    float64 when slots are ordered by offset, None for rank order. what: the candidate set
    in words, for error messages.
    """

    k: int
    candidates: Tensor | None
    own: Tensor | None
    own_columns: Tensor | None
    offsets: tuple[Tensor, Tensor] | None
    what: str

    @property
    def ranked(self) -> int:
        """Slots filled by ranking: k, less the forced own slot."""
        return self.k - 1 if self.own is not None else self.k

    def keeps_every_candidate(self, m: int) -> bool:
        """True when k covers all ``m`` candidate columns and no own slot is forced: every
        allowed candidate is selected, and only slot order (none for the sum kernel) is left."""
        return self.own is None and self.k >= m

    def columns(self, tokens: Tensor, dim: int = 1) -> Tensor:
        """``tokens`` restricted to the candidate columns along ``dim`` (unchanged for all tokens)."""
        return tokens if self.candidates is None else tokens.index_select(dim, self.candidates)

    def in_columns(self) -> SelectionRule:
        """The same rule over the candidate columns as tokens (for routes that aggregate over the
        columns): index values are then columns. Every own token must be a candidate."""
        if self.candidates is None:
            return self
        if self.own_columns is not None and bool((self.own_columns < 0).any()):
            raise ValueError("in_columns: a forced own token is not among the candidates")
        return replace(self, candidates=None, own=self.own_columns, offsets=None)


def selection_rule(
    config: ConvNNConfig,
    num_tokens: int,
    *,
    candidates: Tensor | None = None,
    own: Tensor | None = None,
    offsets: tuple[Tensor, Tensor] | None = None,
    what: str = "candidates",
) -> SelectionRule:
    """Resolve k and check it against the candidate set (never a silent clamp).

    num_tokens: the size of the token list the index values point into; candidates: the
    candidate subset ``(M,)`` or None for every token; own ``(Nq,)``: the queries' own tokens,
    required with ``self_slot='forced'``; offsets: see `SelectionRule`. ``config.k = None``
    selects every candidate: k is M here, and only here.
    """
    m = num_tokens if candidates is None else candidates.shape[0]
    if candidates is not None and what == "candidates":
        what = f"{config.candidates} candidates"
    k = m if config.k is None else config.k
    own_columns = None
    if config.self_slot == "forced":
        if own is None:
            raise ValueError("self_slot='forced' needs the queries' own tokens")
        own_columns = _columns_of(own, candidates, m)
        # The query's own token takes slot 0; the others need k - 1 of the rest (the fewest
        # other candidates any query has: m - 1 when some own token is a candidate).
        others = m - int(bool((own_columns >= 0).any()))
        what = f"{what} besides the query itself"
        check_k(k - 1, others, what)
    else:
        own = None
        check_k(k, m, what)
    return SelectionRule(k, candidates, own, own_columns, offsets, what)


def _columns_of(tokens: Tensor, candidates: Tensor | None, m: int) -> Tensor:
    """Candidate column of each token, -1 when it is not a candidate."""
    if candidates is None:
        return tokens
    size = max(int(tokens.max()), int(candidates.max())) + 1
    lookup = torch.full((size,), -1, dtype=torch.int64, device=tokens.device)
    lookup[candidates] = torch.arange(m, device=tokens.device)
    return lookup[tokens]


def select(
    scores: Tensor,
    rule: SelectionRule,
    rows: slice | Tensor = slice(None),
    *,
    allowed: Tensor | None = None,
    lattice: Tensor | None = None,
    topk: TopK | None = None,
) -> Neighbours:
    """Step 2 for a block of queries: the k slots of each.

    scores ``(..., c, M)``: the queries ``rows`` (a slice, or their indices) against every candidate column, larger =
    closer (any order-preserving transform of the scores selects the same). allowed: bool
    broadcastable to ``scores`` or None: masks (causal, key padding); a disallowed candidate
    never fills a slot, and a query with fewer than k allowed candidates leaves its last slots
    empty. lattice ``(c, M)`` bool or None: each query's dilation lattice (position basis):
    candidates off it are no candidates of that query, and k must fit every query's lattice.

    topk: the shortlist of `topk_lowest_index` (None: ``torch.topk``).

    Returns index ``(..., c, k)`` into the token list (through the candidate map), the scores
    of the selected columns (for selection only; a forced own token that is no candidate has
    NaN: callers recompute the selected scores from the index) and valid (None when no mask
    was given).
    """
    c, m = scores.shape[-2:]
    device = scores.device
    ok = allowed
    not_own = None
    own_columns = None
    if rule.own is not None:
        assert rule.own_columns is not None
        own_columns = rule.own_columns[rows]
        not_own = torch.ones(c, m, dtype=torch.bool, device=device)
        present = own_columns >= 0
        not_own[torch.arange(c, device=device)[present], own_columns[present]] = False
        ok = not_own if ok is None else ok & not_own
    if lattice is not None:
        usable = lattice if not_own is None else lattice & not_own
        if c:
            check_k(rule.ranked, int(usable.sum(dim=-1).min()), f"{rule.what} on the query's dilation lattice")
        ok = lattice if ok is None else ok & lattice
    values, columns = topk_lowest_index(scores, rule.ranked, ok, topk=topk)
    valid = None
    if allowed is not None:
        assert ok is not None
        valid = ok.expand(scores.shape).gather(-1, columns)
    own_score = None
    if own_columns is not None:
        lead = columns.shape[:-2]
        own_score = scores.gather(-1, own_columns.clamp_min(0).expand(*lead, c)[..., None])[..., 0]
    return assemble(values, columns, rule, rows, valid=valid, own_score=own_score)


def assemble(
    values: Tensor,
    columns: Tensor,
    rule: SelectionRule,
    rows: slice | Tensor = slice(None),
    *,
    valid: Tensor | None = None,
    own_score: Tensor | None = None,
) -> Neighbours:
    """The end of step 2 once each query's ranked slots are known: columns ``(..., c, ranked)``
    (best first, the tie rule applied) and their selection scores ``values``. Maps the columns
    to tokens through the candidate map, puts the forced own token into slot 0 (its selection
    score ``own_score`` ``(..., c)``, NaN where it is no candidate or not given), and orders the
    slots by offset when the rule says so. `select` ends here; so does a selection engine that
    ranks without a score block (`convnn_ref.fast.engine`)."""
    index = columns if rule.candidates is None else rule.candidates[columns]
    if rule.own is not None:
        assert rule.own_columns is not None
        own, own_columns = rule.own[rows], rule.own_columns[rows]
        lead, c = index.shape[:-2], index.shape[-2]
        missing = (own_columns < 0).expand(*lead, c)
        if own_score is None:
            own_score = values.new_full((*lead, c), float("nan"))
        own_score = own_score.expand(*lead, c).masked_fill(missing, float("nan"))
        index = torch.cat([own.expand(*lead, c)[..., None], index], dim=-1)
        values = torch.cat([own_score[..., None].to(values.dtype), values], dim=-1)
        if valid is not None:
            valid = torch.cat([valid.new_ones((*valid.shape[:-1], 1)), valid], dim=-1)
    if rule.offsets is not None:
        token_pos, query_pos = rule.offsets
        order = order_by_offset(token_pos[index] - query_pos[rows][..., None, :])
        index, values = index.gather(-1, order), values.gather(-1, order)
        valid = None if valid is None else valid.gather(-1, order)
    return Neighbours(index, values, valid)


def selected_mask(
    scores: Tensor, rule: SelectionRule, rows: slice = slice(None), *, allowed: Tensor | None = None
) -> Tensor | None:
    """The selected set of each query as a bool mask over the candidate columns, for
    aggregations in which slot order plays no part (the sum kernel). ``rule`` must have the
    columns as its tokens (`SelectionRule.in_columns`). None: every column of every query
    (k covers every candidate, no mask, no forced self: nothing to select)."""
    if rule.candidates is not None:
        raise ValueError("selected_mask needs a rule over the candidate columns (SelectionRule.in_columns)")
    if rule.keeps_every_candidate(scores.shape[-1]):
        return allowed  # every allowed candidate fills a slot
    nb = select(scores, rule, rows, allowed=allowed)
    keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    index = nb.index.expand(*scores.shape[:-1], nb.index.shape[-1])
    keep.scatter_(-1, index, True if nb.valid is None else nb.valid)
    if rule.own is not None:  # an empty slot may name the own column again: the own slot wins
        keep[..., torch.arange(scores.shape[-2], device=scores.device), rule.own[rows]] = True
    return keep


#: A top-n shortlist: ``(scores (..., M), n) -> (values, indices)`` as ``torch.topk(scores, n,
#: dim=-1, sorted=True)``: the n largest values of each row, descending, equal values in any order.
TopK = Callable[[Tensor, int], tuple[Tensor, Tensor]]


def _torch_topk(scores: Tensor, n: int) -> tuple[Tensor, Tensor]:
    values, indices = scores.topk(n, dim=-1, sorted=True)
    return values, indices


def topk_lowest_index(scores: Tensor, k: int, allowed: Tensor | None = None, *, topk: TopK | None = None) -> tuple[Tensor, Tensor]:
    """The k best entries of each row, best first.

    Ranking (docs/semantics.md, "NaN and infinities"): allowed entries before disallowed ones;
    among them NaN first (as ``torch.topk`` and ``torch.sort`` rank it), then +inf, the numbers
    in descending order, -inf; equal values (NaN with NaN too) to the lower index. scores
    ``(..., M)``; allowed: bool broadcastable to scores, or None. Returns ``(values, indices)``,
    each ``(..., k)``. Runs without autograd; recompute differentiable scores from the indices.
    topk: how the k+1 largest of each row are found (`TopK`; None: ``torch.topk``); the tie rule
    is applied here to whatever order it leaves equal values in, so any correct one selects the
    same.
    """
    with torch.no_grad():
        if allowed is not None:
            allowed = allowed.expand(scores.shape)
            scores = scores.masked_fill(~allowed, float("-inf"))
        if k == 0:
            return scores[..., :0], torch.zeros(scores[..., :0].shape, dtype=torch.int64, device=scores.device)
        if k == scores.shape[-1]:
            return _exact_order(scores, allowed)
        values, indices = (topk or _torch_topk)(scores, k + 1)
        # A row is ambiguous when its (k+1)-th value equals its k-th: only then can the *set*
        # depend on the tie rule (or, at -inf, on which of a disallowed and an allowed -inf
        # candidate is taken). Those rows (rare on real data) get an exact sort.
        kth, next_ = values[..., k - 1], values[..., k]
        values, indices = values[..., :k], indices[..., :k]
        ambiguous = _same(kth, next_)
        tied_inside = bool(_same(values[..., 1:], values[..., :-1]).any())
        if not (tied_inside or bool(ambiguous.any())):
            return values, indices
        if bool(ambiguous.any()):
            rows = ambiguous.nonzero(as_tuple=True)
            v, i = _exact_order(scores[rows], None if allowed is None else allowed[rows])
            values[rows] = v[..., :k]
            indices[rows] = i[..., :k]
        # Within the selected set, order ties by index: sort by index, then stably by value.
        indices, perm = indices.sort(dim=-1)
        values = values.gather(-1, perm)
        values, order = values.sort(dim=-1, descending=True, stable=True)
        indices = indices.gather(-1, order)
        if allowed is not None:
            values, indices = _allowed_first(values, indices, allowed.gather(-1, indices))
        return values, indices


def _same(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise equality under which NaN equals NaN (ties of the ranking)."""
    return (a == b) | (a.isnan() & b.isnan())


def _exact_order(scores: Tensor, allowed: Tensor | None) -> tuple[Tensor, Tensor]:
    """Every entry of each row in ranking order: a stable descending sort (NaN first, ties by
    index), then allowed entries stably before disallowed ones."""
    values, indices = scores.sort(dim=-1, descending=True, stable=True)
    if allowed is not None:
        values, indices = _allowed_first(values, indices, allowed.gather(-1, indices))
    return values, indices


def _allowed_first(values: Tensor, indices: Tensor, ok: Tensor) -> tuple[Tensor, Tensor]:
    order = ok.to(torch.uint8).sort(dim=-1, descending=True, stable=True).indices
    return values.gather(-1, order), indices.gather(-1, order)


def order_by_offset(offsets: Tensor) -> Tensor:
    """The slot permutation that orders each query's selected candidates by their offset from
    the query, lexicographically over the axes (axis 0 most significant): slot t is then conv
    tap t. offsets ``(..., k, d)`` (any real dtype) -> order ``(..., k)`` int64."""
    order = torch.arange(offsets.shape[-2], device=offsets.device).expand(offsets.shape[:-1])
    for axis in reversed(range(offsets.shape[-1])):
        key = offsets[..., axis].gather(-1, order)
        order = order.gather(-1, key.sort(dim=-1, stable=True).indices)
    return order
