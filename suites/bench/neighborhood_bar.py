"""The neighbourhood-attention bar, timed as pairs in one process:

    python -m suites.bench.neighborhood_bar                    # 56x56, kernel 7, B=8, D=64, 1 thread
    python -m suites.bench.neighborhood_bar --size 32 --kernel 3 --pairs 30

Forward only, no autograd, float32, one head. The reference (`cr.neighborhood_attention`) is
timed against each baseline in pairs, ``A B`` then ``B A`` alternately, interleaved in one
process after a warm-up (compiled FlexAttention compiles during the warm-up; its block mask is
built once, outside the timing, as a user would cache it). Each pair gives a ratio
``t(reference) / t(baseline)``; the report is the median ratio with its quartiles and range,
and the medians of the times. Baselines: FlexAttention compiled with the NA block mask, NATTEN
``na2d`` (its CPU backend: Flex, eager), full fused SDPA (all N keys), and SDPA with the dense
NA boolean mask. The bar: reference <= 0.2x compiled Flex, <= 0.5x NATTEN; stretch <= 0.1x
full SDPA.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

import convnn_ref as cr
from convnn_ref.testing import window_geometry, window_mask

Fn = Callable[[], torch.Tensor]


def _time(fn: Fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(reference: Fn, baseline: Fn, pairs: int) -> dict[str, float]:
    """``pairs`` interleaved pairs (order alternating), after one warm-up call of each."""
    reference(), baseline()
    ratios, ref_times, base_times = [], [], []
    for i in range(pairs):
        if i % 2 == 0:
            r, b = _time(reference), _time(baseline)
        else:
            b, r = _time(baseline), _time(reference)
        ratios.append(r / b)
        ref_times.append(r)
        base_times.append(b)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "ratio_median": statistics.median(ratios), "ratio_q1": q[0], "ratio_q3": q[2],
        "ratio_min": min(ratios), "ratio_max": max(ratios),
        "reference_s": statistics.median(ref_times), "baseline_s": statistics.median(base_times),
    }


def baselines(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: int, with_dense_mask: bool) -> dict[str, Fn]:
    """The contenders on NATTEN-layout inputs ``(B, H, W, 1, D)``."""
    from suites.adapters.flex_na import FlexNA, window_block_mask

    b, h, w, _, d = q.shape
    flat = [t.reshape(b, 1, h * w, d) for t in (q, k, v)]
    config = cr.neighborhood_config(kernel)
    block_mask = window_block_mask(config, (h, w))
    compiled = FlexNA(compiled=True)._attention
    out: dict[str, Fn] = {
        "flex-compiled": lambda: compiled(*flat, block_mask=block_mask),
        "sdpa-full": lambda: F.scaled_dot_product_attention(*flat),
    }
    if importlib.util.find_spec("natten") is not None:
        import natten

        out["natten"] = lambda: natten.na2d(q, k, v, kernel_size=kernel)
    if with_dense_mask:
        mask = window_mask(window_geometry(config, (h, w)))
        out["sdpa-dense-mask"] = lambda: F.scaled_dot_product_attention(*flat, attn_mask=mask)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dense-mask", action="store_true", help="also time SDPA with the dense NA mask")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.size, args.size, 1, args.dim)
    q, k, v = (torch.randn(shape, generator=g) for _ in range(3))
    results = {}
    with torch.no_grad():
        reference = lambda: cr.neighborhood_attention(q, k, v, args.kernel)  # noqa: E731
        for name, fn in baselines(q, k, v, args.kernel, args.dense_mask).items():
            results[name] = paired(reference, fn, args.pairs)
    meta = {k_: getattr(args, k_) for k_ in ("size", "kernel", "batch", "dim", "pairs", "threads")}
    if args.json:
        print(json.dumps({"config": meta, "torch": torch.__version__, "results": results}))
        return 0
    print(f"NA forward {args.size}x{args.size}, kernel {args.kernel}, B={args.batch}, D={args.dim}, float32, "
          f"{args.threads} thread(s), {args.pairs} pairs; ratio = t(reference) / t(baseline)")
    for name, r in results.items():
        print(f"  vs {name:16s} median {r['ratio_median']:.3f}x  [q1 {r['ratio_q1']:.3f}, q3 {r['ratio_q3']:.3f}; "
              f"min {r['ratio_min']:.3f}, max {r['ratio_max']:.3f}]  reference {1e3 * r['reference_s']:.1f} ms, "
              f"{name} {1e3 * r['baseline_s']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
