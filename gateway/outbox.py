"""The gateway's durable outbox: writes the core could not take yet, kept in SQLite.

One SQLite database in the state directory (``outbox.db``), WAL mode, ``synchronous=FULL``.
Every change goes through ONE writer thread fed by a queue: it drains whatever is waiting,
applies it in one transaction, commits (one fsync of the WAL) and only then answers each
waiter (group commit). So N concurrent appends cost one fsync, not N, and a caller whose
append returned knows its entry survives a power cut.

Reads (an entry's body for replay) use a second connection on its own thread. The CLI
(``gateway/outbox_cli.py``) opens a third, read-only one, from another process.

Tables: ``pending`` (entries waiting for the core, replayed in ``seq`` order per path),
``dead`` (dead letters: entries the core refused for good, or dropped/expired by the
bounds, with the final status and body), ``counters`` (lifetime totals shown by the CLI)
and ``meta`` (schema version).

The forwarding policy (when to queue, order, backoff) lives in ``gateway/forwarder.py``;
this module only stores, and owns the schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

DB_NAME = "outbox.db"
LOCK_NAME = "outbox.lock"
RESERVE_NAME = "outbox.reserve"
# Ballast file released when the disk fills up, so that bookkeeping (replayed entries
# deleted, dead-letter moves, counters) still has room for its WAL frames: 64 KiB is 15
# frames of 4 KiB pages, a few dozen small transactions. Appends resume only once the
# file system has room to put the reserve back.
RESERVE_BYTES = 64 * 1024
SCHEMA_VERSION = "1"

# Accounting overhead per entry (row header, seq, timestamps, key, index slot), so that
# max_bytes also bounds the number of tiny entries, not only their payload.
ENTRY_OVERHEAD_BYTES = 128
# Ops the writer applies in one transaction at most: bounds the latency the first waiter
# of a batch pays for the others (about 10 ms of SQLite work on a Raspberry Pi class CPU).
MAX_BATCH = 512
# Response bodies kept with a dead letter: enough for any core error message (they are
# one line), small enough that a chatty 4xx cannot fill the disk.
DEAD_RESPONSE_MAX = 1024

Policy = Literal["reject", "drop-oldest"]

# Lifetime totals kept in the ``counters`` table (StoreAndForward.stats() and the CLI).
COUNTER_NAMES = (
    "queued_total",  # writes committed to the outbox
    "replayed_total",  # queued writes the core accepted on replay
    "dead_total",  # queued writes the core refused for good (4xx): dead letters
    "dropped_total",  # queued writes moved to dead letters by drop-oldest (bytes bound)
    "expired_total",  # queued writes moved to dead letters by drop-oldest (age bound)
    "rejected_total",  # writes refused with OutboxFull because the outbox was at a bound
    "disk_full_total",  # writes refused with OutboxFull because the disk was full
    "passthrough_total",  # writes the core answered directly (no outbox)
    "replay_retries_total",  # replays answered 5xx/408/429 (retried later, path backs off)
    "unavailable_total",  # times the core was found unreachable (went offline)
    "store_errors_total",  # outbox bookkeeping writes that failed (disk full, I/O)
    "dead_pruned_total",  # oldest dead letters deleted to stay within max_dead_letters
)


class OutboxConfigError(ValueError):
    """A config value is invalid; the message names the key (``outbox.max_bytes: ...``)."""


class OutboxLocked(RuntimeError):
    """Another gateway process already owns this state directory's outbox."""


