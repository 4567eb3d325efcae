"""The fast routes of the reference: how `convnn_ref.functional` computes what the semantic
modules define, within a memory budget.

- `plan`: memory budgets, query chunks, and `TokenCall`, the one parameter object of a
  feature/hybrid call;
- `routes`: the gather route and the dense route (feature and hybrid bases, attention) and the
  position-basis aggregation;
- `ranking`: order-equivalent scores for selection and the in-place gather;
- `shifted`: the shifted route (position tables with shift structure);
- `table_cache`: the cached position tables.

Every route selects through `convnn_ref.select.select` and aggregates with
`convnn_ref.aggregate`; nothing here imports the oracle (`convnn_ref.naive`). The routes are
described in docs/semantics.md.
"""
