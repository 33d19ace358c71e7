"""Store-and-forward: an Upstream that wraps the core client and never loses an accepted write.

    front door -> StoreAndForward.send(Request) -> inner Upstream (core client) -> core
                         |  (core down / 5xx / 408 / 429)
                         v
                   Outbox (SQLite, gateway/outbox.py)  <- replay task drains it

- Reads go straight to the inner Upstream; if the core is down they raise
  UpstreamUnavailable (there is nothing sensible to answer from the gateway).
- Writes carry an ``Idempotency-Key`` (the front door's, or one minted here on acceptance)
  that stays the same across retries and restarts, so the core applies each at most once.
- While the core answers and a path has nothing queued, a write goes straight through:
  no disk write at all. If the core is unreachable, times out or answers 5xx/408/429, the
  write is committed to the outbox and answered ``202`` (QUEUED_STATUS) once durable.
- While a path has queued entries, new writes to it queue behind them (order per path).
- The replay task sends each path's oldest entry, one at a time per path, several paths
  at once, at most ``replay_rate`` per second; a path answered 5xx backs off alone.
  4xx answers other than 408/429 are final: the entry becomes a dead letter.

Robustness as a layer: the core client knows nothing of this (micropython-lib's
``umqtt/robust.py`` wrapping ``umqtt/simple.py`` is the model).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import secrets
import sys
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.flow import (
    QUEUED_STATUS,
    GatewayError,
    OutboxFull,
    Request,
    Response,
    Upstream,
    UpstreamUnavailable,
)
from gateway.outbox import (
    COUNTER_NAMES,
    DiskFull,
    NewEntry,
    Outbox,
    OutboxConfig,
    PendingMeta,
    StoredEntry,
)

log = logging.getLogger("gateway.outbox")

# Replay reads bodies ahead, per path: at most this many entries and bytes per read, and
# at most PREFETCH_TOTAL_BYTES held in memory in all (a thread hop per entry costs more
# than the SQLite lookup; the memory of a small gateway is worth more than that).
PREFETCH_MAX = 32
PREFETCH_BYTES = 256 * 1024
PREFETCH_TOTAL_BYTES = 4 * 1024 * 1024
# How often the housekeeping tick runs: counter flush, expiry, CLI retry pickup.
TICK_S = 1.0
# Longest the replay task sleeps with nothing due: it is woken by events anyway; this only
# bounds how late a clock jump (NTP step on a device without RTC) is noticed.
IDLE_WAIT_S = 5.0

# Counters that change on every pass-through write. They never trigger a disk write by
# themselves (the SD card is spared while the core is up); they ride along with others.
_LAZY = frozenset({"passthrough_total"})


class OutboxError(GatewayError):
    """The outbox could not store the write for another reason than a bound (I/O error)."""

    coap_code = "5.00"


def retryable(status: int) -> bool:
    """Answers after which a write is kept and retried; everything else is final."""
    return status >= 500 or status in (408, 429)


def _new_key() -> str:
    # Time first, so keys sort in the order they are made (the core's key index then grows
    # at its end: gateway/coap/idemkeys.py), then 96 random bits.
    return f"gw-{time.time_ns() // 1_000_000:011x}-{secrets.token_hex(12)}"


@dataclass
class _Lane:
    """Per-path FIFO lock: writes to one path are decided (and passed through) in order."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class StoreAndForward:
    """Upstream layer: pass-through while the core answers, durable outbox otherwise."""

    def __init__(
        self,
        inner: Upstream,
        state_dir: Path,
        config: OutboxConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config or OutboxConfig()
        self._inner = inner
        self._outbox = Outbox(state_dir)
        self._clock = clock
        # Committed entries: all of them in seq order (oldest first), and per path.
        self._all: OrderedDict[int, PendingMeta] = OrderedDict()
        self._paths: dict[str, deque[PendingMeta]] = {}
        # Scheduling: paths whose head entry may be sent now (FIFO: round robin), and paths
        # whose head waits for its backoff (heap of (due wall time, path); stale items are
        # skipped when popped: _delayed_at holds each path's current one).
        self._ready: deque[str] = deque()
        self._ready_set: set[str] = set()
        self._delayed: list[tuple[float, str]] = []
        self._delayed_at: dict[str, float] = {}
        # Accepted-but-not-finished writes per path, including appends not yet committed:
        # non-zero means a new write to that path must queue behind.
        self._waiting: Counter[str] = Counter()
        self._committed_bytes = 0
        self._reserved_bytes = 0  # appends submitted, not yet committed
        self._lanes: dict[str, _Lane] = {}
        self._inflight_paths: set[str] = set()
        self._inflight_seqs: set[int] = set()
        self._prefetched: dict[int, StoredEntry] = {}  # bodies of upcoming replays
        self._prefetched_bytes = 0
        self._done_seqs: list[int] = []  # replayed, to be deleted in one op
        self._tasks: set[asyncio.Task[None]] = set()
        self._online = True
        self._backoff = self.config.backoff_min_s
        self._probe_at = 0.0  # monotonic
        self._tokens = 1.0
        self._tokens_at = time.monotonic()
        self._wake = asyncio.Event()
        self._counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._dirty = False
        self._lazy_dirty = False
        self._dead_letters = 0
        self._disk_full = False
        self._runner: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._started = False
        self._closing = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> StoreAndForward:
        """Open the outbox (taking its lock) and start replaying what it holds."""
        metas, counters = await self._outbox.open()
        for name, value in counters.items():
            if name in self._counters:
                self._counters[name] = value
        for meta in metas:
            self._index(meta)
            self._waiting[meta.path] += 1
        self._dead_letters = await self._outbox.dead_count()
        self._started = True
        self._runner = asyncio.create_task(self._run(), name="outbox-replay")
        self._ticker = asyncio.create_task(self._tick(), name="outbox-tick")
        if metas:
            log.info("outbox: %d queued writes to replay", len(metas))
        return self

    async def close(self) -> None:
        """Stop replaying, commit the outbox's last bookkeeping, close the inner Upstream."""
        if self._closing:
            return
        self._closing = True
        tasks = [t for t in (self._runner, self._ticker) if t is not None]
        tasks += list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._started:
            if self._done_seqs:
                seqs, self._done_seqs = self._done_seqs, []
                with contextlib.suppress(Exception):
                    await self._outbox.done(seqs)
            if self._dirty or self._lazy_dirty:
                with contextlib.suppress(Exception):
                    await self._outbox.save_counters(self._counters)
            await self._outbox.close()
        await self._inner.close()

    async def __aenter__(self) -> StoreAndForward:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ Upstream
    async def send(self, request: Request) -> Response:
        if self._closing or not self._started:
            raise UpstreamUnavailable("gateway outbox is not running")
        if not request.is_write:
            response = await self._inner.send(request)
            if not self._online:
                self._probe_at = 0.0  # the core answers again: probe now
                self._wake.set()
            return response
        key = request.headers.get("idempotency-key") or _new_key()
        if request.headers.get("idempotency-key") != key:
            request = replace(request, headers={**request.headers, "idempotency-key": key})
        path = request.path
        # No await before the lock: tasks reach it in arrival order, and asyncio.Lock
        # is FIFO, so writes to one path are decided in the order they arrived.
        lane = self._lanes.get(path)
        if lane is None:
            lane = self._lanes[path] = _Lane()
        lane.users += 1
        try:
            async with lane.lock:
                if not self._online or self._waiting[path]:
                    pending = self._enqueue(request, key)
                else:
                    try:
                        response = await self._inner.send(request)
                    except UpstreamUnavailable as exc:
                        self._went_offline(f"{exc}")
                        pending = self._enqueue(request, key)
                    else:
                        if not retryable(response.status):
                            self._count("passthrough_total")
                            return response
                        pending = self._enqueue(request, key)
        finally:
            lane.users -= 1
            if lane.users == 0:
                del self._lanes[path]
        try:
            seq = await pending
        except DiskFull:
            self._count("disk_full_total")
            if not self._disk_full:
                # Refuse appends without touching SQLite until the reserve fits again,
                # and free the reserve so that bookkeeping can still commit.
                self._disk_full = True
                self._outbox.release_reserve()
                log.error("outbox: disk full; refusing writes the core does not take")
            raise OutboxFull("gateway disk full: write not stored") from None
        except Exception as exc:
            self._count("store_errors_total")
            log.error("outbox: write to %s not stored: %s", path, exc)
            raise OutboxError("gateway outbox write failed") from None
        return Response(QUEUED_STATUS, headers={"idempotency-key": key, "x-outbox-seq": str(seq)})

    # ------------------------------------------------------------------ accepting
    def _enqueue(self, request: Request, key: str) -> asyncio.Future[int]:
        """Admission control, then submit the append (synchronously: submission order is
        commit order, so entries of a path keep their arrival order)."""
        cfg = self.config
        now = self._clock()
        entry = NewEntry(
            path=request.path,
            method=request.method,
            body=bytes(request.body),
            headers=dict(request.headers),
            idempotency_key=key,
            source=request.source,
            device=request.device,
            accepted_at=now,
        )
        size = entry.size
        if self._closing:  # close() began while this write was passing through
            raise UpstreamUnavailable("gateway outbox is shutting down")
        if self._disk_full:
            self._count("disk_full_total")
            raise OutboxFull("gateway disk full: write not stored")
        if size > cfg.max_bytes:
            self._count("rejected_total")
            raise OutboxFull("write larger than the outbox bound")
        if cfg.policy == "reject":
            if self._committed_bytes + self._reserved_bytes + size > cfg.max_bytes:
                self._count("rejected_total")
                raise OutboxFull("outbox full (max_bytes)")
            if self._oldest_age(now) > cfg.max_age_s:
                self._count("rejected_total")
                raise OutboxFull("outbox full (max_age_s)")
        else:
            while self._committed_bytes + self._reserved_bytes + size > cfg.max_bytes:
                victim = next((m for m in self._all.values() if not self._busy(m)), None)
                if victim is None:
                    self._count("rejected_total")
                    raise OutboxFull("outbox full: nothing left to drop")
                self._kill(victim, "dropped", None, b"")
                self._count("dropped_total")
        path = request.path
        self._waiting[path] += 1
        self._reserved_bytes += size

        def committed(seq: int) -> None:
            self._reserved_bytes -= size
            self._index(PendingMeta(seq, path, size, now))
            self._count("queued_total")
            self._wake.set()

        def failed(exc: BaseException) -> None:
            self._reserved_bytes -= size
            self._unwait(path)

        return self._outbox.append(entry, committed, failed)

    # ------------------------------------------------------------------ index
    def _index(self, meta: PendingMeta) -> None:
        meta.path = sys.intern(meta.path)  # one string per path, not one per entry
        self._all[meta.seq] = meta
        self._paths.setdefault(meta.path, deque()).append(meta)
        self._committed_bytes += meta.size
        self._mark(meta.path)

    def _unindex(self, meta: PendingMeta) -> None:
        self._unprefetch(meta.seq)
        self._all.pop(meta.seq, None)
        lane = self._paths.get(meta.path)
        if lane is not None:
            if lane and lane[0] is meta:
                lane.popleft()
            else:
                with contextlib.suppress(ValueError):
                    lane.remove(meta)
            if not lane:
                del self._paths[meta.path]
                self._delayed_at.pop(meta.path, None)  # its heap item is stale now
        self._committed_bytes -= meta.size
        self._unwait(meta.path)

    def _unwait(self, path: str) -> None:
        self._waiting[path] -= 1
        if self._waiting[path] <= 0:
            del self._waiting[path]

    def _busy(self, meta: PendingMeta) -> bool:
        return meta.seq in self._inflight_seqs

    def _oldest_age(self, now: float) -> float:
        for meta in self._all.values():
            return max(0.0, now - meta.accepted_at)
        return 0.0

    def _kill(self, meta: PendingMeta, reason: str, status: int | None, body: bytes) -> None:
        """Move an entry to the dead letters (fire and forget: failures are counted)."""
        self._unindex(meta)
        fut = self._outbox.dead(meta.seq, reason, status, body, self.config.max_dead_letters)
        fut.add_done_callback(self._dead_done)
        self._dead_letters += 1
        log.warning(
            "outbox: write #%d to %s is a dead letter (%s%s)",
            meta.seq,
            meta.path,
            reason,
            f", core answered {status}" if status is not None else "",
        )

    def _dead_done(self, fut: asyncio.Future[int]) -> None:
        if fut.cancelled():
            return
        if fut.exception() is not None:
            self._count("store_errors_total")
        elif pruned := fut.result():
            self._count("dead_pruned_total", pruned)

    def _bookkeeping_done(self, fut: asyncio.Future[None]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self._count("store_errors_total")

    # ------------------------------------------------------------------ counters
    def _count(self, name: str, n: int = 1) -> None:
        self._counters[name] += n
        if name in _LAZY:
            self._lazy_dirty = True
        else:
            self._dirty = True

    def stats(self) -> dict[str, int | float]:
        """Counters and gauges for monitoring (the CLI shows the same from the database)."""
        out: dict[str, int | float] = {
            "depth": len(self._all),
            "bytes": self._committed_bytes,
            "oldest_age_s": round(self._oldest_age(self._clock()), 3),
            "paths": len(self._paths),
            "dead_letters": self._dead_letters,
            "online": int(self._online),
            "disk_full": int(self._disk_full),
            "inflight_replays": len(self._inflight_seqs),
            "prefetched_bytes": self._prefetched_bytes,
            "group_commits": self._outbox.commits,
            "store_ops": self._outbox.ops,
        }
        out.update(self._counters)
        return out

    # ------------------------------------------------------------------ online/offline
    def _went_offline(self, why: str, *, probe: bool = False) -> None:
        now = time.monotonic()
        if self._online:
            self._online = False
            self._backoff = self.config.backoff_min_s
            self._count("unavailable_total")
            log.warning("outbox: core unreachable (%s); queueing writes", why)
        elif probe:
            self._backoff = min(self.config.backoff_max_s, self._backoff * 2)
        else:
            return
        # Jitter (75-125 %) so that gateways restarted together do not probe in lockstep.
        delay = min(self.config.backoff_max_s, self._backoff * random.uniform(0.75, 1.25))
        self._probe_at = now + delay

    def _came_online(self) -> None:
        if not self._online:
            self._online = True
            self._backoff = self.config.backoff_min_s
            log.info("outbox: core reachable again; replaying %d queued writes", len(self._all))
            self._wake.set()

    # ------------------------------------------------------------------ replay
    def _take_token(self) -> float:
        """0 if a replay may start now, else seconds until the next token."""
        rate = self.config.replay_rate
        burst = max(1.0, rate * 0.1)  # 100 ms worth of replays at most in one burst
        now = time.monotonic()
        self._tokens = min(burst, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / rate

    async def _run(self) -> None:
        while not self._closing:
            delay = self._schedule()
            self._wake.clear()
            # asyncio.timeout, not wait_for: wait_for can swallow a cancellation that
            # arrives together with the wake-up (close() cancels replays, which wake us).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay or IDLE_WAIT_S):
                    await self._wake.wait()

    def _mark(self, path: str, *, due: bool = False) -> None:
        """Make a path with queued entries findable by the scheduler: ready now (or when
        ``due``: its delay is over), or in the delayed heap until its head's backoff ends."""
        if path in self._ready_set or path in self._inflight_paths or path in self._delayed_at:
            return
        lane = self._paths.get(path)
        if not lane:
            return
        wall = self._clock()
        # Never more than backoff_max_s ahead: if the wall clock stepped back (NTP on a
        # device without RTC), replay must not stall.
        due_at = min(lane[0].next_attempt, wall + self.config.backoff_max_s)
        if due or due_at <= wall:
            self._ready.append(path)
            self._ready_set.add(path)
        else:
            self._delayed_at[path] = due_at
            heapq.heappush(self._delayed, (due_at, path))

    def _next_ready(self, wall: float) -> str | None:
        """The first path whose head may be sent now (left at the front of ``_ready``)."""
        while self._delayed and self._delayed[0][0] <= wall:
            due_at, path = heapq.heappop(self._delayed)
            if self._delayed_at.get(path) == due_at:
                del self._delayed_at[path]
                self._mark(path, due=True)
        while self._ready:
            path = self._ready[0]
            lane = self._paths.get(path)
            if lane and path not in self._inflight_paths:
                return path
            self._ready.popleft()  # emptied (or in flight: it is filed again when done)
            self._ready_set.discard(path)
        return None

    def _take_ready(self) -> PendingMeta:
        path = self._ready.popleft()
        self._ready_set.discard(path)
        return self._paths[path][0]

    def _schedule(self) -> float | None:
        """Start every replay that may start now; return how long to wait otherwise."""
        if not self._all:
            if not self._online and not self._inflight_seqs:
                self._online = True  # nothing to probe with: let the next write try
            return None
        wall = self._clock()
        if not self._online:
            if self._inflight_seqs:
                return None  # the probe is out; its answer wakes us
            mono = time.monotonic()
            if mono < self._probe_at:
                return self._probe_at - mono
            if self._next_ready(wall) is not None:
                self._launch(self._take_ready(), probe=True)
                return None
            return self._delayed_wait(wall)
        while len(self._inflight_seqs) < self.config.replay_concurrency:
            if self._next_ready(wall) is None:
                break
            token_wait = self._take_token()
            if token_wait > 0:
                delayed = self._delayed_wait(wall)
                return token_wait if delayed is None else min(token_wait, delayed)
            self._launch(self._take_ready(), probe=False)
        return self._delayed_wait(wall)

    def _delayed_wait(self, wall: float) -> float | None:
        return max(0.001, self._delayed[0][0] - wall) if self._delayed else None

    def _launch(self, meta: PendingMeta, *, probe: bool) -> None:
        self._inflight_paths.add(meta.path)
        self._inflight_seqs.add(meta.seq)
        task = asyncio.create_task(self._replay(meta, probe))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, meta: PendingMeta) -> StoredEntry | None:
        """Load this entry and the next few of its path (up to PREFETCH_BYTES), which this
        path's next replays then find in ``_prefetched``."""
        seqs: list[int] = []
        size = 0
        for m in self._paths.get(meta.path, ()):
            if seqs and (len(seqs) >= PREFETCH_MAX or size + m.size > PREFETCH_BYTES):
                break
            if m.seq not in self._prefetched:
                seqs.append(m.seq)
                size += m.size
        if meta.seq not in seqs:
            seqs.insert(0, meta.seq)
        loaded = await self._outbox.load(seqs)
        entry = loaded.pop(meta.seq, None)
        for seq, other in loaded.items():
            known = self._all.get(seq)  # None: replayed or dropped meanwhile
            if known is not None and self._prefetched_bytes + known.size <= PREFETCH_TOTAL_BYTES:
                self._prefetched[seq] = other
                self._prefetched_bytes += known.size
        return entry

    def _unprefetch(self, seq: int) -> StoredEntry | None:
        entry = self._prefetched.pop(seq, None)
        if entry is not None:
            self._prefetched_bytes -= self._all[seq].size if seq in self._all else 0
        return entry

    def _flush_done(self) -> None:
        seqs, self._done_seqs = self._done_seqs, []
        if seqs and not self._closing:
            self._outbox.done(seqs).add_done_callback(self._bookkeeping_done)

    async def _replay(self, meta: PendingMeta, probe: bool) -> None:
        try:
            entry = self._unprefetch(meta.seq) or await self._fetch(meta)
            if entry is None:  # gone from disk (cannot happen unless edited by hand)
                self._unindex(meta)
                return
            request = Request(
                method=entry.method,  # type: ignore[arg-type]
                path=entry.path,
                body=entry.body,
                headers={**entry.headers, "idempotency-key": entry.idempotency_key},
                source=entry.source,
                device=entry.device,
            )
            try:
                response = await self._inner.send(request)
            except UpstreamUnavailable as exc:
                self._went_offline(f"{exc}", probe=probe)
                return
            self._came_online()
            status = response.status
            if retryable(status):
                self._retry_later(meta, status, f"core answered {status}")
            elif 400 <= status < 500:
                self._kill(meta, "rejected", status, bytes(response.body))
                self._count("dead_total")
            else:
                self._unindex(meta)
                self._done_seqs.append(meta.seq)
                if len(self._done_seqs) == 1:
                    asyncio.get_running_loop().call_soon(self._flush_done)
                self._count("replayed_total")
        except Exception as exc:
            # A bug or a local I/O error: this entry backs off like a 5xx, so that it
            # cannot stop the other paths (and is visible: attempts, the log).
            if meta.seq in self._all:
                self._retry_later(meta, None, f"replay failed: {exc!r}")
        finally:
            self._inflight_paths.discard(meta.path)
            self._inflight_seqs.discard(meta.seq)
            self._mark(meta.path)  # its next entry (or this one, after its backoff)
            self._wake.set()

    def _retry_later(self, meta: PendingMeta, status: int | None, why: str) -> None:
        """Back this path off: capped exponential per entry, persisted with it."""
        meta.attempts += 1
        backoff = min(
            self.config.backoff_max_s,
            self.config.backoff_min_s * 2 ** min(meta.attempts - 1, 30),
        )
        meta.next_attempt = self._clock() + backoff * random.uniform(0.75, 1.0)
        self._count("replay_retries_total")
        log.info(
            "outbox: %s to write #%d on %s; retry in %.1f s", why, meta.seq, meta.path, backoff
        )
        fut = self._outbox.reschedule(meta.seq, meta.attempts, meta.next_attempt, status)
        fut.add_done_callback(self._bookkeeping_done)

    # ------------------------------------------------------------------ housekeeping
    async def _tick(self) -> None:
        last_ops = self._outbox.ops
        while not self._closing:
            await asyncio.sleep(TICK_S)
            try:
                if self._disk_full and self._outbox.ensure_reserve():
                    self._disk_full = False
                    log.info("outbox: disk has room again; accepting writes")
                self._expire()
                if await self._outbox.retry_requested():
                    await self._outbox.requeue(self._requeued)
                self._dead_letters = await self._outbox.dead_count()
                other_writes = self._outbox.ops != last_ops
                if self._dirty or (self._lazy_dirty and other_writes):
                    self._dirty = self._lazy_dirty = False
                    fut = self._outbox.save_counters(self._counters)
                    fut.add_done_callback(self._counters_saved)
                last_ops = self._outbox.ops
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("outbox: housekeeping failed: %r", exc)

    def _counters_saved(self, fut: asyncio.Future[None]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self._dirty = True  # try again next tick (e.g. once the disk has room)

    def _requeued(self, metas: list[PendingMeta]) -> None:
        for meta in metas:
            self._index(meta)
            self._waiting[meta.path] += 1
        if metas:
            log.info("outbox: %d dead letters queued again", len(metas))
            self._wake.set()

    def _expire(self) -> None:
        """drop-oldest: entries older than max_age_s become dead letters. (Under reject the
        age bound refuses new writes instead, and accepted ones are kept.)"""
        if self.config.policy != "drop-oldest":
            return
        now = self._clock()
        for meta in list(self._all.values()):
            if now - meta.accepted_at <= self.config.max_age_s:
                break
            if self._busy(meta):
                continue
            self._kill(meta, "expired", None, b"")
            self._count("expired_total")
