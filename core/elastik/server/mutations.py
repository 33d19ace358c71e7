"""What put, append and delete do, applied by the writer thread inside its transaction.

Order of checks for every op (§6.3): D4 ledger guard, idempotency replay/conflict,
existence (404), broken chain (500), precondition (412), size and quotas (413/507); then
the state change and its audit event(s), in the same transaction. Effects that live
outside SQLite (memory worlds, byte totals, the read cache, checkpoints) are staged in the
batch context and published only after the commit succeeds.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from . import audit, idempotency, memory, worldstore
from .audit import Event
from .errors import (
    ElastikError,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    StorageFailure,
    Unauthorized,
)
from .model import Change, EngineConfig, World, WriteResult
from .readcache import ReadCache
from .worldstore import LEDGER
from .writer import Op

log = logging.getLogger("elastik.server.engine")

LEDGER_GUARD_BODY = b"auth required: delete ledger is append-only\n"

# How often the writer records verified checkpoints (D5) and prunes idempotency keys. A
# crash loses at most this much checkpoint progress: the next start re-verifies those events.
CHECKPOINT_INTERVAL_S = 30.0
CHECKPOINT_MAX_DIRTY = 10_000
IDEMPOTENCY_PRUNE_INTERVAL_S = 60.0
# Running sha256 states of recently written durable worlds, so an append hashes only its
# new bytes. 1024 entries (a few hundred bytes each) cover the hot append targets.
HASH_STATES_MAX = 1024
# Current rows and tail events of recently written durable worlds, as the writer last
# committed them: a write to a hot world skips the SELECT of its head and the re-hash of
# its tail. Valid only while no other connection has changed the database (checked once
# per batch with PRAGMA data_version). A few hundred bytes each.
HEADS_MAX = 4096


@dataclass(slots=True)
class Batch:
    """Staged effects of one writer batch, visible to later ops of the same batch."""

    now: float
    timestamp: str
    storage_used: int
    memory: dict[str, World | None] = field(default_factory=dict)
    memory_used: int = 0
    worlds_delta: int = 0
    cache: dict[str, World | None] = field(default_factory=dict)
    checkpoints: dict[str, tuple[int, str] | None] = field(default_factory=dict)
    ledger_created: bool = False
    flushed_checkpoints: bool = False
    replays: int = 0
    op_wrote: bool = False  # the current op has issued a write statement
    drops: set[str] = field(default_factory=set)  # cache entries to forget (state unknown)
    ops: list[Op] = field(default_factory=list)
    heads: dict[str, worldstore.Stored | None] = field(default_factory=dict)  # None: deleted
    heads_checked: bool = False  # data_version compared in this transaction
    idem_rows: dict[str, tuple[Any, ...]] | None = None  # prefetched idempotency rows


@dataclass
class MutationStats:
    idempotency_replays: int = 0
    idempotency_conflicts: int = 0
    idempotency_pruned: int = 0
    ledger_writer_inits: int = 0
    checkpoints_written: int = 0
    precondition_failures: int = 0
    quota_rejections: int = 0
    broken_chain_refusals: int = 0


class Mutations:
    """The writer's BatchHandler: semantics of every write."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        cfg: EngineConfig,
        memory_store: memory.MemoryStore,
        cache: ReadCache,
        storage_used: int,
        durable_worlds: int,
        broken: dict[str, str],
    ) -> None:
        self.conn = conn
        self.cfg = cfg
        self.key = cfg.key
        self.memory = memory_store
        self.cache = cache
        self.storage_used = storage_used
        self.durable_worlds = durable_worlds
        self.broken = broken  # world -> tail hmac at the time verify found the chain broken
        self.stats = MutationStats()
        self.dirty_checkpoints: dict[str, tuple[int, str]] = {}
        self._last_checkpoint = time.monotonic()
        self._last_prune = 0.0
        self._hashes: OrderedDict[str, tuple[int, str, Any]] = OrderedDict()
        self._heads: OrderedDict[str, worldstore.Stored] = OrderedDict()
        self._data_version: int | None = None

    # -- BatchHandler ----------------------------------------------------------------------

    def begin(self, ops: list[Op]) -> Batch:
        now = time.time()
        return Batch(
            now=now,
            timestamp=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)),
            storage_used=self.storage_used,
            memory_used=self.memory.used,
            ops=ops,
        )

    def apply(self, b: Batch, op: Op) -> None:
        """Checks first, then writes: a refusal must never follow a write (see writer)."""
        b.op_wrote = False
        try:
            self._apply(b, op)
        except ElastikError as exc:
            if b.op_wrote:
                raise RuntimeError(f"refusal after a write in {op.kind} {op.world!r}") from exc
            raise

    def _apply(self, b: Batch, op: Op) -> None:
        if op.world == LEDGER:
            raise Unauthorized(LEDGER_GUARD_BODY)
        idem = op.idempotency
        if idem is not None:
            try:
                replay = idempotency.replay(
                    self._idem_row(b, idem.key), idem, b.now, self.cfg.idempotency_window_s
                )
            except Exception:
                self.stats.idempotency_conflicts += 1
                raise
            if replay is not None:
                b.replays += 1
                op.result = replay
                return
        if op.memory:
            self._apply_memory(b, op)
        elif op.kind == "delete":
            self._delete_durable(b, op)
        elif op.kind == "put":
            self._put_durable(b, op)
        else:
            self._append_durable(b, op)

    def maintenance(self, b: Batch, force: bool) -> bool:
        mono = time.monotonic()
        if idempotency_due := (mono - self._last_prune >= IDEMPOTENCY_PRUNE_INTERVAL_S):
            self._last_prune = mono
            self.stats.idempotency_pruned += idempotency.prune(
                self.conn, b.now, self.cfg.idempotency_window_s
            )
        dirty = self.dirty_checkpoints
        # An upper bound of the merged size: merging (copying) every batch would cost
        # O(dirty worlds) per batch, up to CHECKPOINT_MAX_DIRTY entries.
        bound = len(dirty) + len(b.checkpoints)
        if bound and (
            force
            or mono - self._last_checkpoint >= CHECKPOINT_INTERVAL_S
            or bound >= CHECKPOINT_MAX_DIRTY
        ):
            pending = {**dirty, **b.checkpoints}
            rows = [(w, cp[0], cp[1]) for w, cp in pending.items() if cp is not None]
            self.conn.executemany(
                "INSERT INTO checkpoint(world, event_id, hmac) VALUES(?,?,?) ON CONFLICT(world)"
                " DO UPDATE SET event_id=excluded.event_id, hmac=excluded.hmac",
                rows,
            )
            b.flushed_checkpoints = True
            self._last_checkpoint = mono
            self.stats.checkpoints_written += len(rows)
        return idempotency_due or b.flushed_checkpoints

    def after_commit(self, b: Batch, ops: list[Op]) -> None:
        heads = self._heads
        for world, head in b.heads.items():
            if head is None:
                heads.pop(world, None)
            else:
                heads[world] = head
                heads.move_to_end(world)
        while len(heads) > HEADS_MAX:
            heads.popitem(last=False)
        self.storage_used = b.storage_used
        self.durable_worlds += b.worlds_delta
        for world, state in b.memory.items():
            self.memory.set(world, state)
        if b.cache or b.drops:
            self.cache.update_many(b.cache, b.drops)
        if b.flushed_checkpoints:
            self.dirty_checkpoints.clear()
        else:
            for world, cp in b.checkpoints.items():
                if cp is None:
                    self.dirty_checkpoints.pop(world, None)
                else:
                    self.dirty_checkpoints[world] = cp
        if b.ledger_created:
            self.stats.ledger_writer_inits += 1
        self.stats.idempotency_replays += b.replays
        for op in ops:
            if op.kind == "delete" and op.error is None and not op.memory:
                self.broken.pop(op.world, None)

    # -- durable worlds --------------------------------------------------------------------

    def _idem_row(self, b: Batch, key: str) -> tuple[Any, ...] | None:
        """The stored row of an idempotency key: one SELECT for all keys of the batch."""
        rows = b.idem_rows
        if rows is None:
            keys = [op.idempotency.key for op in b.ops if op.idempotency is not None]
            if len(keys) < 2:
                return idempotency.fetch_one(self.conn, key)
            rows = b.idem_rows = idempotency.fetch(self.conn, keys)
        return rows.get(key)

    def _head(self, b: Batch, world: str) -> tuple[worldstore.Stored | None, bool]:
        """(current row and tail event without the body, whether the tail is known good).

        Known good: the writer itself committed that tail and nothing else has written the
        database since (``PRAGMA data_version`` is unchanged), so it needs no re-hash.
        """
        if world in b.heads:
            return b.heads[world], True
        if not b.heads_checked:
            b.heads_checked = True
            version = self.conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._heads.clear()  # another connection committed: trust nothing cached
                self._data_version = version
        st = self._heads.get(world)
        if st is not None:
            return st, True
        return worldstore.load(self.conn, world, with_body=False), False

    def _etag(self, world: str, st: worldstore.Stored) -> str:
        if st.tail is not None:
            return "hmac-" + st.tail.hmac
        body = st.body
        if body is None:
            full = worldstore.load(self.conn, world, with_body=True)
            body = b"" if full is None or full.body is None else full.body
        return "sha256-" + audit.sha256_hex(body)

    def _refuse_broken(self, world: str, st: worldstore.Stored, trusted: bool = False) -> None:
        """500 for writes to a chain known or seen to be broken (see STORAGE-DESIGN.md).

        Checked on every write: the tail event must re-hash to its stored HMAC under our
        key, and a world that verify() found broken stays refused while its tail is the one
        verify saw. Events older than the tail are checked by verify and at startup.
        """
        tail = st.tail
        if tail is None or (not trusted and tail.recomputed_hmac(self.key) != tail.hmac):
            self.stats.broken_chain_refusals += 1
            log.error("refusing write to %r: stored audit chain fails verification", world)
            raise StorageFailure()
        seen = self.broken.get(world)
        if seen is not None and seen == tail.hmac:
            self.stats.broken_chain_refusals += 1
            raise StorageFailure()

    def _check_storage(self, b: Batch, delta: int) -> None:
        quota = self.cfg.max_storage_bytes
        if quota > 0 and delta > 0 and b.storage_used + delta > quota:
            self.stats.quota_rejections += 1
            raise InsufficientStorage(b.storage_used, quota, b.storage_used + delta - quota)

    def _check_world_size(self, size: int) -> None:
        if size > self.cfg.max_world_bytes:
            self.stats.quota_rejections += 1
            raise PayloadTooLarge(f"payload too large: max bytes {self.cfg.max_world_bytes}\n")

    def _precondition(self, op: Op, etag: str | None) -> None:
        if op.precondition is not None:
            try:
                op.precondition(etag)
            except Exception:
                self.stats.precondition_failures += 1
                raise

    def _record(self, b: Batch, op: Op, result: WriteResult, change: Change) -> None:
        idem = op.idempotency
        if idem is not None:
            b.op_wrote = True
            idempotency.store(self.conn, idem, result, b.now)
            if b.idem_rows is not None:  # a later op of this batch with the same key replays
                b.idem_rows[idem.key] = idempotency.as_row(idem, result, b.now)
        op.result = result
        op.change = change

    def _put_durable(self, b: Batch, op: Op) -> None:
        world, body = op.world, op.body
        st, trusted = self._head(b, world)
        if st is not None:
            self._refuse_broken(world, st, trusted)
        self._precondition(op, None if st is None else self._etag(world, st))
        self._check_world_size(len(body))
        self._check_storage(b, len(body) - (0 if st is None else st.size))
        headers = tuple(sorted(op.headers))
        prev = "" if st is None or st.tail is None else st.tail.hmac
        h = hashlib.sha256(body)
        body_sha = h.hexdigest()
        meta = audit.meta_sha256(op.content_type, headers)
        mac = audit.event_hmac(
            self.key, prev, "put", world, body_sha, len(body), op.content_type, meta
        )
        b.op_wrote = True
        worldstore.upsert_world(
            self.conn,
            world,
            body,
            op.content_type,
            worldstore.encode_headers(headers),
            0 if st is None else st.pieces,
        )
        ev = ("put", world, body_sha, len(body), op.content_type, meta, mac, prev)
        eid = worldstore.insert_event(self.conn, world, b.timestamp, ev, headers)
        etag = "hmac-" + mac
        self._record(
            b, op, WriteResult(201 if st is None else 200, etag), Change("put", world, etag)
        )
        b.storage_used += len(body) - (0 if st is None else st.size)
        if st is None:
            b.worlds_delta += 1
        self._remember_hash(world, len(body), mac, h)
        b.drops.discard(world)
        b.cache[world] = World(world, body, op.content_type, headers, etag, True)
        b.checkpoints[world] = (eid, mac)
        b.heads[world] = worldstore.Stored(
            None, len(body), op.content_type, headers, Event(eid, *ev), 0, len(body)
        )

    def _append_durable(self, b: Batch, op: Op) -> None:
        """POST: O(appended bytes) in the common case.

        The body hash continues from the running sha256 state kept for the world's current
        (size, tail) when there is one, and the bytes are stored as a new piece (folded
        into the base body now and then, see worldstore). Otherwise the body is read once.
        """
        world, data = op.world, op.body
        st, trusted = self._head(b, world)
        if st is None:
            raise NotFound()
        self._refuse_broken(world, st, trusted)
        self._precondition(op, self._etag(world, st))
        size = st.size + len(data)
        self._check_world_size(size)
        self._check_storage(b, len(data))
        tail = st.tail
        assert tail is not None  # _refuse_broken guarantees a tail
        old: bytes | None = None
        known = self._hashes.get(world)
        if known is not None and known[0] == st.size and known[1] == tail.hmac:
            h = known[2].copy()
        else:
            full = worldstore.load(self.conn, world, with_body=True)
            old = b"" if full is None or full.body is None else full.body
            h = hashlib.sha256(old)
        h.update(data)
        body_sha = h.hexdigest()
        meta = audit.meta_sha256(st.content_type, st.headers)
        mac = audit.event_hmac(
            self.key, tail.hmac, "append", world, body_sha, size, st.content_type, meta
        )
        b.op_wrote = True
        if folded := st.fold_due(len(data)):
            if old is None:
                full = worldstore.load(self.conn, world, with_body=True)
                old = b"" if full is None or full.body is None else full.body
            worldstore.fold(self.conn, world, old + data, st.pieces)
        else:
            worldstore.add_piece(self.conn, world, st, data)
        ev = ("append", world, body_sha, size, st.content_type, meta, mac, tail.hmac)
        eid = worldstore.insert_event(self.conn, world, b.timestamp, ev, st.headers)
        etag = "hmac-" + mac
        self._record(b, op, WriteResult(200, etag), Change("post", world, etag))
        self._remember_hash(world, size, mac, h)
        b.storage_used += len(data)
        if old is None:
            prev = b.cache[world] if world in b.cache else self.cache.peek(world)
            if prev is not None and prev.etag == "hmac-" + tail.hmac:
                old = prev.body
        if old is not None:
            b.cache[world] = World(world, old + data, st.content_type, st.headers, etag, True)
        else:
            b.cache.pop(world, None)
            b.drops.add(world)
        b.checkpoints[world] = (eid, mac)
        pieces, base = (0, size) if folded else (st.pieces + 1, st.base_size)
        b.heads[world] = worldstore.Stored(
            None, size, st.content_type, st.headers, Event(eid, *ev), pieces, base
        )

    def _remember_hash(self, world: str, size: int, mac: str, h: Any) -> None:
        """Keep the running sha256 of a world's body, keyed by its (size, tail hmac).

        Safe even if the batch later rolls back: the key is the tail the hash belongs to,
        and a rolled-back tail never matches the stored one.
        """
        hashes = self._hashes
        hashes[world] = (size, mac, h)
        hashes.move_to_end(world)
        if len(hashes) > HASH_STATES_MAX:
            hashes.popitem(last=False)

    def _delete_durable(self, b: Batch, op: Op) -> None:
        world = op.world
        st = worldstore.load(self.conn, world, with_body=True)
        if st is None:
            raise NotFound()
        self._precondition(op, self._etag(world, st))
        body = st.body or b""
        b.op_wrote = True
        worldstore.remove_world(self.conn, world)
        self._append_ledger(b, world, body)
        self._record(b, op, WriteResult(204, None), Change("delete", world, None))
        b.storage_used -= len(body)
        b.worlds_delta -= 1
        self._hashes.pop(world, None)
        b.drops.discard(world)
        b.cache[world] = None
        b.checkpoints[world] = None
        b.heads[world] = None

    def _append_ledger(self, b: Batch, world: str, body: bytes) -> None:
        """delete_intent then delete_commit on var/log/deletes, creating it empty (§14.6)."""
        conn = self.conn
        b.op_wrote = True
        row = conn.execute(
            "SELECT hmac FROM events WHERE world=? ORDER BY id DESC LIMIT 1", (LEDGER,)
        ).fetchone()
        prev = "" if row is None else str(row[0])
        if (
            row is None
            and conn.execute("SELECT 1 FROM worlds WHERE name=?", (LEDGER,)).fetchone() is None
        ):
            worldstore.upsert_world(conn, LEDGER, b"", audit.LEDGER_CONTENT_TYPE, "")
            b.ledger_created = True
        body_sha = audit.sha256_hex(body)
        eid = 0
        for kind in (audit.EVENT_DELETE_INTENT, audit.EVENT_DELETE_COMMIT):
            mac = audit.event_hmac(
                self.key, prev, kind, world, body_sha, 0, "", audit.DELETE_META_SHA256
            )
            eid = worldstore.insert_event(
                conn,
                LEDGER,
                b.timestamp,
                (kind, world, body_sha, 0, "", audit.DELETE_META_SHA256, mac, prev),
                (),
            )
            prev = mac
        b.checkpoints[LEDGER] = (eid, prev)
        b.cache[LEDGER] = _ledger_state(conn, prev)

    # -- memory worlds ---------------------------------------------------------------------

    def _apply_memory(self, b: Batch, op: Op) -> None:
        world = op.world
        cur = b.memory[world] if world in b.memory else self.memory.get(world)
        if op.kind == "delete":
            if cur is None:
                raise NotFound()
            self._precondition(op, cur.etag)
            self._append_ledger(b, world, cur.body)
            self._record(b, op, WriteResult(204, None), Change("delete", world, None))
            b.memory[world] = None
            b.memory_used -= len(cur.body)
            return
        try:
            plan = memory.plan_write(
                op.kind,
                world,
                cur,
                op.body,
                op.content_type,
                op.headers,
                op.precondition,
                b.memory_used,
                self.cfg.max_world_bytes,
                self.cfg.max_memory_bytes,
            )
        except PreconditionFailed:
            self.stats.precondition_failures += 1
            raise
        except PayloadTooLarge:
            self.stats.quota_rejections += 1
            raise
        self._record(b, op, plan.result, plan.change)
        b.memory[world] = plan.state
        b.memory_used += plan.delta


def _ledger_state(conn: sqlite3.Connection, tail_hmac: str) -> World:
    row = conn.execute(
        "SELECT body, content_type, headers FROM worlds WHERE name=?", (LEDGER,)
    ).fetchone()
    return World(
        LEDGER,
        bytes(row[0]),
        str(row[1]),
        worldstore.decode_headers(row[2]),
        "hmac-" + tail_hmac,
        True,
    )
