#!/usr/bin/env bash
# One prepared GPU call (about 6 minutes): the `full` benchmark preset on CUDA, then the report.
# Installs nothing: uses the machine's python3 (torch with CUDA, pytest, pytest-benchmark,
# pandas, matplotlib). Writes at most 8 files into $OUT:
#   nvidia-smi.txt, env.txt, sweep.log, full-<host>-cuda.json, summary.md, report.html,
#   report.tar.gz (CSV, Markdown, PNGs, HTML), report.log
# Usage: OUT=/some/dir scripts/gpu_check.sh   (SWEEP_BUDGET_S=300 by default)
set -x
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/convnn-gpu-out}
PY=${PYTHON:-python3}
BUDGET=${SWEEP_BUDGET_S:-300}
export PYTHONPATH=.
mkdir -p "$OUT"
RESULTS=results/bench-gpu
REPORT=reports/out/gpu

timeout 30 nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
timeout 120 "$PY" -c "import torch, sys; print(sys.version); print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" > "$OUT/env.txt" 2>&1

# The sweep stops starting new cases after $BUDGET s; the outer timeout is the hard guard.
# Rows are journalled as they finish, so whatever ran is kept either way.
timeout -k 15 $((BUDGET + 120)) "$PY" -m suites.bench --preset full --device cuda --out "$RESULTS" \
    --budget-s "$BUDGET" --case-timeout 120 > "$OUT/sweep.log" 2>&1
echo "sweep exit: $?" >> "$OUT/sweep.log"
timeout 120 "$PY" -m suites.bench --preset full --device cuda --out "$RESULTS" --assemble-only >> "$OUT/sweep.log" 2>&1

timeout 180 "$PY" -m reports build "$RESULTS" --out "$REPORT" > "$OUT/report.log" 2>&1
cp "$RESULTS"/*.json "$OUT/" 2>/dev/null
cp "$REPORT/summary.md" "$REPORT/report.html" "$OUT/" 2>/dev/null
tar czf "$OUT/report.tar.gz" -C reports/out gpu 2>/dev/null
ls -la "$OUT"
