#!/usr/bin/env bash
# One prepared GPU call (under 10 minutes): the equivalence suite on the GPU host (CPU and CUDA
# variants), the `full` benchmark preset on CUDA, then the report.
# Installs nothing: uses the machine's python3 (torch with CUDA, pytest, pytest-benchmark,
# hypothesis, pandas, matplotlib). Writes at most 8 files into $OUT:
#   machine.txt, suite.log, sweep.log, full-<host>-cuda.json, summary.md, report.html,
#   report.tar.gz (CSV, Markdown, PNGs, HTML), report.log
# Usage: OUT=/some/dir scripts/gpu_check.sh   (SWEEP_BUDGET_S=210 by default)
set -x
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/convnn-gpu-out}
PY=${PYTHON:-python3}
BUDGET=${SWEEP_BUDGET_S:-210}
export PYTHONPATH=.
mkdir -p "$OUT"
RESULTS=results/bench-gpu
REPORT=reports/out/gpu

echo "# captured by scripts/gpu_check.sh: nvidia-smi, then python, torch, CUDA versions and the GPU name" > "$OUT/machine.txt"
timeout 30 nvidia-smi >> "$OUT/machine.txt" 2>&1
timeout 60 "$PY" -c "import torch, sys; print(sys.version); print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" >> "$OUT/machine.txt" 2>&1

# The GPU half of the suite (the CUDA variants run beside the CPU ones), ci profile.
echo "# captured by scripts/gpu_check.sh: HYPOTHESIS_PROFILE=ci python -m pytest suites/equivalence -q -p no:cacheprovider -rs" > "$OUT/suite.log"
HYPOTHESIS_PROFILE=ci timeout -k 10 140 "$PY" -m pytest suites/equivalence -q -p no:cacheprovider -rs >> "$OUT/suite.log" 2>&1
echo "suite exit: $?" >> "$OUT/suite.log"

# The sweep stops starting new cases after $BUDGET s; the outer timeout is the hard guard: its
# SIGTERM makes the runner stop pytest cleanly, and its SIGKILL takes pytest down with the runner
# (parent-death signal). Rows are journalled as they finish, so whatever ran is kept either way.
timeout -k 15 $((BUDGET + 45)) "$PY" -m suites.bench --preset full --device cuda --out "$RESULTS" \
    --budget-s "$BUDGET" --case-timeout 120 > "$OUT/sweep.log" 2>&1
echo "sweep exit: $?" >> "$OUT/sweep.log"
timeout 60 "$PY" -m suites.bench --preset full --device cuda --out "$RESULTS" --assemble-only >> "$OUT/sweep.log" 2>&1

timeout 90 "$PY" -m reports build "$RESULTS" --out "$REPORT" > "$OUT/report.log" 2>&1
cp "$RESULTS"/*.json "$OUT/" 2>/dev/null
cp "$REPORT/summary.md" "$REPORT/report.html" "$OUT/" 2>/dev/null
tar czf "$OUT/report.tar.gz" -C reports/out gpu 2>/dev/null
ls -la "$OUT"
