"""The sweep runner owns its processes and its journal: its pytest child dies with it, even when
it is killed with SIGKILL; a rerun resumes with the right counts; one sweep writes a journal at a
time. These run the real runner (``python -m suites.bench``) on the ``tiny`` preset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from suites import jsonl
from suites.bench import conftest as bench_conftest
from suites.bench import journal
from suites.bench.presets import get_preset

ROOT = Path(__file__).resolve().parents[2]
TINY = len(get_preset("tiny").cases("cpu"))
WAIT_S = 180.0  # generous: the host is shared


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "suites.bench", "--preset", "tiny", "--device", "cpu", "--out", str(out)]


def _start(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(_command(out), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _journal(out: Path) -> Path:
    found = sorted(out.glob("tiny-*-cpu.jsonl"))
    return found[0] if found else out / "missing.jsonl"


def _rows(out: Path) -> set[str]:
    return {r["param"] for r in journal.rows(journal.read(_journal(out)))}


def _holder(out: Path) -> dict[str, object]:
    return jsonl.read_holder(journal.lock_path(_journal(out)))


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_sigkill_of_the_runner_leaves_no_orphan_and_a_rerun_resumes_with_the_right_counts(tmp_path: Path) -> None:
    """SIGKILL the runner mid-sweep (its pytest paused after two cases, so the kill is surely
    mid-sweep): the pytest child is gone within seconds and writes nothing more; the lock file
    still names the dead runner, yet the same command runs again at once, says how many cases
    are left out of the preset's, runs only those (the one cut short included, not marked
    crashed) and ends with every case once."""
    runner = _start(tmp_path)
    try:
        _wait_for(lambda: len(_rows(tmp_path)) >= 2 and bool(_holder(tmp_path).get("child")), "two finished cases")
        child = int(str(_holder(tmp_path)["child"]))
        os.kill(child, signal.SIGSTOP)
        done = _rows(tmp_path)
        runner.kill()
        runner.wait(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    _wait_for(lambda: not _alive(child), f"the orphaned pytest (PID {child}) to die", timeout=15)
    assert 2 <= len(done) < TINY
    time.sleep(0.5)
    assert _rows(tmp_path) == done, "rows were written after the runner died"
    assert _holder(tmp_path).get("pid") == runner.pid  # a stale lock: its holder is dead

    rerun = subprocess.run(_command(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out
    assert f"{TINY - len(done)} of {TINY} cases to run" in out, out
    assert f"{TINY} rows ({TINY} of {TINY} cases)" in out, out
    doc = json.loads(_journal(tmp_path).with_suffix(".json").read_text(encoding="utf-8"))
    params = [b["param"] for b in doc["benchmarks"]]
    assert len(params) == len(set(params)) == TINY
    assert {b["extra_info"]["status"] for b in doc["benchmarks"]} == {"ok"}
    assert _holder(tmp_path) == {}  # released: nothing stale left behind


def test_a_second_sweep_on_the_same_journal_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """While one sweep runs (its pytest paused, so it surely still runs), the same command is
    refused at once (exit 75) with a message naming the journal and the PIDs holding it, and
    writes nothing; SIGTERM to the first stops it and its child cleanly (exit 128 + 15), rows
    kept for a rerun."""
    first = _start(tmp_path)
    try:
        _wait_for(lambda: bool(_holder(tmp_path).get("child")), "the first sweep's pytest")
        child = int(str(_holder(tmp_path)["child"]))
        os.kill(child, signal.SIGSTOP)
        before = journal.read(_journal(tmp_path))
        second = subprocess.run(_command(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S)
        message = second.stdout + second.stderr
        assert second.returncode == 75, message
        assert str(_journal(tmp_path)) in message and f"PID {first.pid}, its pytest PID {child}" in message, message
        assert journal.read(_journal(tmp_path)) == before
        os.kill(child, signal.SIGCONT)
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGTERM, out
    assert "stopped" in out and "rerun the same command to resume" in out, out
    _wait_for(lambda: not _alive(child), f"the first sweep's pytest (PID {child}) to exit", timeout=15)


def test_file_lock_one_holder_and_the_child_check(tmp_path: Path) -> None:
    """`FileLock` refuses a second holder (naming the first's PID), frees on release; a pytest
    given a journal whose lock another process holds refuses to start; a descriptor of the held
    lock passes `jsonl.holds`, a descriptor of another file does not."""
    path = tmp_path / "j.jsonl"
    lock = jsonl.FileLock(journal.lock_path(path)).acquire(command="first")
    try:
        with pytest.raises(jsonl.LockHeld) as held:
            jsonl.FileLock(journal.lock_path(path)).acquire()
        assert held.value.holder["pid"] == os.getpid() and held.value.holder["command"] == "first"
        with pytest.raises(pytest.UsageError, match="another sweep is writing the journal"):
            bench_conftest._journal_lock(path)
        assert lock.fd is not None and jsonl.holds(lock.fd, journal.lock_path(path))
        other = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT)
        assert not jsonl.holds(other, journal.lock_path(path))
        os.close(other)
    finally:
        lock.release()
    again = jsonl.FileLock(journal.lock_path(path)).acquire()
    again.release()
    assert jsonl.read_holder(journal.lock_path(path)) == {}
