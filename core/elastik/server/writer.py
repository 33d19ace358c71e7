"""The single writer thread: group commit for every write.

Writes arrive on a queue. The thread takes what is waiting (bounded batch), opens ONE
transaction, applies each op, commits once (one fsync under ``synchronous=FULL``), lets the handler publish the committed state, and only
then resolves the waiters' futures on their event loops, in commit order.

An op that is refused (precondition, quota, 404: any ElastikError) fails alone: the handler
raises refusals before it writes anything, so the fast path needs no savepoints (each
SQLite statement costs a GIL round trip). If anything else fails mid-batch, the batch is
rolled back and replayed with one SAVEPOINT per op, so only the failing op fails. While the
thread waits for the disk, new writes queue up and form the next batch: the more
concurrent writers, the bigger the batches.

The semantics of an op (what put/append/delete do) belong to the handler (``mutations``);
this module owns batching, transactions and delivery.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import ElastikError, StorageFailure
from .model import Change, Idempotency, Precondition, WriteResult

log = logging.getLogger("elastik.server.writer")

# Ops per transaction. 512 covers hundreds of concurrent clients in one fsync while keeping
# a batch's latency (and the time other waiters sit behind it) to a few milliseconds.
MAX_BATCH_OPS = 512
# Body bytes per transaction: past 64 MiB the fsync dominates anyway, and a bound keeps the
# WAL (and the writer's memory) from growing by gigabytes in one batch.
MAX_BATCH_BYTES = 64 * 1024 * 1024


@dataclass(slots=True, eq=False)
class Op:
    kind: str  # "put" | "append" | "delete"
    world: str
    memory: bool
    body: bytes = b""
    content_type: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    precondition: Precondition | None = None
    idempotency: Idempotency | None = None
    future: asyncio.Future[WriteResult] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    result: WriteResult | None = None
    error: BaseException | None = None
    change: Change | None = None
    staged: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_sql(self) -> bool:
        # Memory puts/appends without a key touch no table; deletes write the ledger.
        return not self.memory or self.idempotency is not None or self.kind == "delete"


class BatchHandler(Protocol):
    def begin(self, ops: list[Op]) -> Any: ...

    def apply(self, ctx: Any, op: Op) -> None: ...

    def maintenance(self, ctx: Any, force: bool) -> bool: ...

    def after_commit(self, ctx: Any, ops: list[Op]) -> None: ...


@dataclass
class WriterStats:
    batches: int = 0
    ops: int = 0
    commits: int = 0
    failed_commits: int = 0
    max_batch: int = 0
    isolated_retries: int = 0


_STOP = object()


class Writer:
    def __init__(
        self,
        conn: Any,
        handler: BatchHandler,
        deliver: Callable[[list[Op]], None],
    ) -> None:
        self.conn = conn
        self.handler = handler
        self._deliver = deliver
        self.stats = WriterStats()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="elastik-writer", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, op: Op) -> None:
        if self._stopping:
            raise StorageFailure()
        self._queue.put(op)

    def depth(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        """Process everything queued, run final maintenance, and join the thread."""
        if self._stopping:
            return
        self._stopping = True
        self._queue.put(_STOP)
        self._thread.join()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[Op] = [first]  # type: ignore[list-item]
            size = len(batch[0].body)
            while len(batch) < MAX_BATCH_OPS and size < MAX_BATCH_BYTES:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)  # type: ignore[arg-type]
                size += len(nxt.body)  # type: ignore[attr-defined]
            self._process_safely(batch, force_maintenance=False)
        self._process_safely([], force_maintenance=True)

    def _process_safely(self, batch: list[Op], force_maintenance: bool) -> None:
        """The thread must survive anything: a dead writer would hang every later write."""
        try:
            self._process(batch, force_maintenance)
        except Exception:
            log.exception("writer failed on a batch of %d ops", len(batch))
            for op in batch:
                op.error, op.result, op.change = StorageFailure(), None, None
            try:
                self._deliver(batch)
            except Exception:
                log.exception("could not deliver failures")

    def _process(self, batch: list[Op], force_maintenance: bool) -> None:
        try:
            ok = self._attempt(batch, force_maintenance, isolate=False)
        except _Unexpected:
            # Something other than a documented refusal failed mid-op (a SQLite error, a
            # bug): the batch was rolled back. Run it again with a SAVEPOINT per op, so that
            # op fails alone and the others still commit.
            self.stats.isolated_retries += 1
            for op in batch:
                op.result = op.error = op.change = None
            try:
                ok = self._attempt(batch, force_maintenance, isolate=True)
            except _Unexpected:  # pragma: no cover - isolate=True never raises it
                ok = False
        if not ok:
            for op in batch:
                op.error = StorageFailure()
                op.result = None
                op.change = None
        if batch:
            self.stats.batches += 1
            self.stats.ops += len(batch)
            self.stats.max_batch = max(self.stats.max_batch, len(batch))
            self._deliver(batch)

    def _attempt(self, batch: list[Op], force_maintenance: bool, *, isolate: bool) -> bool:
        """One transaction for the batch. True when committed (and published).

        Fast path (``isolate=False``): no savepoints. The handler's contract is that a
        refusal (any ElastikError) is raised before the op writes anything, so a refused op
        needs no rollback. Any other exception rolls the batch back and raises _Unexpected.
        """
        conn = self.conn
        handler = self.handler
        ctx = handler.begin(batch)
        in_txn = False
        try:
            for op in batch:
                sql = op.needs_sql
                if sql and not in_txn:
                    conn.execute("BEGIN IMMEDIATE")
                    in_txn = True
                if isolate and sql:
                    conn.execute("SAVEPOINT op")
                try:
                    handler.apply(ctx, op)
                except ElastikError as exc:
                    op.error = exc
                except Exception:
                    if not isolate:
                        raise
                    log.exception("write to %r failed", op.world)
                    op.error = StorageFailure()
                if isolate and sql:
                    if op.error is not None:
                        conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
            if in_txn or force_maintenance:
                if not in_txn:
                    conn.execute("BEGIN IMMEDIATE")
                    in_txn = True
                handler.maintenance(ctx, force_maintenance)
            if in_txn:
                conn.execute("COMMIT")
                in_txn = False
                self.stats.commits += 1
        except Exception as exc:
            if in_txn:
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    log.exception("rollback failed")
            if not isolate and batch:
                log.warning("write batch hit %r; retrying op by op", exc)
                raise _Unexpected() from exc
            log.exception("write batch of %d ops failed; rolled back", len(batch))
            self.stats.failed_commits += 1
            return False
        handler.after_commit(ctx, batch)
        return True


class _Unexpected(Exception):
    """Internal: the fast path failed in a way that needs the op-by-op retry."""
