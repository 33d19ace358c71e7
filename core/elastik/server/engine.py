"""The storage engine: ``Engine`` implements ``model.EngineAPI`` for the HTTP layer.

Durable worlds live in one SQLite database (``worldstore``) written only by the writer
thread (``writer``) with group commit; the semantics of each write are in ``mutations``.
Reads are synchronous: memory worlds from ``memory``, durable worlds from a bounded LRU
(``readcache``) or, on a miss, from a per-thread reader connection. See STORAGE-DESIGN.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path

from . import audit, checkpoint, memory, worldstore
from .errors import (
    ElastikError,
    FatalError,
    PayloadTooLarge,
    PreconditionFailed,
    StorageFailure,
    Unauthorized,
)
from .memory import MemoryStore
from .model import (
    Change,
    EngineConfig,
    EngineHooks,
    Idempotency,
    PoolStat,
    Precondition,
    Usage,
    VerifyResult,
    World,
    WriteResult,
)
from .mutations import LEDGER_GUARD_BODY, Mutations, MutationStats
from .readcache import ReadCache
from .worldstore import LEDGER, is_memory
from .writer import Op, Writer
from .writerlock import WriterLock

log = logging.getLogger("elastik.server.engine")

# Writes waiting for the writer, per event loop. 4096 is far above what the HTTP layer's
# connection limit produces in normal operation; past it, writers wait (backpressure)
# instead of growing the queue and the bodies it holds without bound.
MAX_PENDING_WRITES = 4096

# The state check on a read miss hashes the body only up to this size (1 MiB hashes in
# about a millisecond); bigger worlds get the size/content-type/metadata checks only.
READ_STATE_HASH_MAX = 1024 * 1024


def _io_fatal(exc: OSError) -> FatalError:
    code = exc.errno or errno.EIO
    return FatalError(
        f"build Engine failed: data root IO error: {os.strerror(code)} (os error {code})"
    )


def _make_data_dir(data: Path) -> None:
    """Create the data dir and missing parents, like the reference (``create_dir_all``).

    PROTOCOL §1.1 says the parent must exist, but the 8.3.0 binary creates it; a regular
    file gives ``File exists (os error 17)``, a path below a file ``Not a directory (20)``.
    """
    try:
        os.makedirs(data, exist_ok=True)
    except OSError as exc:
        raise _io_fatal(exc) from None
    if not data.is_dir():
        raise _io_fatal(FileExistsError(errno.EEXIST, "File exists"))


def _has_reference_worlds(data: Path) -> bool:
    try:
        return any((entry / "universe.db").is_file() for entry in data.iterdir())
    except OSError:
        return False


class Engine:
    """Durable and memory worlds, the audit chain, quotas, idempotency and the ledger."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.hooks = EngineHooks()
        self.db_path = Path(cfg.data) / worldstore.DB_NAME
        self.memory = MemoryStore()
        self.cache = ReadCache(cfg.read_cache_max_entries)
        self.broken: dict[str, str] = {}
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._pending: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._pending = weakref.WeakKeyDictionary()
        self._lock: WriterLock | None = None
        self._writer: Writer | None = None
        self._mut: Mutations | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._warned_state: set[tuple[str, str]] = set()
        self.startup = checkpoint.StartupReport()
        # Memory writes handed to the writer and not yet delivered (event loop thread only).
        self._writer_memory_ops = 0
        self.memory_fast_writes = 0

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(cls, cfg: EngineConfig) -> Engine:
        """Create/open the data dir, take the writer lock, verify, start the writer."""
        data = Path(cfg.data)
        _make_data_dir(data)
        eng = cls(cfg)
        eng._lock = WriterLock.acquire(data)
        try:
            eng._open_db()
        except BaseException:
            eng._release_all()
            raise
        return eng

    def _open_db(self) -> None:
        if not self.db_path.exists() and _has_reference_worlds(self.db_path.parent):
            log.warning(
                "%s holds worlds in the reference layout (<name>/universe.db); they are not "
                "served. Import them with elastik.server.importer.import_reference.",
                self.db_path.parent,
            )
        try:
            conn = worldstore.connect(self.db_path, writer=True)
        except (sqlite3.OperationalError, OSError) as exc:  # cannot open/create the file
            raise FatalError(f"build Engine failed: data root IO error: {exc}") from None
        except sqlite3.Error as exc:  # e.g. "file is not a database"
            raise FatalError(f"build Engine failed: database error: {exc}") from None
        self._conn = conn
        try:
            worldstore.create_schema(conn)  # executescript: commits on its own
            conn.execute("BEGIN IMMEDIATE")
            self.startup = checkpoint.verify_startup(conn, self.cfg.key)
            used, durable_worlds, _ledger = worldstore.totals(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise FatalError(f"build Engine failed: database error: {exc}") from None
        self._mut = Mutations(
            conn, self.cfg, self.memory, self.cache, used, durable_worlds, self.broken
        )
        self._writer = Writer(conn, self._mut, self._deliver)
        self._writer.start()

    def close(self) -> None:
        """Drain queued writes, commit, stop the writer, checkpoint the WAL, unlock."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.stop()
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._release_all()

    def _release_all(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise StorageFailure()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = worldstore.connect(self.db_path, writer=False)
            except sqlite3.Error:
                self.cache.open_fails += 1
                log.exception("cannot open a reader connection")
                raise StorageFailure() from None
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def read(self, world: str) -> World | None:
        if is_memory(world):
            return self.memory.get(world)
        hit, state = self.cache.get(world)
        if hit:
            return state
        generation = self.cache.generation
        try:
            st = worldstore.load(self._reader(), world, with_body=True)
        except sqlite3.Error:
            log.exception("read of %r failed", world)
            raise StorageFailure() from None
        if st is None:
            self.cache.fill(world, None, generation)
            return None
        body = st.body or b""
        if st.tail is not None:
            etag = "hmac-" + st.tail.hmac
            self._warn_state(world, st, body)
        else:
            etag = "sha256-" + audit.sha256_hex(body)
        state = World(world, body, st.content_type, st.headers, etag, True)
        self.cache.fill(world, state, generation)
        return state

    def _warn_state(self, world: str, st: worldstore.Stored, body: bytes) -> None:
        """D3: GET serves a tampered state, but the core logs it (once per tail)."""
        tail = st.tail
        assert tail is not None
        if tail.event_type not in audit.STATE_EVENTS:
            return  # the ledger: its tail is a delete event, not a state
        bad = len(body) != tail.size or st.content_type != tail.content_type
        bad = bad or audit.meta_sha256(st.content_type, st.headers) != tail.meta_sha256
        if not bad and len(body) <= READ_STATE_HASH_MAX:
            bad = audit.sha256_hex(body) != tail.body_sha256
        if bad and (world, tail.hmac) not in self._warned_state:
            self._warned_state.add((world, tail.hmac))
            log.warning("stored state of %r does not match its latest audit event", world)

    def list_worlds(self) -> list[tuple[str, int]]:
        try:
            durable = worldstore.list_durable(self._reader())
        except sqlite3.Error:
            log.exception("listing worlds failed")
            raise StorageFailure() from None
        rows = durable + self.memory.sizes()
        rows.sort(key=lambda r: r[0].encode())
        return rows

    def usage(self) -> Usage:
        mut = self._mut
        assert mut is not None
        return Usage(
            storage_used=mut.storage_used,
            storage_quota=self.cfg.max_storage_bytes,
            memory_used=self.memory.used,
            memory_limit=self.cfg.max_memory_bytes,
            worlds=mut.durable_worlds + len(self.memory),
        )

    def pool_stats(self) -> list[PoolStat]:
        entries, tombstones = self.cache.snapshot()
        c = self.cache
        mut = self._mut
        wr = self._writer
        assert mut is not None and wr is not None
        ws, ms = wr.stats, mut.stats
        return [
            PoolStat("read_cache_entries", entries, "snapshot"),
            PoolStat("read_cache_tombstones", tombstones, "snapshot"),
            PoolStat("read_cache_hits", c.hits, "counter"),
            PoolStat("read_cache_misses", c.misses, "counter"),
            PoolStat("read_cache_capped", c.capped, "counter"),
            PoolStat("read_cache_evictions", c.evictions, "counter"),
            PoolStat("read_cache_open_fails", c.open_fails, "counter"),
            PoolStat("read_cache_max_entries", c.max_entries, "snapshot"),
            PoolStat("ledger_writer_inits", ms.ledger_writer_inits, "counter"),
            PoolStat("writer_queue_depth", wr.depth(), "snapshot"),
            PoolStat("writer_batches", ws.batches, "counter"),
            PoolStat("writer_ops", ws.ops, "counter"),
            PoolStat("writer_fsyncs", ws.commits, "counter"),
            PoolStat("writer_failed_commits", ws.failed_commits, "counter"),
            PoolStat("writer_isolated_retries", ws.isolated_retries, "counter"),
            PoolStat("writer_max_batch", ws.max_batch, "snapshot"),
            PoolStat("idempotency_replays", ms.idempotency_replays, "counter"),
            PoolStat("idempotency_conflicts", ms.idempotency_conflicts, "counter"),
            PoolStat("idempotency_pruned", ms.idempotency_pruned, "counter"),
            PoolStat("precondition_failures", ms.precondition_failures, "counter"),
            PoolStat("quota_rejections", ms.quota_rejections, "counter"),
            PoolStat("broken_chain_refusals", ms.broken_chain_refusals, "counter"),
            PoolStat("checkpoints_written", ms.checkpoints_written, "counter"),
            PoolStat("startup_events_verified", self.startup.events_verified, "snapshot"),
            PoolStat("memory_worlds", len(self.memory), "snapshot"),
            PoolStat("memory_fast_writes", self.memory_fast_writes, "counter"),
        ]

    # -- writes ----------------------------------------------------------------------------

    async def put(
        self,
        world: str,
        body: bytes,
        content_type: str,
        headers: tuple[tuple[str, str], ...],
        *,
        precondition: Precondition | None = None,
        idempotency: Idempotency | None = None,
    ) -> WriteResult:
        if idempotency is None:
            now = self.write_now("put", world, body, content_type, headers, precondition)
            if now is not None:
                return now
        op = Op("put", world, is_memory(world), bytes(body), content_type, tuple(headers))
        return await self._submit(op, precondition, idempotency)

    async def append(
        self,
        world: str,
        body: bytes,
        *,
        precondition: Precondition | None = None,
        idempotency: Idempotency | None = None,
    ) -> WriteResult:
        if idempotency is None:
            now = self.write_now("append", world, body, "", (), precondition)
            if now is not None:
                return now
        op = Op("append", world, is_memory(world), bytes(body))
        return await self._submit(op, precondition, idempotency)

    async def delete(
        self,
        world: str,
        *,
        precondition: Precondition | None = None,
        idempotency: Idempotency | None = None,
    ) -> WriteResult:
        return await self._submit(Op("delete", world, is_memory(world)), precondition, idempotency)

    def write_now(
        self,
        kind: str,
        world: str,
        body: bytes,
        content_type: str,
        headers: tuple[tuple[str, str], ...],
        precondition: Precondition | None,
    ) -> WriteResult | None:
        """A PUT (``kind="put"``) or POST (``"append"``) applied synchronously, or ``None``.

        Only plain memory writes qualify, and only while no memory write is queued at the
        writer (see memory.py); for anything else nothing happens and the caller uses
        ``put``/``append``. Nothing durable is involved, so there is no reason to hop to the
        writer thread and wait for its fsync (under load that hop alone costs milliseconds of
        GIL handover): the write is applied right here on the event loop thread.
        """
        if self._writer_memory_ops or not is_memory(world):
            return None
        if self._closed:
            raise StorageFailure()
        mem, cfg, stats = self.memory, self.cfg, self._mut_stats()
        with mem.lock:
            try:
                plan = memory.plan_write(
                    kind, world, mem.get(world), bytes(body), content_type, tuple(headers),
                    precondition, mem.used, cfg.max_world_bytes, cfg.max_memory_bytes,
                )  # fmt: skip
            except PreconditionFailed:
                stats.precondition_failures += 1
                raise
            except PayloadTooLarge:
                stats.quota_rejections += 1
                raise
            mem._set(world, plan.state)
        self.memory_fast_writes += 1
        self._emit(plan.change)
        return plan.result

    def _mut_stats(self) -> MutationStats:
        assert self._mut is not None
        return self._mut.stats

    def _emit(self, change: Change) -> None:
        for hook in self.hooks.on_change:
            try:
                hook(change)
            except Exception:
                log.exception("on_change hook failed")

    async def _submit(
        self, op: Op, precondition: Precondition | None, idempotency: Idempotency | None
    ) -> WriteResult:
        if op.world == LEDGER:  # D4: only the engine's own delete path appends to it
            raise Unauthorized(LEDGER_GUARD_BODY)
        if self._closed or self._writer is None:
            raise StorageFailure()
        loop = asyncio.get_running_loop()
        sem = self._pending.get(loop)
        if sem is None:
            sem = self._pending[loop] = asyncio.Semaphore(MAX_PENDING_WRITES)
        if op.memory:  # from now on, memory writes queue behind this one (see memory.py)
            self._writer_memory_ops += 1
        submitted = False
        try:
            async with sem:
                op.precondition = precondition
                op.idempotency = idempotency
                op.loop = loop
                op.future = fut = loop.create_future()
                self._writer.submit(op)
                submitted = True
                return await fut
        finally:
            if op.memory and not submitted:
                self._writer_memory_ops -= 1

    def _deliver(self, ops: list[Op]) -> None:
        """Writer thread: hand results to each op's loop, one callback per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Op]] = {}
        for op in ops:
            if op.loop is not None:
                by_loop.setdefault(op.loop, []).append(op)
        for loop, group in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._resolve, group)
            except RuntimeError:
                pass  # that loop is closed: nobody is waiting any more

    def _resolve(self, ops: list[Op]) -> None:
        """Event loop thread: complete futures and emit changes, in commit order."""
        hooks = self.hooks.on_change
        for op in ops:
            if op.memory:
                self._writer_memory_ops -= 1
            fut = op.future
            if fut is not None and not fut.done():
                if op.error is not None:
                    fut.set_exception(op.error)
                else:
                    fut.set_result(op.result)  # type: ignore[arg-type]
            change = op.change
            if change is not None and op.error is None:
                for hook in hooks:
                    try:
                        hook(change)
                    except Exception:
                        log.exception("on_change hook failed")

    # -- verification ----------------------------------------------------------------------

    async def verify(self, world: str) -> VerifyResult:
        if is_memory(world):
            found = self.memory.get(world) is not None
            return VerifyResult("memory") if found else VerifyResult("missing")
        return await asyncio.to_thread(self._verify_sync, world)

    def _verify_sync(self, world: str) -> VerifyResult:
        conn = self._reader()
        try:
            conn.execute("BEGIN")
            try:
                st = worldstore.load(conn, world, with_body=True)
                if st is None:
                    return VerifyResult("missing")
                brk, walker = audit.verify_chain(self.cfg.key, worldstore.iter_events(conn, world))
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error:
            log.exception("verify of %r failed", world)
            raise StorageFailure() from None
        if brk is None:
            brk = audit.check_state(walker.last_state, st.body or b"", st.content_type, st.headers)
            if brk is not None:
                log.warning("verify %r: stored state does not match its latest event", world)
                return VerifyResult(
                    "broken", walker.count, _hex(walker.first), _hex(walker.last),
                    brk.at, brk.expected, brk.actual,
                )  # fmt: skip
            self.broken.pop(world, None)
            return VerifyResult("valid", walker.count, _hex(walker.first), _hex(walker.last))
        log.warning("verify %r: audit chain broken at event %s", world, brk.at)
        if st.tail is not None:
            self.broken[world] = st.tail.hmac
        else:
            self.broken[world] = ""
        return VerifyResult(
            "broken", walker.count, _hex(walker.first), _hex(walker.last),
            brk.at, brk.expected, brk.actual,
        )  # fmt: skip


def _hex(ev: audit.Event | None) -> str:
    return "" if ev is None else ev.hmac


__all__ = ["ElastikError", "Engine"]
