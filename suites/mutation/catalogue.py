"""The catalogue of planted bugs: each a small textual change to the reference a real port
could make. ``find`` must occur exactly ``count`` times in ``file`` (a test in ``make verify``
checks it, so the catalogue follows the code); every occurrence is replaced.

A mutant the suite cannot kill because it computes the same function is marked with
``equivalent`` (why it is the same function); every other survivor is a blind spot to close.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    """One planted bug: replace ``find`` by ``replace`` in ``file`` (repository-relative)."""

    id: str
    file: str
    find: str
    replace: str
    what: str
    count: int = 1
    equivalent: str | None = None
    #: The test files that guard ``file`` (empty: the equivalence suite, the runner's default).
    tests: tuple[str, ...] = ()


MUTANTS: tuple[Mutant, ...] = (
    # ---------------------------------------------------------------- step 2: ties, masks, slots
    Mutant(
        "ties-inside-to-higher-index",
        "convnn_ref/select.py",
        "indices, perm = indices.sort(dim=-1)",
        "indices, perm = indices.sort(dim=-1, descending=True)",
        "equal scores inside the selected set ordered by the higher index (the slot a tap meets changes)",
    ),
    Mutant(
        "ties-at-kth-unchecked",
        "convnn_ref/select.py",
        "ambiguous = _same(kth, next_)",
        "ambiguous = kth != kth",
        "a tie straddling the k-th place left to torch.topk (no exact fallback)",
    ),
    Mutant(
        "valid-from-scores",
        "convnn_ref/select.py",
        "valid = ok.expand(scores.shape).gather(-1, columns)",
        "valid = values > float('-inf')",
        "a slot counted as filled when its score beats -inf (NaN and genuine -inf scores misread)",
    ),
    Mutant(
        "own-token-last",
        "convnn_ref/select.py",
        "index = torch.cat([own.expand(*lead, c)[..., None], index], dim=-1)",
        "index = torch.cat([index, own.expand(*lead, c)[..., None]], dim=-1)",
        "forced self put in the last slot instead of slot 0",
    ),
    Mutant(
        "own-token-selectable-again",
        "convnn_ref/select.py",
        "not_own[torch.arange(c, device=device)[present], own_columns[present]] = False",
        "not_own[torch.arange(c, device=device)[present], own_columns[present]] = True",
        "forced self: the own token also competes for the ranked slots (selected twice)",
    ),
    Mutant(
        "offset-order-axis-significance",
        "convnn_ref/select.py",
        "for axis in reversed(range(offsets.shape[-1])):",
        "for axis in range(offsets.shape[-1]):",
        "slots by offset with the last axis most significant (column-major taps)",
    ),
    Mutant(
        "forced-self-k-check",
        "convnn_ref/select.py",
        "check_k(k - 1, others, what)",
        "check_k(k, others, what)",
        "forced self: k checked against the other candidates without the own slot (k = N refused)",
    ),
    # ---------------------------------------------------------------- step 3: rho and kernels
    Mutant(
        "fully-masked-softmax-row-kept",
        "convnn_ref/aggregate.py",
        "return w.masked_fill(~valid.any(dim=-1, keepdim=True), 0.0)",
        "return w",
        "a query with no allowed candidate gets softmax over nothing (NaN) instead of the bias",
    ),
    Mutant(
        "rho-scale-ignored",
        "convnn_ref/aggregate.py",
        "logits = scores if rho_scale == 1.0 else rho_scale * scores",
        "logits = scores",
        "softmax temperature rho_scale dropped",
    ),
    Mutant(
        "kernel-matrix-channel-major",
        "convnn_ref/aggregate.py",
        "return weight.permute(2, 1, 0).reshape(-1, c_out)",
        "return weight.permute(1, 2, 0).reshape(-1, c_out)",
        "full kernel's matrix rows channel-major where the gathered block is slot-major",
    ),
    Mutant(
        "grouped-weight-layout",
        "convnn_ref/aggregate.py",
        "w = weight.reshape(groups, cg_out, cg_in, k).permute(0, 3, 2, 1).reshape(groups, k * cg_in, cg_out)",
        "w = weight.reshape(groups, cg_out, cg_in, k).permute(0, 2, 3, 1).reshape(groups, k * cg_in, cg_out)",
        "grouped kernel's weight flattened channel-major",
    ),
    Mutant(
        "empty-slot-times-value",
        "convnn_ref/aggregate.py",
        "neighbours = neighbours.masked_fill(~valid[..., None], 0.0)",
        "neighbours = neighbours",
        "an empty slot contributes 0 times its value (NaN when the value is infinite)",
    ),
    Mutant(
        "rho-scores-empty-slots",
        "convnn_ref/aggregate.py",
        "return scores if valid is None else scores.masked_fill(~valid, 0.0)",
        "return scores",
        "rho='scores' weighs empty slots by their (-inf) score",
    ),
    # ---------------------------------------------------------------- step 1: scores
    Mutant(
        "cosine-eps-too-large",
        "convnn_ref/scores.py",
        "NORM_EPS = 1e-12",
        "NORM_EPS = 1e-3",
        "the norm clamp sized for half precision (1e-3): small tokens stop being unit vectors",
    ),
    Mutant(
        "euclidean-expansion-sign",
        "convnn_ref/scores.py",
        "return 2 * dots - q.square().sum(-1)[..., :, None] - k.square().sum(-1)[..., None, :]",
        "return 2 * dots + q.square().sum(-1)[..., :, None] - k.square().sum(-1)[..., None, :]",
        "expanded euclidean with +|q|^2 (ranks the same; the dense route's softmax weights differ)",
    ),
    Mutant(
        "default-scale-1-over-d",
        "convnn_ref/scores.py",
        "return 1.0 / math.sqrt(dim)",
        "return 1.0 / dim",
        "scaled dot product's default scale 1/D instead of 1/sqrt(D)",
    ),
    Mutant(
        "hybrid-population-std",
        "convnn_ref/scores.py",
        "std = flat.std(dim=1, correction=1 if flat.shape[1] > 1 else 0)",
        "std = flat.std(dim=1, correction=0)",
        "hybrid features divided by the population std, not the sample std",
    ),
    Mutant(
        "hybrid-lambda-swapped",
        "convnn_ref/scores.py",
        "return torch.cat([lam * f / std, (1.0 - lam) * c], dim=-1)",
        "return torch.cat([(1.0 - lam) * f / std, lam * c], dim=-1)",
        "hybrid lambda weighting the coordinates instead of the features",
    ),
    Mutant(
        "chebyshev-as-manhattan",
        "convnn_ref/scores.py",
        "return -diff.abs().amax(dim=-1)",
        "return -diff.abs().sum(dim=-1)",
        "Chebyshev distance computed as the L1 distance",
    ),
    # ---------------------------------------------------------------- geometry and layouts
    Mutant(
        "even-kernel-centre-floored",
        "convnn_ref/positions.py",
        "[dl * (k - 1) / 2 for dl, k in zip(geometry.dilation, geometry.kernel)]",
        "[dl * (k - 1) // 2 for dl, k in zip(geometry.dilation, geometry.kernel)]",
        "even kernels: the query at the window's floor instead of its (half-integer) centre",
    ),
    Mutant(
        "zero-pad-lo-hi-swapped",
        "convnn_ref/positions.py",
        "pad += [lo, hi]",
        "pad += [hi, lo]",
        "asymmetric zero padding applied the wrong way round (gather routes)",
    ),
    Mutant(
        "coordinate-channels-reversed",
        "convnn_ref/positions.py",
        "(2 * torch.arange(n, device=device, dtype=torch.float64) - (n - 1)) / (n - 1)",
        "((n - 1) - 2 * torch.arange(n, device=device, dtype=torch.float64)) / (n - 1)",
        "coordinate channels running +1 to -1",
    ),
    Mutant(
        "grid-truncates-when-rounding",
        "convnn_ref/positions.py",
        "pts = torch.linspace(lo, hi, per_axis_count, dtype=torch.float64).round().to(torch.int64)",
        "pts = torch.linspace(lo, hi, per_axis_count, dtype=torch.float64).to(torch.int64)",
        "grid candidates truncated where the rounding convention is asked for",
    ),
    Mutant(
        "strided-output-size",
        "convnn_ref/positions.py",
        "out.append((spatial[axis] - 1) // stride[axis] + 1)",
        "out.append(spatial[axis] // stride[axis])",
        "feature basis: strided query grid one short when the size is odd",
    ),
    Mutant(
        "same-padding-extra-point-low",
        "convnn_ref/recover.py",
        "pairs.append((total // 2, total - total // 2))",
        "pairs.append((total - total // 2, total // 2))",
        "padding='same' puts the extra point of an even kernel on the low side",
    ),
    Mutant(
        "mha-q-k-projections-swapped",
        "convnn_ref/recover.py",
        "wq, wk, wv = mha.in_proj_weight.chunk(3)",
        "wk, wq, wv = mha.in_proj_weight.chunk(3)",
        "from_multihead_attention takes the key projection for the queries",
    ),
    Mutant(
        "causal-mask-upper",
        "convnn_ref/layers.py",
        "causal = torch.ones(nq, nk, dtype=torch.bool, device=device).tril().expand(b * h, nq, nk)",
        "causal = torch.ones(nq, nk, dtype=torch.bool, device=device).triu().expand(b * h, nq, nk)",
        "ConvNNAttention(is_causal=True) lets queries see the future instead of the past",
    ),
    Mutant(
        "random-candidates-unsorted",
        "convnn_ref/candidates.py",
        "return torch.randperm(n, generator=generator)[:r].sort().values.to(device)",
        "return torch.randperm(n, generator=generator)[:r].to(device)",
        "random candidates kept in draw order (ties then go to the earlier draw, not the lower index)",
    ),
    # ---------------------------------------------------------------- fast routes
    Mutant(
        "chunk-rows-of-first-chunk",
        "convnn_ref/fast/routes.py",
        "nb = select.select(s, rule, slice(start, stop), allowed=part, topk=topk)",
        "nb = select.select(s, rule, slice(0, stop - start), allowed=part, topk=topk)",
        "gather route: every chunk selects with the first chunk's own tokens and offsets",
    ),
    Mutant(
        "dense-mask-of-first-chunk",
        "convnn_ref/fast/routes.py",
        "            part = None if allowed is None else allowed[:, start:stop]\n            keep = select.selected_mask(",
        "            part = None if allowed is None else allowed[:, : stop - start]\n            keep = select.selected_mask(",
        "dense route: every chunk masked with the first chunk's rows of the mask",
    ),
    Mutant(
        "dense-route-ignores-masks",
        "convnn_ref/fast/routes.py",
        "return call.allowed is None and call.rule.keeps_every_candidate(call.num_candidates)",
        "return call.rule.keeps_every_candidate(call.num_candidates)",
        "dense route: k = N taken as 'keep everything' even under a mask",
    ),
    Mutant(
        "dense-route-for-outside-own",
        "convnn_ref/fast/routes.py",
        "    if call.rule.own is not None and call.rule.candidates is not None:\n        return False",
        "    if False:\n        return False",
        "dense route taken although a forced own token is not among the candidates",
    ),
    Mutant(
        "no-checkpoint",
        "convnn_ref/fast/routes.py",
        "        if need_grad:\n            part = torch.utils.checkpoint.checkpoint(",
        "        if False:\n            part = torch.utils.checkpoint.checkpoint(",
        "dense route without per-chunk checkpointing",
        equivalent="checkpointing trades memory for recomputation; the function and its gradients are the same",
    ),
    Mutant(
        "rank-euclidean-factor",
        "convnn_ref/fast/ranking.py",
        "return dots.mul_(2.0).sub_(stats[:, None, :])",
        "return dots.sub_(stats[:, None, :])",
        "order-equivalent euclidean scores without the factor 2 on q.k (ranks wrong)",
    ),
    Mutant(
        "rank-cosine-unnormalised-keys",
        "convnn_ref/fast/ranking.py",
        "return keys / row_norms(keys).clamp_min(scores.NORM_EPS)[..., None], None",
        "return keys, None",
        "cosine selection ranked by raw dot products",
    ),
    Mutant(
        "non-finite-repair-skipped",
        "convnn_ref/fast/ranking.py",
        "if bool(torch.isfinite(features.sum())):\n        return None",
        "if True:\n        return None",
        "fast scores of NaN/inf tokens left as the expanded formula makes them",
    ),
    Mutant(
        "shifted-backward-grad-x-unshifted",
        "convnn_ref/fast/shifted.py",
        "grad_x[:, :, shift : shift + length].baddbmm_(w[..., t].transpose(1, 2), grad)",
        "grad_x[:, :, :length].baddbmm_(w[..., t].transpose(1, 2), grad)",
        "custom backward: every tap's input gradient accumulated at shift 0",
    ),
    Mutant(
        "shifted-backward-grad-w-unshifted",
        "convnn_ref/fast/shifted.py",
        "grad_w[..., t] = torch.bmm(grad, xg[:, :, shift : shift + length].transpose(1, 2))",
        "grad_w[..., t] = torch.bmm(grad, xg[:, :, :length].transpose(1, 2))",
        "custom backward: every tap's weight gradient taken against the unshifted input",
    ),
    Mutant(
        "depthwise-taps-not-accumulated",
        "convnn_ref/fast/shifted.py",
        "out = wt * xs if out is None else out.addcmul_(wt, xs)",
        "out = wt * xs",
        "depthwise shifted route keeps only the last tap",
    ),
    Mutant(
        "shifted-interior-uses-hi",
        "convnn_ref/fast/shifted.py",
        "interior = (slice(None), slice(None), *(slice(lo, lo + s) for s, (lo, _) in zip(x.shape[2:], padding)))",
        "interior = (slice(None), slice(None), *(slice(lo, lo + s) for s, (_, lo) in zip(x.shape[2:], padding)))",
        "shifted route places the input after the high padding instead of the low one",
    ),
    Mutant(
        "table-cache-key-without-kernel",
        "convnn_ref/fast/table_cache.py",
        "        config.kernel_size is not None,  # kernel scaling applies only with a kernel_size\n",
        "",
        "position tables cached without knowing whether a kernel_size scales the axes",
    ),
    Mutant(
        "table-cache-key-without-rounding",
        "convnn_ref/fast/table_cache.py",
        "        config.grid_rounding,\n",
        "",
        "position tables cached without the grid's rounding convention",
    ),
    Mutant(
        "dense-fraction-half",
        "convnn_ref/fast/plan.py",
        "DENSE_SUM_FRACTION = 1 / 16",
        "DENSE_SUM_FRACTION = 1 / 2",
        "the sum kernel switches to the dense route only at k >= M/2",
        equivalent="the routes compute the same function; only which one runs changes",
    ),
    # ------------------------------------------------------------------ the selection engine
    Mutant(
        "engine-gap-unchecked",
        "convnn_ref/fast/engine.py",
        "ambiguous = ~(vals64[..., r - 1] - vals64[..., r] > 2 * delta)",
        "ambiguous = vals64[..., r - 1] != vals64[..., r - 1]",
        "fused search: the k-th/(k+1)-th gap never checked, so faiss's order decides exact ties",
    ),
    Mutant(
        "engine-close-slots-not-reordered",
        "convnn_ref/fast/engine.py",
        "if bool(reorder.any()):",
        "if False:",
        "fused search: selected slots closer than float32 rounding keep the heaps' order",
    ),
    # ------------------------------------------------------------------ inert knobs
    Mutant(
        "inert-scale-accepted",
        "convnn_ref/config.py",
        '(config.scale is not None and config.similarity != "scaled_dot", f"scale={config.scale!r}",',
        '(False, f"scale={config.scale!r}",',
        "validation drops a rule: scale accepted (and ignored) under every similarity but scaled_dot",
    ),
    Mutant(
        "sequence-stride-accepted",
        "convnn_ref/validation.py",
        '"stride": (config.stride, {1}), ',
        "",
        "the sequence form accepts (and ignores) a stride",
    ),
    # ------------------------------------------------------ the benchmark's stopwatch (its decisions)
    Mutant(
        "bar-verdict-straddle-decides",
        "reports/tables.py",
        "    if low <= target < high:\n",
        "    if False:\n",
        "a bar whose interval straddles its target is decided by the interval's upper end (never inconclusive)",
    ),
    Mutant(
        "bar-verdict-busy-host-ignored",
        "reports/tables.py",
        "and others_cores >= BUSY_CORES:",
        "and others_cores >= 1e9:",
        "a bar timed on a busy host is decided even when its interval grazes the target",
    ),
    Mutant(
        "median-interval-rank-off-by-one",
        "suites/bench/intervals.py",
        "            rank = cand\n",
        "            rank = cand + 1\n",
        "the order-statistics interval of the median one rank too narrow on each side (coverage below 95%)",
    ),
    Mutant(
        "threads-ignore-the-load",
        "suites/bench/host.py",
        "taken = max(0, math.ceil(others - BUSY_CORES))",
        "taken = 0",
        "the default thread count takes every core, busy ones included (OpenMP threads wait at barriers)",
    ),
    Mutant(
        "pairs-never-alternate",
        "suites/bench/paired.py",
        "            if len(blocks_a) % 2 == 0:\n",
        "            if True:\n",
        "interleaved pairs always run the ConvNN call first (an order effect lands on one side)",
    ),
    # ------------------------------------------------- result files read as untrusted input
    Mutant(
        "report-garbage-lines-unnamed",
        "reports/untrusted.py",
        "            skipped.append(Skipped(name, number, why))",
        "            continue",
        "a torn or garbage journal line skipped without a word (the report and the sweep name nothing)",
        tests=("suites/bench/test_untrusted_files.py",),
    ),
    Mutant(
        "journal-append-onto-torn-line",
        "suites/jsonl.py",
        'line = "\\n" + line',
        "line = line",
        "a resumed writer appends its record onto a torn last line (the record is lost with the fragment)",
        tests=("suites/bench/test_untrusted_files.py",),
    ),
    Mutant(
        "meta-on-every-rerun",
        "suites/bench/__main__.py",
        "    if not anything_to_run:\n        return False\n",
        "",
        "every rerun of a finished sweep (each failed assemble) appends another meta record",
        tests=("suites/bench/test_untrusted_files.py",),
    ),
    Mutant(
        "report-skip-section-dropped",
        "reports/load.py",
        "    if not skipped:\n        return []\n    files = len(",
        "    if skipped or not skipped:\n        return []\n    files = len(",
        "the report reads around damaged input but its summary never says what it left out",
        tests=("suites/bench/test_untrusted_files.py",),
    ),
    Mutant(
        "conformance-skip-reason-unescaped",
        "suites/conformance/report.py",
        'f"| {md.text(reason)} | {n} |"',
        'f"| {reason} | {n} |"',
        "a skip reason written into the conformance summary's table unescaped (newlines and pipes break the table)",
        tests=("suites/bench/test_untrusted_files.py",),
    ),
    # ------------------------------------------------------- blocks and chunks (test_blocks.py)
    Mutant(
        "gather-block-rows-of-the-first-block",
        "convnn_ref/fast/routes.py",
        "index = nb.index[i, r0:r1]  # (n, k)",
        "index = nb.index[i, : r1 - r0]  # (n, k)",
        "no-grad full-kernel aggregation: every gather block reads the first block's neighbours",
    ),
    Mutant(
        "shifted-column-block-offset-dropped",
        "convnn_ref/fast/shifted.py",
        "stacked[t] = x[:, start + shift : start + shift + n]",
        "stacked[t] = x[:, shift : shift + n]",
        "shifted route: every column block stacks the first block's columns",
    ),
    Mutant(
        "table-chunk-scores-the-first-queries",
        "convnn_ref/table.py",
        "s = scores.position_scores(centres[start:stop], cand_exact, config.metric, axis_unit)",
        "s = scores.position_scores(centres[: stop - start], cand_exact, config.metric, axis_unit)",
        "position table: every query chunk is scored from the first chunk's centres",
    ),
    Mutant(
        "engine-tile-column-offset-dropped",
        "convnn_ref/fast/engine.py",
        "heaps.addn(k1 - k0, faiss.swig_ptr(block.numpy()), k0, q0, q1 - q0)",
        "heaps.addn(k1 - k0, faiss.swig_ptr(block.numpy()), 0, q0, q1 - q0)",
        "fused search: the candidates of every column tile numbered from 0",
    ),
    # ------------------------------------------- requires_grad combinations (test_requires_grad.py)
    Mutant(
        "shifted-backward-input-grad-keyed-on-weight",
        "convnn_ref/fast/shifted.py",
        "grad_x = torch.zeros_like(xg) if ctx.needs_input_grad[0] else None",
        "grad_x = torch.zeros_like(xg) if ctx.needs_input_grad[1] else None",
        "shifted route's backward: the input's gradient computed only when the weight needs one (a frozen weight starves the input)",
    ),
    Mutant(
        "blocked-route-grad-only-from-parameters",
        "convnn_ref/fast/routes.py",
        "tensors = (call.queries, call.keys, call.values, call.weight, call.bias)",
        "tensors = (call.weight, call.bias)",
        "the no-grad blocked aggregation taken whenever weight and bias are frozen, though the input needs a gradient",
    ),
    # ------------------------------------------------------------------ dropout (test_dropout.py)
    Mutant(
        "attention-dropout-in-eval",
        "convnn_ref/layers.py",
        "dropout_p=self.dropout if self.training else 0.0,",
        "dropout_p=self.dropout,",
        "ConvNNAttention drops attention weights in eval() too",
    ),
    Mutant(
        "kvt-dropout-in-eval",
        "convnn_ref/kvt.py",
        "dropout_p = self.attn_drop.p if self.training else 0.0",
        "dropout_p = self.attn_drop.p",
        "KVTAttention drops attention probabilities in eval() too",
    ),
    Mutant(
        "dense-dropout-not-rescaled",
        "convnn_ref/fast/routes.py",
        "w = torch.nn.functional.dropout(w, call.dropout_p)",
        "w = torch.nn.functional.dropout(w, call.dropout_p) * (1 - call.dropout_p)",
        "dense route: dropped weights not rescaled by 1/(1-p) (a biased output in train())",
    ),
    Mutant(
        "gather-dropout-not-rescaled",
        "convnn_ref/aggregate.py",
        "else w, dropout_p)",
        "else w, dropout_p) * (1 - dropout_p)",
        "gather route: dropped rho weights not rescaled by 1/(1-p) (a biased output in train())",
    ),
    # ------------------------------------- half precision at large magnitudes (test_half_precision.py)
    Mutant(
        "float16-not-widened",
        "convnn_ref/fast/routes.py",
        "COMPUTE_DTYPES = {torch.float16: torch.float32, torch.bfloat16: torch.float32}",
        "COMPUTE_DTYPES = {torch.bfloat16: torch.float32}",
        "float16 tokens scored and summed in float16 (scores past 65504 overflow)",
    ),
    # ------------------------------------------------- argument coverage (test_arguments.py)
    Mutant(
        "table-cache-key-without-candidate-subset",
        "convnn_ref/fast/table_cache.py",
        "        None if candidates is None else tuple(candidates.tolist()),  # a caller's own subset (position_table's cand_index)\n",
        "",
        "position tables cached without their candidate subset: position_table's cand_index answered from another subset's table",
        equivalent="a second guard: position_table computes a caller's own subset without the cache (functional.py), and "
        "the cached subsets (grid candidates) are fixed by knobs already in the key; either guard alone keeps the tables apart",
    ),
    # ------------------------------------------------------------------ the window rule
    Mutant(
        "window-border-clamp-off-by-one",
        "convnn_ref/window.py",
        "centre = torch.maximum(torch.minimum(leader, group_len - 1 - right)",
        "centre = torch.maximum(torch.minimum(leader, group_len - right)",
        "the window at the far border shifted inward one point too little (it runs off the grid and loses a key)",
    ),
    Mutant(
        "window-dilation-ignored",
        "convnn_ref/fast/window_route.py",
        "geometry.stride[a], geometry.dilation[a], geometry.causal[a], side)",
        "geometry.stride[a], 1, geometry.causal[a], side)",
        "the window route tiles every axis as if undilated (contiguous windows instead of the dilation lattice)",
    ),
    Mutant(
        "window-layer-drops-causal",
        "convnn_ref/neighborhood.py",
        "y = neighborhood_attention(q, k, v, self.kernel_size, self.dilation, self.stride, self.is_causal, self.scale)",
        "y = neighborhood_attention(q, k, v, self.kernel_size, self.dilation, self.stride, False, self.scale)",
        "the neighbourhood-attention layer accepts is_causal and attends to the whole window",
    ),
)
