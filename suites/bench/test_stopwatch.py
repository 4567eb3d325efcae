"""The stopwatch's decision logic, without timing anything: the interval of the median of pair
ratios (order statistics, and the seeded bootstrap), the bar verdicts (met / not met /
inconclusive and why), the thread choice from a load figure, the busy-host warning, the /proc
parsers, the pairing of ConvNN rows with their baselines, the interleaving order, the report's
ratio columns, and the self-check's comparison and load processes."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from reports import tables
from suites.bench import host, intervals, paired, selfcheck
from suites.bench.presets import get_preset, partners

# ------------------------------------------------------------------------------- intervals


@pytest.mark.parametrize(("n", "rank"), [(1, 0), (5, 0), (6, 1), (8, 1), (9, 2), (20, 6), (50, 18)])
def test_order_rank_is_the_binomial_rank(n: int, rank: int) -> None:
    """x_(l), x_(n+1-l) cover the median at 95 %: l the largest rank with P(B(n,1/2) < l) <= 2.5 %."""
    assert intervals.order_rank(n) == rank
    assert intervals.enough(n) == (rank > 0)


def test_median_interval_covers_the_true_median_at_its_confidence() -> None:
    """2000 samples of 15 lognormal ratios (true median 1.3): the interval holds it at least
    about 95 % of the time, and never misses it on both sides at once."""
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(2000):
        xs = 1.3 * np.exp(rng.normal(0.0, 0.2, size=15))
        mid, lo, hi = intervals.median_interval(list(xs))
        assert lo <= mid <= hi
        hits += lo <= 1.3 <= hi
    assert hits / 2000 >= 0.93, f"coverage {hits / 2000:.3f} below 0.95 (seed 7)"


def test_median_interval_with_too_few_values_is_the_whole_range() -> None:
    assert intervals.median_interval([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)
    with pytest.raises(ValueError, match="values"):
        intervals.median_interval([])


def test_bootstrap_interval_is_reproducible_from_its_seed() -> None:
    xs = [1.0, 1.1, 0.9, 1.3, 1.2, 0.95, 1.05, 1.15, 1.0, 1.02]
    a, b, c = (intervals.bootstrap_interval(xs, seed=s) for s in (3, 3, 4))
    assert a == b and a[1] <= a[0] <= a[2]
    assert c[0] == a[0]
    with pytest.raises(ValueError, match="resamples"):
        intervals.bootstrap_interval(xs, resamples=0)


# --------------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    ("low", "high", "pairs", "others", "verdict", "reason"),
    [
        (0.9, 1.1, 20, 0.0, "met", "≤"),
        (1.3, 1.5, 20, 0.0, "not met", ">"),
        (1.1, 1.3, 20, 0.0, "inconclusive", "straddles"),
        (0.9, 1.1, 6, 0.0, "inconclusive", "too few pairs"),
        (math.nan, math.nan, math.nan, None, "inconclusive", "not paired"),
        (1.0, 1.16, 20, 1.0, "inconclusive", "host busy"),  # busy and within 5 % of the target
        (1.25, 1.4, 20, 1.0, "inconclusive", "host busy"),
        (0.8, 1.0, 20, 1.0, "met", "≤"),  # busy but clear of the target
        (1.0, 1.16, 20, 0.1, "met", "≤"),  # not busy
    ],
)
def test_a_time_bar_is_decided_only_by_an_interval_on_one_side(low: float, high: float, pairs: float,
                                                                 others: float | None, verdict: str, reason: str) -> None:
    got, why = tables.bar_verdict("time", (low + high) / 2, low, high, pairs, 1.2, others)
    assert (got, reason in why) == (verdict, True), (got, why)


def test_bars_without_target_and_memory_bars() -> None:
    assert tables.bar_verdict("time", 1.0, 0.9, 1.1, 20, None)[0] == "no target"
    assert tables.bar_verdict("memory", 0.1, None, None, None, 0.125)[0] == "met"
    assert tables.bar_verdict("memory", 0.2, None, None, None, 0.125)[0] == "not met"


def test_ratio_table_takes_the_pairs_and_marks_unpaired_ratios() -> None:
    """A row's paired median wins over the ratio of medians; a row without pairs keeps the
    ratio of medians with no pair count, and its bar is inconclusive."""
    base = {"machine": "m", "k": 9, "r": None, "N": 1024, "side": 32, "C": 64, "B": 8, "dtype": "float32", "device": "cpu",
            "direction": "forward", "status": "ok", "peak_memory_bytes": 10, "verdict": "✓"}
    rows = [
        {**base, "implementation": "reference", "mode": "position", "median": 2.0, "baseline": False,
         "pairs": '{"conv2d": {"median": 1.4, "low": 1.3, "high": 1.45, "n": 30, "others_cores": 0.0}}'},
        {**base, "implementation": "reference", "mode": "position", "side": 56, "N": 3136, "median": 2.0, "baseline": False,
         "pairs": None},
        {**base, "implementation": "conv2d", "mode": "position", "median": 1.0, "baseline": True, "pairs": None},
        {**base, "implementation": "conv2d", "mode": "position", "side": 56, "N": 3136, "median": 1.0, "baseline": True},
    ]
    df = pd.DataFrame(rows)
    defs = {"conv2d": {"name": "conv2d", "compared_with": ["position"], "match": ["mode", "k", "N", "side", "C", "B", "dtype",
                                                                                "device", "direction"]}}
    table = tables.ratios(df, defs).set_index("side")
    assert table.loc[32, "time/conv2d"] == 1.4 and table.loc[32, "time/conv2d pairs"] == 30
    assert table.loc[56, "time/conv2d"] == 2.0 and math.isnan(table.loc[56, "time/conv2d pairs"])
    bar = {"name": "b", "mode": "position", "baseline": "conv2d", "metric": "time", "direction": "forward", "sides": None,
           "k": 9, "B": 8, "C": 64, "dtype": "float32", "target": 1.5}
    verdicts = tables.bars(table.reset_index(), [bar]).set_index("side")["met"]
    assert verdicts.to_dict() == {32: "met", 56: "inconclusive"}


# ---------------------------------------------------------------------------------- threads


@pytest.mark.parametrize(("cores", "others", "threads"),
                         [(2, 0.0, 2), (2, 0.2, 2), (2, 0.4, 1), (2, 0.9, 1), (2, 3.0, 1), (2, None, 1),
                          (16, 1.0, 15), (16, 0.1, 16), (1, 0.0, 1)])
def test_threads_are_the_idle_cores(cores: int, others: float | None, threads: int) -> None:
    assert host.choose_threads(cores, others) == threads


def test_thread_choice_refuses_no_cores() -> None:
    with pytest.raises(ValueError, match="n_cores"):
        host.choose_threads(0, 0.0)
    with pytest.raises(ValueError, match="threads"):
        host.apply_threads(0)


def test_busy_warning_says_what_was_seen_and_what_to_do() -> None:
    assert host.busy_warning(0.05, 2, 1) is None
    assert host.busy_warning(None, 2, 2) is None
    busy = host.busy_warning(0.9, 2, 1)
    assert busy is not None and "0.90 of 2 cores" in busy and "quiet host" in busy and "--threads 1" not in busy
    spin = host.busy_warning(0.9, 2, 2)
    assert spin is not None and "--threads 1" in spin and "barriers" in spin


def test_proc_parsers() -> None:
    stat = "cpu  100 5 20 900 7 1 2 3 0 0\ncpu0 1 2 3 4\n"
    assert host.parse_proc_stat(stat) == 100 + 5 + 20 + 1 + 2 + 3
    assert host.parse_proc_stat("intr 1 2") is None
    pid = "42 (python (my) x) S 1 42 42 0 -1 4194304 100 0 0 0 17 4 3 2 20 0 1 0 1 1 1"
    assert host.parse_proc_pid_stat(pid) == 17 + 4 + 3 + 2


def test_others_cores_subtracts_this_process() -> None:
    a, b = host.CpuSample(10.0, 100.0, 5.0), host.CpuSample(12.0, 104.0, 6.0)
    assert host.others_cpu_s(a, b) == 3.0 and host.others_cores(a, b) == 1.5
    assert host.others_cores(a, host.CpuSample(12.0, None, 6.0)) is None
    assert host.between({"monotonic": 10.0, "machine_busy_s": 100.0, "own_s": 5.0},
                        {"monotonic": 12.0, "machine_busy_s": 104.0, "own_s": 6.0})["others_cores"] == 1.5


def test_snapshot_records_load_cores_and_every_pool() -> None:
    snap = host.snapshot()
    assert snap["cores"] >= 1 and snap["torch_threads"] >= 1
    assert {"load_average", "governor", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "faiss_threads"} <= set(snap)


# ---------------------------------------------------------------------------------- pairing


def test_convnn_rows_pair_with_every_baseline_the_report_divides_them_by() -> None:
    cases = get_preset("default").cases("cpu")
    by_id = {c.id: c for c in cases}
    feature = by_id["reference-feature-k9-56x56-C64-B8-float32-cpu-fwd"]
    assert [(n, c.id) for n, c in partners(feature, cases)] == [
        ("dense-naive", "dense-naive-feature-k9-56x56-C64-B8-float32-cpu-fwd"),
        ("sdpa", "sdpa-attention-k3136-56x56-C64-B8-float32-cpu-fwd"),
    ]
    kvt = by_id["reference-kvt-k9-32x32-C64-B8-float32-cpu-fwdbwd"]
    assert [n for n, _ in partners(kvt, cases)] == ["sdpa", "sdpa-math", "kvt-dense"]
    assert partners(by_id["conv2d-position-k9-32x32-C64-B8-float32-cpu-fwd"], cases) == []
    pairs = selfcheck.bar_pairs(get_preset("default"), "cpu")
    assert len(pairs) == 21 and all(p.baseline.implementation == p.bar.baseline for p in pairs)


def test_pairs_alternate_their_order_and_honour_the_minimum() -> None:
    calls: list[str] = []
    plan = paired.PairPlan(budget_s=0.0, min_pairs=4, max_pairs=4, block_s=1e-9)
    record = paired.measure_pairs(lambda: calls.append("A"), lambda: calls.append("B"), plan)
    assert "".join(calls[4:]) == "ABBAABBA"  # after two warm-up and two calibration calls
    assert record["n"] == 4 and record["low"] <= record["median"] <= record["high"]
    assert record["clock"].startswith("wall") and record["wall_median"] is not None
    with pytest.raises(ValueError, match="min_pairs"):
        paired.PairPlan(min_pairs=5, max_pairs=4)
    with pytest.raises(ValueError, match="clock"):
        paired.measure_pairs(lambda: None, lambda: None, plan, clock="sundial")


def test_one_cpu_thread_reads_cpu_time_and_the_rest_the_wall_clock() -> None:
    """A busy core cannot stretch the CPU time a one-thread block needs; several threads (whose
    spinning would count) and CUDA (the host waits) read the wall clock."""
    assert paired.choose_clock("cpu", 1) == "cpu"
    assert paired.choose_clock("cpu", 2) == "wall" and paired.choose_clock("cuda", 1) == "wall"
    plan = paired.PairPlan(budget_s=0.0, min_pairs=2, max_pairs=2, block_s=1e-9)
    record = paired.measure_pairs(lambda: time.sleep(0.002), lambda: sum(range(20000)), plan, clock="cpu")
    assert record["clock"].startswith("process CPU time")
    assert record["median"] < record["wall_median"]  # sleeping takes wall time, not CPU time


def test_pair_plan_arithmetic() -> None:
    plan = paired.PairPlan(budget_s=2.0, min_pairs=10, max_pairs=100, block_s=0.01)
    assert paired.calls_per_sample(0.001, 0.01) == 10 and paired.calls_per_sample(1.0, 0.01) == 1
    assert paired.pair_count(0.1, plan) == 20 and paired.pair_count(5.0, plan) == 10 and paired.pair_count(1e-6, plan) == 100
    summary = paired.summarize_pairs([2.0, 4.0, 3.0], [1.0, 2.0, 1.0])
    assert summary["median"] == 2.0 and summary["ratios"] == [2.0, 2.0, 3.0] and summary["enough"] is False


# ------------------------------------------------------------------------------- self-check


def test_selfcheck_counts_flips_and_turns() -> None:
    quiet = {"a": "met", "b": "not met", "c": "met", "d": "inconclusive"}
    loaded = {"a": "not met", "b": "inconclusive", "c": "met", "d": "met"}
    assert selfcheck.compare(quiet, loaded) == (["a"], ["b"])
    assert selfcheck.load_cores(0, [0, 1, 2]) == [] and selfcheck.load_cores(-1, [0, 1, 2]) == [1, 2]
    assert selfcheck.load_cores(None, [0, 1]) == [0, 1]


def test_busy_processes_are_always_stopped() -> None:
    load = selfcheck.BusyLoad([0], limit_s=30.0)
    try:
        with load:
            assert load.alive() == 1
            procs = list(load.procs)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert all(p.poll() is not None for p in procs)
    started = time.monotonic()
    with selfcheck.BusyLoad([0], limit_s=0.2) as bounded:  # stops by itself at its deadline
        procs = list(bounded.procs)
        procs[0].wait(timeout=10)
    assert time.monotonic() - started < 10


def test_a_wide_interval_buys_more_pairs_and_a_tight_one_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 1 s each (faked): the budget of 10 s plans 5 pairs; steady ratios stop there,
    ratios alternating 1 and 3 keep adding 4 pairs at a time up to max_pairs."""
    plan = paired.PairPlan(budget_s=10.0, min_pairs=4, max_pairs=21, block_s=1e-9, tight=0.04, extend=1e6)

    def run(noisy: bool) -> int:
        seen = {"b": 0}

        def fake(fn, calls, sync):  # type: ignore[no-untyped-def]
            if fn == "b":
                seen["b"] += 1
                t = 3.0 if noisy and seen["b"] % 2 else 1.0
                return t, t
            return 1.0, 1.0

        monkeypatch.setattr(paired, "_block", fake)
        return paired.measure_pairs("a", "b", plan)["n"]  # type: ignore[arg-type]

    assert run(noisy=False) == 5
    assert run(noisy=True) == 21


def test_the_results_file_says_what_other_processes_took_per_run() -> None:
    from suites.bench import __main__ as runner

    snap = {"cores": 2, "threads": 1, "threads_why": "the default", "monotonic": 0.0, "machine_busy_s": 0.0, "own_s": 0.0}
    records = [
        {"type": "host", "when": "start", "run": "r1", **snap},
        {"type": "row", "row": {}},
        {"type": "host", "when": "end", "run": "r1", **snap, "monotonic": 10.0, "machine_busy_s": 19.0, "own_s": 10.0},
        {"type": "host", "when": "start", "run": "r2", **snap},  # a run that was stopped: no end
    ]
    first, stopped = runner.host_summary(records)
    assert first["others_cpu_s"] == 9.0 and first["others_cores"] == 0.9 and first["threads"] == 1
    assert "0.90 of 2 cores" in first["warning"]
    assert stopped["end"] is None and "others_cores" not in stopped
