"""The data directory's writer lock (§1.5): one live process per data directory.

``<data>/.elastik-writer-lock.sqlite3`` is the reference's lock database
(``writer_lock(id=1, holder=<pid of last writer>)``, journal_mode=DELETE). We keep the file
and the holder row, and make liveness exact with an ``flock`` on that file: the kernel drops
it when the process dies, so a stale PID (crash, SIGKILL) never blocks a restart, while a
live holder always does, across processes and within one process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path

from .errors import FatalError
from .worldstore import readonly_uri

LOCK_NAME = ".elastik-writer-lock.sqlite3"


class WriterLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data: Path) -> WriterLock:
        path = data / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise FatalError(_io_message(exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise FatalError(
                "build Engine failed: data root writer lock is held "
                f"(last writer: PID {_read_holder(path)}): {data}"
            ) from None
        try:
            _write_holder(path, os.getpid())
        except sqlite3.Error:
            os.close(fd)
            raise FatalError(
                "build Engine failed: data root writer lock is held "
                f"(last writer: PID {_read_holder(path)}): {data}"
            ) from None
        return cls(path, fd)

    def release(self) -> None:
        """Drop the flock. The holder row keeps our PID, like the reference."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _io_message(exc: OSError) -> str:
    return (
        f"build Engine failed: data root IO error: {os.strerror(exc.errno or 0)} "
        f"(os error {exc.errno})"
    )


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=1.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS writer_lock("
        "id INTEGER PRIMARY KEY CHECK(id=1), holder TEXT NOT NULL DEFAULT '')"
    )
    return conn


def _write_holder(path: Path, pid: int) -> None:
    conn = _connect(path)
    try:
        conn.execute(
            "INSERT INTO writer_lock(id, holder) VALUES(1, ?) "
            "ON CONFLICT(id) DO UPDATE SET holder=excluded.holder",
            (str(pid),),
        )
    finally:
        conn.close()


def _read_holder(path: Path) -> str:
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True, timeout=1.0)
        try:
            row = conn.execute("SELECT holder FROM writer_lock WHERE id=1").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return "unknown"
    return str(row[0]) if row and row[0] else "unknown"
