"""Crash-safe JSON-lines files: one record per line, appended and forced to disk before
`append` returns, so a process killed mid-run keeps every record it wrote. The conformance
runner's results log and the benchmark sweep's journal both use it. `FileLock` keeps a file to
one writer (the sweep holds it on its journal for the whole run).

Reading treats the file as untrusted input (`reports.untrusted`, shared with the report): any
bytes give the good records and the lines skipped, with why."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reports.untrusted import Skipped, read_json_lines

Record = dict[str, Any]


def append(path: str | Path, record: Record) -> None:
    """Append one record and force it to disk (safe against a kill right after). A last line
    left without its newline (a writer killed mid-write) is ended first, so the record starts a
    line of its own and the torn fragment stays one skipped line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=str, allow_nan=True) + "\n"
    with path.open("ab+") as fh:
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                line = "\n" + line
        fh.write(line.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read(path: str | Path) -> list[Record]:
    """Every usable record of ``path`` (none when it does not exist); see `read_checked` for
    what is skipped."""
    return read_checked(path)[0]


def read_checked(path: str | Path, check: Callable[[Record], str | None] | None = None) -> tuple[list[Record], list[Skipped]]:
    """The JSON objects of ``path``, one per line, that ``check`` accepts, and each line skipped
    with why: a torn last line (a kill mid-write), a line that is not UTF-8, not JSON or not an
    object, a record ``check`` refuses. Any bytes: never raises (an unreadable file is one
    skipped entry)."""
    return read_json_lines(path, label=str(path), check=check)


# ------------------------------------------------------------------------------ one writer


class LockHeld(RuntimeError):
    """Another live process holds the lock; ``holder`` is what it wrote into the lock file
    (``pid``, ``command``, ``since``, and ``child`` once it started one)."""

    def __init__(self, path: Path, holder: Record) -> None:
        self.path, self.holder = path, holder
        pids = ", ".join(f"{k} {holder[k]}" for k in ("pid", "child") if holder.get(k))
        super().__init__(f"{path} is held by another process ({pids or 'PID unknown'})")


class FileLock:
    """An exclusive advisory lock (``fcntl.flock``) on ``path``, for one writer of a file beside
    it. The kernel drops it when every descriptor of the open file is closed, in particular when
    the holder dies, so a stale lock never blocks. The holder writes its PID and command line
    into the file (for the refusal message); a child started with ``pass_fds=(lock.fd,)`` shares
    the lock and keeps it while it lives, so no second writer starts while an orphan writes.

        with FileLock(path).acquire(command="...") as lock: ...   # raises LockHeld when taken
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fd: int | None = None
        self.holder: Record = {}

    def acquire(self, **info: Any) -> FileLock:
        """Take the lock without waiting (`LockHeld` when a live process has it) and record
        ``info`` with this process's PID in the file."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise LockHeld(self.path, read_holder(self.path)) from None
        self.fd = fd
        self.update(pid=os.getpid(), since=round(time.time(), 3), **info)
        return self

    def update(self, **info: Any) -> None:
        """Add ``info`` to what the lock file says about its holder."""
        if self.fd is None:
            raise RuntimeError("the lock is not held")
        self.holder.update(info)
        data = (json.dumps(self.holder, default=str) + "\n").encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        """Empty the file (no stale PID left in it) and drop the lock."""
        if self.fd is None:
            return
        import fcntl

        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(path: str | Path) -> Record:
    """What the lock file at ``path`` says about its holder (empty when nothing readable)."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
        holder = json.loads(text) if text else {}
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON
        return {}
    return holder if isinstance(holder, dict) else {}


def holds(fd: int, path: str | Path) -> bool:
    """True when descriptor ``fd`` is open on the lock file ``path`` and holds (or could take)
    its lock: how a child checks the lock its parent passed down."""
    import fcntl

    try:
        mine, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a no-op when this open file has it
    except OSError:
        return False
    return True