class DiskFull(Exception):
    """SQLite said SQLITE_FULL or the OS said ENOSPC: nothing of the batch was committed."""


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """The store-and-forward layer's settings (``[outbox]`` in the gateway's TOML).

    Every field is documented in gateway/DESIGN-outbox.md (a test checks that).
    """

    max_bytes: int = 64 * 1024 * 1024
    max_age_s: float = 24 * 3600.0
    policy: Policy = "reject"
    replay_rate: float = 200.0
    replay_concurrency: int = 8
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    max_dead_letters: int = 10_000

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> OutboxConfigError:
            return OutboxConfigError(f"outbox.{name}: {why}, got {getattr(self, name)!r}")

        for name in ("max_bytes", "replay_concurrency", "max_dead_letters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise bad(name, "must be a positive integer")
        for name in ("max_age_s", "replay_rate", "backoff_min_s", "backoff_max_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise bad(name, "must be a positive number")
            if value != value or value == float("inf"):
                raise bad(name, "must be finite")
        if self.policy not in ("reject", "drop-oldest"):
            raise bad("policy", 'must be "reject" or "drop-oldest"')
        if self.backoff_max_s < self.backoff_min_s:
            raise bad("backoff_max_s", "must be >= backoff_min_s")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "outbox") -> OutboxConfig:
        """Build from a TOML table; unknown keys and bad values name the key."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise OutboxConfigError(f"{where}.{key}: unknown key")
        try:
            return cls(**dict(data))
        except OutboxConfigError as exc:
            raise OutboxConfigError(str(exc).replace("outbox.", f"{where}.", 1)) from None


@dataclass(frozen=True, slots=True)
class NewEntry:
    path: str
    method: str
    body: bytes
    headers: Mapping[str, str]
    idempotency_key: str
    source: str
    device: str | None
    accepted_at: float  # wall clock (time.time()), survives restarts

    @property
    def size(self) -> int:
        return entry_size(self.path, self.body, self.headers)


@dataclass(slots=True)
class PendingMeta:
    """What the forwarder keeps in memory per entry; the body stays on disk."""

    seq: int
    path: str
    size: int
    accepted_at: float
    attempts: int = 0
    next_attempt: float = 0.0  # wall clock


@dataclass(frozen=True, slots=True)
class StoredEntry:
    seq: int
    path: str
    method: str
    body: bytes
    headers: dict[str, str]
    idempotency_key: str
    source: str
    device: str | None
    accepted_at: float
    attempts: int


def entry_size(path: str, body: bytes, headers: Mapping[str, str]) -> int:
    hdr = sum(len(k) + len(v) for k, v in headers.items())
    return len(body) + len(path.encode()) + hdr + ENTRY_OVERHEAD_BYTES


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, DiskFull):
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and (code & 0xFF) == sqlite3.SQLITE_FULL:
            return True
        return "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL, method TEXT NOT NULL, body BLOB NOT NULL, headers TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, source TEXT NOT NULL, device TEXT,
    accepted_at REAL NOT NULL, size INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0,
    last_status INTEGER);
CREATE TABLE IF NOT EXISTS dead(
    id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL,
    path TEXT NOT NULL, method TEXT NOT NULL, body BLOB NOT NULL, headers TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, source TEXT NOT NULL, device TEXT,
    accepted_at REAL NOT NULL, size INTEGER NOT NULL, attempts INTEGER NOT NULL,
    reason TEXT NOT NULL, status INTEGER, response BLOB, died_at REAL NOT NULL,
    retry_requested INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLS = "seq, path, method, body, headers, idempotency_key, source, device, accepted_at, size"


def connect(db: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the outbox's pragmas. Read-only ones never create or write."""
    if readonly:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None, timeout=5)
    else:
        conn = sqlite3.connect(db, isolation_level=None, timeout=5, check_same_thread=False)
    try:
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # After a checkpoint the WAL file is cut back to 4 MiB: an outbox that filled
            # up during an outage does not keep its peak size on the SD card forever.
            conn.execute("PRAGMA journal_size_limit=4194304")
        conn.execute("PRAGMA busy_timeout=5000")
    except BaseException:
        conn.close()
        raise
    return conn


class OutboxSchemaError(RuntimeError):
    """The database is not an outbox this version understands (left untouched)."""


