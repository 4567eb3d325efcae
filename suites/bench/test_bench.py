"""The benchmark sweep as pytest-benchmark tests: one test per case of the chosen preset
(`conftest.py` parametrises ``case``). Each test measures its case, records the row (journal
and ``benchmark.extra_info``) and fails when the timed result was wrong or the case raised.
Out-of-memory and time-limit rows are expected outcomes of a sweep: reported as xfail."""

from __future__ import annotations

import pytest

from suites.bench.cases import Case


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")  # under xdist pytest-benchmark is off
def test_bench(case: Case, benchmark, bench_state, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    row = bench_state.run(case, benchmark, request.node.nodeid)
    info = row["extra_info"]
    benchmark.extra_info.update(info)
    if info["status"] in ("oom", "time_limit"):
        pytest.xfail(f"{info['status']}: {info['message']}")
    assert info["status"] == "ok", f"{case.id}: {info['status']}: {info['message']}\n{info.get('traceback', '')}"
    # n/a only where every query's selection lies within the dtype's rounding (low precision)
    assert info["verdict"] == "✓" or (info["verdict"] == "n/a" and info["compared_fraction"] == 0)
