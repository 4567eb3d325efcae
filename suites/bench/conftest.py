"""pytest wiring of the benchmark suite: options, the case parametrisation, the journal (and
its one-writer lock), the progress line, the machine-info hook, GPU pinning under pytest-xdist,
and the tie to the runner (`lifeline`: this process dies with the runner that started it).

Threads: the runner passes the thread count it chose (``CONVNN_BENCH_THREADS``, `host`); this
process sets torch's and faiss's pools to it before any case. The progress line names it and,
when other processes used the host during a case, says so and what to do.

Options (each also read from an environment variable, so plain ``pytest suites`` works):
  --bench-preset NAME   smoke (default), default, canonical, full      CONVNN_BENCH_PRESET
  --bench-device DEV    cpu or cuda (default: the preset's)            CONVNN_BENCH_DEVICE
  --bench-journal PATH  append each row to this JSON-lines file        CONVNN_BENCH_JOURNAL
  --bench-resume        skip cases the journal already holds
ConvNN rows are timed for every ``--impl`` (the root conftest's option; ``reference`` by
default). ``--benchmark-disable`` runs every case once, untimed, still checking correctness.

The journal's lock: started by the runner, this process shares the runner's lock (its
descriptor is passed down, ``CONVNN_BENCH_LOCK_FD``) and checks it; started by hand with a
journal, it takes the lock itself. Either way a journal another sweep is writing is refused.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from suites import jsonl
from suites.bench import host, journal, lifeline, measure
from suites.bench.cases import Case, unsupported
from suites.bench.machine import extra_machine_info
from suites.bench.presets import Preset, get_preset, partners
from suites.bench.record import measure_case
from suites.implementations import Implementation, load_implementation

_OPTIONS = (
    ("--bench-preset", "CONVNN_BENCH_PRESET", "smoke", "benchmark preset: smoke, default, canonical, full"),
    ("--bench-device", "CONVNN_BENCH_DEVICE", None, "device of the benchmark cases (default: the preset's)"),
    ("--bench-journal", "CONVNN_BENCH_JOURNAL", None, "append every benchmark row to this JSON-lines file"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("convnn-bench", "ConvNN benchmark sweep")
    for flag, env, default, text in _OPTIONS:
        group.addoption(flag, default=os.environ.get(env, default), help=f"{text} (env {env})")
    group.addoption("--bench-resume", action="store_true", default=False, help="skip cases the journal already holds")
    group.addoption("--bench-retry", action="append", default=[], help="with --bench-resume, rerun cases recorded with this status")


def _option(config: pytest.Config, flag: str) -> Any:
    """An option's value, falling back to its environment variable when this conftest was
    loaded too late to register options (``pytest suites``)."""
    for name, env, default, _ in _OPTIONS:
        if name == flag:
            return config.getoption(flag, default=None) or os.environ.get(env, default)
    return config.getoption(flag, default=False)


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    parent = os.environ.get(lifeline.PARENT_ENV)
    if parent and not worker:
        lifeline.keep(int(parent))
    elif parent:
        lifeline.keep(os.getppid())  # an xdist worker dies with the pytest that started it
    if worker and os.environ.get("CONVNN_BENCH_PINNED") == "1":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        if "," in visible:
            raise pytest.UsageError(f"xdist worker {worker} sees several GPUs ({visible}); the runner pins one per worker")
    threads = os.environ.get(host.THREADS_ENV)
    if threads:
        host.apply_threads(int(threads))
    path = _option(config, "--bench-journal")
    if path and not worker:
        config.stash[_LOCK] = _journal_lock(Path(path))


_LOCK = pytest.StashKey["jsonl.FileLock | None"]()


def _journal_lock(path: Path) -> jsonl.FileLock | None:
    """The runner's lock when it passed one down (None: nothing to release here), else this
    process's own; a journal that another live process is writing is refused."""
    lock = journal.lock_path(path)
    fd = os.environ.get(journal.LOCK_FD_ENV)
    if fd is not None and jsonl.holds(int(fd), lock):
        return None
    try:
        return jsonl.FileLock(lock).acquire(command="pytest", journal=str(path))
    except jsonl.LockHeld as held:
        raise pytest.UsageError(journal.refusal(path, held.holder)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    lock = config.stash.get(_LOCK, None)
    if lock is not None:
        lock.release()


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """CPU model and threads, GPU name, memory, driver, CUDA and torch versions."""
    machine_info.update(extra_machine_info())


class BenchState:
    """What the bench tests of one pytest session share: the preset, the implementations,
    the journal, the matmul peaks and the progress counters."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.preset: Preset = get_preset(_option(config, "--bench-preset"))
        self.device: str = _option(config, "--bench-device") or self.preset.device
        specs = config.getoption("--impl", default=None) or [os.environ.get("IMPL", "reference")]
        self.impls: dict[str, Implementation] = {}
        for spec in specs:
            impl = load_implementation(spec)
            self.impls[impl.name] = impl
        path = _option(config, "--bench-journal")
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        self.journal: Path | None = Path(f"{path}.{worker}" if worker else path) if path else None
        self.records = journal.read_all(path) if path else []
        self.timed = not config.getoption("benchmark_disable", default=False)
        self.peaks = journal.peaks(self.records)
        self.total = 0
        self.already = 0
        self.finished = 0
        self.started_at = time.monotonic()
        self.pending_line: str | None = None
        self.total_cost = 0.0  # estimated cost of this session's cases (see `_cost`)
        self.done_cost = 0.0
        self.all_cases = self.cases()
        self.cpu = host.cpu_sample()  # for the cores other processes used during each case
        self.cores = host.cores()
        self.warned = False

    def cases(self) -> list[Case]:
        return self.preset.cases(self.device, tuple(self.impls))

    def partners(self, case: Case) -> list[tuple[str, Case]]:
        """The baseline cases ``case`` is timed against in pairs (`presets.partners`)."""
        return partners(case, self.all_cases)

    def peak(self, device: str, dtype: str) -> float | None:
        """The device's matmul GFLOP/s in ``dtype``, measured once per run (kept in the journal)."""
        key = (device, dtype)
        if key not in self.peaks:
            try:
                self.peaks[key] = measure.matmul_peak(device, dtype)
            except RuntimeError:
                return None
            self._write({"type": "peak", "device": device, "dtype": dtype, "gflops": self.peaks[key]})
        return self.peaks[key]

    def out_of_time(self) -> bool:
        """True once the runner's time budget (``CONVNN_BENCH_DEADLINE``, epoch seconds) is spent."""
        deadline = os.environ.get("CONVNN_BENCH_DEADLINE")
        return deadline is not None and time.time() > float(deadline)

    def run(self, case: Case, benchmark: Any, nodeid: str) -> dict[str, Any]:
        if self.out_of_time():
            pytest.skip("the sweep's time budget is spent; rerun the same command to resume")
        impl = self.impls.get(case.implementation)
        reason = unsupported(case, impl)
        if reason is not None:
            pytest.skip(f"{case.implementation} does not support this case: {reason}")
        self._write({"type": "start", "id": case.id, "run": os.environ.get(journal.RUN_ENV)})
        self.cpu = host.cpu_sample()
        row = measure_case(
            case,
            impl,
            timing=self.preset.timing,
            benchmark=benchmark,
            timed=self.timed,
            peak_gflops=self.peak(case.device, case.dtype),
            nodeid=nodeid,
            partners=self.partners(case),
        )
        row["extra_info"]["others_cores"] = host.others_cores(self.cpu, host.cpu_sample())
        self._write({"type": "row", "row": row})
        self.finished += 1
        self._progress(case, row)
        return row

    def _write(self, record: dict[str, Any]) -> None:
        if self.journal is not None:
            journal.append(self.journal, record)

    def _progress(self, case: Case, row: dict[str, Any]) -> None:
        info = row["extra_info"]
        done = self.already + self.finished
        total = max(self.total, done)
        elapsed = time.monotonic() - self.started_at
        self.done_cost += _cost(case, len(self.partners(case)))
        eta = elapsed / self.done_cost * max(0.0, self.total_cost - self.done_cost)
        median = info.get("median")
        timing = f"{median * 1e3:9.2f} ms" if median else "   untimed  "
        verdict = info.get("verdict") or "-"
        ratios = " ".join(f"/{name} {p['median']:.2f}[{p['low']:.2f}-{p['high']:.2f}]n{p['n']}"
                          for name, p in (info.get("pairs") or {}).items() if "median" in p)
        others = info.get("others_cores")
        line = (f"[{done:4d}/{total}] {case.id:<66} {timing} {verdict} {info['status']:<10} "
                f"thr={torch.get_num_threads()} ETA {_clock(eta)}{' ' + ratios if ratios else ''}")
        if host.busy(others):
            line += f"  ! host busy: others used {others:.2f} of {self.cores} cores"
            warning = host.busy_warning(others, self.cores, torch.get_num_threads())
            if not self.warned and warning:
                line += "\n  " + warning
                self.warned = True
        self.pending_line = line


def _cost(case: Case, pairs: int = 0) -> float:
    """A case's expected cost for the ETA: its FLOPs plus a fixed per-case overhead (warm-up,
    gold, memory pass) expressed in FLOPs, and as much again for each baseline it is paired
    with (the pair budget is about twice the rounds' target)."""
    return (measure.flops(case)[1] + 5e9) * (1 + 2 * pairs)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


_STATE = pytest.StashKey[BenchState]()
#: The session's state, for hooks that receive no config (one pytest session per process).
_LAST_CONFIG: dict[str, BenchState] = {}


def _state(config: pytest.Config) -> BenchState:
    if _STATE not in config.stash:
        config.stash[_STATE] = BenchState(config)
        _LAST_CONFIG["state"] = config.stash[_STATE]
    return config.stash[_STATE]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Print the progress line of the case that just finished (outside output capture)."""
    state = _LAST_CONFIG.get("state")
    if report.when != "teardown" or state is None or state.pending_line is None:
        return
    line, state.pending_line = state.pending_line, None
    reporter = state.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None and state.config.getoption("verbose") >= 0:
        reporter.ensure_newline()
        reporter.write_line(line)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    state = _state(metafunc.config)
    params = []
    for case in state.cases():
        marks = []
        if case.device.startswith("cuda") and not torch.cuda.is_available():
            marks.append(pytest.mark.skip(reason="CUDA is not available on this host"))
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("case", params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    bench = [it for it in items if hasattr(it, "callspec") and "case" in it.callspec.params]
    if not bench:
        return
    state = _state(config)
    if _option(config, "--bench-resume"):
        done = journal.done_ids(state.records, tuple(config.getoption("--bench-retry", default=[]) or ()))
        skipped = [it for it in bench if it.callspec.params["case"].id in done]
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = [it for it in items if it not in skipped]
            bench = [it for it in bench if it not in skipped]
        state.already = len(skipped)
    state.total = state.already + len(bench)
    state.total_cost = sum(_cost(c, len(state.partners(c))) for c in (it.callspec.params["case"] for it in bench))


@pytest.fixture(scope="session")
def bench_state(request: pytest.FixtureRequest) -> BenchState:
    return _state(request.config)
