"""One feature-mode ConvNN call in a fresh process, its resident memory measured: what
`test_memory` runs in a subprocess (a process's peak RSS is its own, so each measurement gets a
process of its own).

    python -m suites.bench.memory_probe --side 256 --channels 4 [--grad] [--engine torch]

prints one JSON line: ``start`` (RSS after a small warm-up call), ``peak`` (VmHWM over the
measured call, or the best method `measure.ProcessPeak` has), ``growth`` = peak - start, in
bytes, and the method.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

import convnn_ref as cr
from suites.bench.measure import ProcessPeak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--grad", action="store_true", help="autograd on: forward and backward")
    parser.add_argument("--engine", default=None, help="CONVNN_SELECT_ENGINE for the call (auto, faiss, torch)")
    args = parser.parse_args(argv)
    if args.engine:
        os.environ["CONVNN_SELECT_ENGINE"] = args.engine
    torch.set_num_threads(1)
    config = cr.ConvNNConfig(k=args.k, basis="feature", similarity="cosine")
    g = torch.Generator().manual_seed(0)
    c = args.channels
    x = torch.randn(args.batch, c, args.side, args.side, generator=g, requires_grad=args.grad)
    weight = torch.randn(c, c, args.k, generator=g, requires_grad=args.grad)
    with torch.set_grad_enabled(args.grad):  # warm-up: libraries loaded, first-call caches filled
        cr.convnn(x[..., :8, :8], weight, None, config).sum()
    with ProcessPeak() as peak, torch.set_grad_enabled(args.grad):
        y = cr.convnn(x, weight, None, config)
        if args.grad:
            y.backward(torch.ones_like(y))
        del y
    print(json.dumps({"start": peak.start, "peak": peak.peak, "growth": peak.peak - peak.start, "method": peak.method}))


if __name__ == "__main__":
    main()
