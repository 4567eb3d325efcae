"""The sweep's pytest child dies with the runner that started it.

- `child_setup` runs in the child between fork and exec (``preexec_fn``): it puts the child in a
  process group of its own (the runner forwards signals to that group, so a terminal's Ctrl-C
  reaches pytest once, through the runner) and asks the kernel for a parent-death signal
  (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, kept across exec): when the runner dies, even by
  SIGKILL, the kernel kills the child. If the runner died before that call, the child kills
  itself at once.
- `keep` runs in the child's pytest (its conftest) and does the same for processes that were
  not started through `child_setup`; where ``prctl`` does not exist it starts a watchdog thread
  that polls the parent PID.
- `forward_signals` is the runner's side: SIGINT, SIGTERM and SIGHUP become one SIGINT to the
  child's group (pytest stops cleanly, the journal keeps every finished case); a child that has
  not exited `GRACE_S` seconds later is killed.

The journal is safe either way: rows are appended and forced to disk as each case ends, and a
case cut short has a ``start`` record and no row, so the next run runs it again.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

#: Environment variable carrying the runner's PID to its pytest child.
PARENT_ENV = "CONVNN_BENCH_PARENT"
PR_SET_PDEATHSIG = 1
#: Seconds a child has to stop after the forwarded SIGINT before it is killed.
GRACE_S = 10.0


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved in the parent (nothing is loaded between fork and exec)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return fn


_PRCTL = _load_prctl()


def _death_signal(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux)."""
    return _PRCTL is not None and _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def child_setup(parent_pid: int) -> Callable[[], None]:
    """The ``preexec_fn`` of the pytest child of the runner whose PID is ``parent_pid``."""

    def setup() -> None:
        os.setpgid(0, 0)
        _death_signal(signal.SIGKILL)
        if os.getppid() != parent_pid:  # the runner died between fork and the call above
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


def keep(parent_pid: int, interval_s: float = 0.5) -> str:
    """In the child: die when ``parent_pid`` does. Returns how: ``"prctl"`` or ``"watchdog"``."""
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
    if _death_signal(signal.SIGKILL):
        return "prctl"

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="convnn-bench-lifeline", daemon=True).start()
    return "watchdog"


@contextlib.contextmanager
def forward_signals(proc: subprocess.Popen[bytes]) -> Iterator[list[tuple[int, float]]]:
    """While the block runs, SIGINT, SIGTERM and SIGHUP to this process are sent on to the
    child's process group as SIGINT; yields the list of (signal, monotonic time) received. On
    leaving, a child still running is killed with its group."""
    received: list[tuple[int, float]] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append((signum, time.monotonic()))
        _signal_group(proc, signal.SIGINT)

    names = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in names}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def wait(proc: subprocess.Popen[bytes], received: list[tuple[int, float]]) -> int:
    """The child's exit code; a child still running `GRACE_S` seconds after the first forwarded
    signal is killed with its group."""
    while True:
        try:
            return proc.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            if received and time.monotonic() - received[0][1] > GRACE_S:
                _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