def init_schema(conn: sqlite3.Connection) -> None:
    """Create the tables, or check that an existing outbox has our schema version (a
    database of another version is refused before anything is changed in it)."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone()
    if has_meta:
        row = conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            found = row[0] if row else None
            raise OutboxSchemaError(
                f"outbox schema version {found!r} is not supported (this gateway: {SCHEMA_VERSION})"
            )
    conn.executescript(_SCHEMA)
    conn.execute(
        "INSERT OR IGNORE INTO meta(name, value) VALUES('schema_version', ?)", (SCHEMA_VERSION,)
    )


# ---------------------------------------------------------------- writer operations
# Each runs on the writer thread inside the batch transaction and returns its result.


def _op_append(entry: NewEntry) -> Callable[[sqlite3.Connection], int]:
    def run(conn: sqlite3.Connection) -> int:
        cur = conn.execute(
            "INSERT INTO pending(path, method, body, headers, idempotency_key, source, device,"
            " accepted_at, size) VALUES(?,?,?,?,?,?,?,?,?)",
            (
                entry.path,
                entry.method,
                entry.body,
                json.dumps(dict(entry.headers), sort_keys=True),
                entry.idempotency_key,
                entry.source,
                entry.device,
                entry.accepted_at,
                entry.size,
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    return run


def _op_done(seqs: list[int]) -> Callable[[sqlite3.Connection], None]:
    def run(conn: sqlite3.Connection) -> None:
        conn.executemany("DELETE FROM pending WHERE seq=?", [(seq,) for seq in seqs])

    return run


def _op_dead(
    seq: int, reason: str, status: int | None, response: bytes, keep: int
) -> Callable[[sqlite3.Connection], int]:
    """Returns how many of the oldest dead letters were deleted to keep ``keep``."""

    def run(conn: sqlite3.Connection) -> int:
        conn.execute(
            f"INSERT INTO dead(seq, path, method, body, headers, idempotency_key, source,"
            f" device, accepted_at, size, attempts, reason, status, response, died_at)"
            f" SELECT {_COLS}, attempts, ?, ?, ?, ? FROM pending WHERE seq=?",
            (reason, status, response[:DEAD_RESPONSE_MAX], time.time(), seq),
        )
        conn.execute("DELETE FROM pending WHERE seq=?", (seq,))
        return conn.execute(
            "DELETE FROM dead WHERE id <= (SELECT max(id) FROM dead) - ?",
            (keep,),
        ).rowcount

    return run


def _op_reschedule(
    seq: int, attempts: int, next_attempt: float, status: int | None
) -> Callable[[sqlite3.Connection], None]:
    def run(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE pending SET attempts=?, next_attempt=?, last_status=? WHERE seq=?",
            (attempts, next_attempt, status, seq),
        )

    return run


def _op_counters(values: Mapping[str, int]) -> Callable[[sqlite3.Connection], None]:
    snapshot = dict(values)

    def run(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO counters(name, value) VALUES(?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            sorted(snapshot.items()),
        )

    return run


def _op_requeue() -> Callable[[sqlite3.Connection], list[PendingMeta]]:
    """Move dead letters the CLI marked for retry back to ``pending`` (new seqs: they go
    to the back of their path's queue)."""

    def run(conn: sqlite3.Connection) -> list[PendingMeta]:
        return requeue_marked(conn)

    return run


def requeue_marked(conn: sqlite3.Connection) -> list[PendingMeta]:
    rows = conn.execute(
        "SELECT id, path, method, body, headers, idempotency_key, source, device,"
        " accepted_at, size, reason FROM dead WHERE retry_requested=1 ORDER BY id"
    ).fetchall()
    metas = []
    for row in rows:
        dead_id, path, method, body, headers, key, source, device, accepted_at, size, reason = row
        if reason == "rejected":
            # The core refused it, so it was never applied: a fresh key keeps the core from
            # answering the retry with the refusal it remembered for the old one.
            key = f"{key}.r{dead_id}"
        cur = conn.execute(
            "INSERT INTO pending(path, method, body, headers, idempotency_key, source, device,"
            " accepted_at, size) VALUES(?,?,?,?,?,?,?,?,?)",
            (path, method, body, headers, key, source, device, accepted_at, size),
        )
        conn.execute("DELETE FROM dead WHERE id=?", (dead_id,))
        assert cur.lastrowid is not None
        metas.append(PendingMeta(cur.lastrowid, path, size, accepted_at))
    return metas


_STOP = object()


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    on_commit: Callable[[Any], None] | None = None
    on_fail: Callable[[BaseException], None] | None = None


class Outbox:
    """The durable store. Submit methods are called from the event loop thread, return a
    future that resolves once the change is committed, and keep submission order."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.db_path = self.state_dir / DB_NAME
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._rconn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._closed = False
        self.commits = 0  # transactions committed (group commit: fewer than ops)
        self.ops = 0

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> tuple[list[PendingMeta], dict[str, int]]:
        """Lock the state dir, create/migrate the schema, move CLI-requested retries back
        to pending, and return the pending entries (seq order) and the stored counters."""
        self._loop = asyncio.get_running_loop()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        # The CLI takes the lock for a moment to see whether a gateway runs: try for 1 s.
        for attempt in range(20):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt == 19:
                    os.close(fd)
                    raise OutboxLocked(
                        f"outbox in {self.state_dir} is in use by another gateway process"
                    ) from None
                await asyncio.sleep(0.05)
        self._lock_fd = fd
        try:
            # The outbox holds the devices' Authorization headers: owner only. SQLite gives
            # the -wal and -shm files the database file's permissions.
            os.close(os.open(self.db_path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(self.db_path, 0o600)
            conn = connect(self.db_path)
            try:
                init_schema(conn)
                conn.execute("BEGIN IMMEDIATE")
                requeue_marked(conn)
                conn.execute("COMMIT")
                metas = [
                    PendingMeta(*row)
                    for row in conn.execute(
                        "SELECT seq, path, size, accepted_at, attempts, next_attempt"
                        " FROM pending ORDER BY seq"
                    )
                ]
                counters = {name: int(v) for name, v in conn.execute("SELECT * FROM counters")}
            except BaseException:
                conn.close()
                raise
        except BaseException:
            self._unlock()
            raise
        self.ensure_reserve()
        self._thread = threading.Thread(
            target=self._writer_main, args=(conn,), name="outbox-writer", daemon=True
        )
        self._thread.start()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-reader")
        return metas, counters

    async def close(self) -> None:
        """Commit everything submitted so far, then stop the threads and unlock."""
        if self._closed or self._thread is None:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        if self._reader is not None:
            self._reader.submit(self._close_reader).result()
            self._reader.shutdown(wait=True)
        self._unlock()

    def _close_reader(self) -> None:
        if self._rconn is not None:
            self._rconn.close()
            self._rconn = None

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ disk reserve
    def ensure_reserve(self) -> bool:
        """Put the reserve file back (True) unless the disk has no room for it (False)."""
        path = self.state_dir / RESERVE_NAME
        try:
            if path.exists() and path.stat().st_size >= RESERVE_BYTES:
                return True
            with open(path, "wb") as f:
                f.write(b"\0" * RESERVE_BYTES)
                f.flush()
                os.fsync(f.fileno())
            return True
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink()
            return False

    def release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            (self.state_dir / RESERVE_NAME).unlink()

    # ------------------------------------------------------------------ writes
    def _submit(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        on_commit: Callable[[Any], None] | None = None,
        on_fail: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Future[Any]:
        if self._closed or self._loop is None:
            raise RuntimeError("outbox is closed")
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_Op(fn, fut, on_commit, on_fail))
        return fut

    def append(
        self,
        entry: NewEntry,
        on_commit: Callable[[int], None] | None = None,
        on_fail: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Future[int]:
        return self._submit(_op_append(entry), on_commit, on_fail)

    def done(self, seqs: list[int]) -> asyncio.Future[None]:
        """Forget replayed entries (one op for many: replays finish in bursts)."""
        return self._submit(_op_done(seqs))

    def dead(
        self, seq: int, reason: str, status: int | None, response: bytes, keep: int
    ) -> asyncio.Future[int]:
        return self._submit(_op_dead(seq, reason, status, response, keep))

    def reschedule(
        self, seq: int, attempts: int, next_attempt: float, status: int | None
    ) -> asyncio.Future[None]:
        return self._submit(_op_reschedule(seq, attempts, next_attempt, status))

    def save_counters(self, values: Mapping[str, int]) -> asyncio.Future[None]:
        return self._submit(_op_counters(values))

    def requeue(self, on_commit: Callable[[list[PendingMeta]], None]) -> asyncio.Future[Any]:
        return self._submit(_op_requeue(), on_commit)

    def _writer_main(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(op is _STOP for op in batch)
                ops = [op for op in batch if op is not _STOP]
                if ops:
                    results = self._apply(conn, ops)
                    assert self._loop is not None
                    with contextlib.suppress(RuntimeError):  # loop already closed
                        self._loop.call_soon_threadsafe(self._deliver, ops, results)
                if stop:
                    break
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def _apply(self, conn: sqlite3.Connection, ops: list[_Op]) -> list[tuple[bool, Any]]:
        """One transaction for the whole batch; a failing op is rolled back alone (its
        savepoint), unless SQLite aborted the whole transaction: then every op fails."""
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                conn.execute("SAVEPOINT op")
                try:
                    value = op.fn(conn)
                except Exception as exc:
                    if not conn.in_transaction:
                        raise
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, _classify(exc)))
                else:
                    conn.execute("RELEASE op")
                    results.append((True, value))
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            err = _classify(exc)
            return [(False, err)] * len(ops)
        self.commits += 1
        self.ops += len(ops)
        return results

    def _deliver(self, ops: list[_Op], results: list[tuple[bool, Any]]) -> None:
        for op, (ok, value) in zip(ops, results, strict=True):
            if ok:
                if op.on_commit is not None:
                    op.on_commit(value)
                if not op.future.done():
                    op.future.set_result(value)
            else:
                if op.on_fail is not None:
                    op.on_fail(value)
                if not op.future.done():
                    op.future.set_exception(value)
                    # Fire-and-forget ops (done/reschedule) may have no awaiter: the
                    # forwarder counts their failures itself; silence "never retrieved".
                    op.future.exception()

    # ------------------------------------------------------------------ reads
    async def load(self, seqs: list[int]) -> dict[int, StoredEntry]:
        """The stored entries among ``seqs`` (one round trip to the reader thread for
        several: a thread hop costs more than the SQLite lookups)."""
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._load, seqs)

    def _load(self, seqs: list[int]) -> dict[int, StoredEntry]:
        if self._rconn is None:
            self._rconn = connect(self.db_path)
        rows = self._rconn.execute(
            f"SELECT {_COLS}, attempts FROM pending WHERE seq IN ({','.join('?' * len(seqs))})",
            seqs,
        ).fetchall()
        out = {}
        for row in rows:
            seq, path, method, body, headers, key, source, device, accepted_at, _size, att = row
            out[seq] = StoredEntry(
                seq, path, method, bytes(body), json.loads(headers), key, source, device,
                accepted_at, att,
            )  # fmt: skip
        return out

    async def retry_requested(self) -> int:
        """Dead letters the CLI marked for retry (polled by the forwarder; a read only)."""
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._count_marked)

    def _count_marked(self) -> int:
        if self._rconn is None:
            self._rconn = connect(self.db_path)
        return int(
            self._rconn.execute("SELECT count(*) FROM dead WHERE retry_requested=1").fetchone()[0]
        )

    async def dead_count(self) -> int:
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._count_dead)

    def _count_dead(self) -> int:
        if self._rconn is None:
            self._rconn = connect(self.db_path)
        return int(self._rconn.execute("SELECT count(*) FROM dead").fetchone()[0])


def _classify(exc: BaseException) -> BaseException:
    if is_disk_full(exc):
        return DiskFull(str(exc))
    return exc
