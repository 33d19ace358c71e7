"""A throwaway in-memory ``EngineAPI`` for in-process tests of the HTTP layer.

It follows the contract in ``elastik.server.model`` (preconditions run inside the write,
changes are announced through ``hooks.on_change``, idempotency keys replay) but has no
durability and no audit chain: ETags are ``sha256-`` for memory namespaces and a counter
based ``hmac-`` token for durable ones. The real server always uses ``engine.Engine``.
"""

from __future__ import annotations

import hashlib

from elastik.server.errors import (
    ElastikError,
    IdempotencyConflict,
    NotFound,
    PayloadTooLarge,
    StorageFailure,
)
from elastik.server.model import (
    Change,
    EngineHooks,
    Idempotency,
    PoolStat,
    Precondition,
    Usage,
    VerifyResult,
    World,
    WriteResult,
)
from elastik.server.paths import LEDGER, is_memory


class FakeEngine:
    def __init__(self, max_world_bytes: int = 1 << 20) -> None:
        self.hooks = EngineHooks()
        self.worlds: dict[str, World] = {}
        self.counter = 0
        self.max_world_bytes = max_world_bytes
        self.idem: dict[str, tuple[str, WriteResult]] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_next: Exception | None = None
        self.verify_result: VerifyResult | None = None
        self.closed = False

    def _etag(self, world: str, body: bytes) -> str:
        if is_memory(world):
            return "sha256-" + hashlib.sha256(body).hexdigest()
        self.counter += 1
        return "hmac-" + hashlib.sha256(b"%d" % self.counter + body).hexdigest()

    def _begin(
        self, op: str, world: str, precondition: Precondition | None, idem: Idempotency | None
    ) -> WriteResult | None:
        self.calls.append((op, world))
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if idem is not None and idem.key in self.idem:
            fp, result = self.idem[idem.key]
            if fp != idem.fingerprint:
                raise IdempotencyConflict()
            return WriteResult(result.status, result.etag, replayed=True)
        current = self.worlds.get(world)
        if precondition is not None:
            precondition(current.etag if current else None)
        return None

    def _finish(self, idem: Idempotency | None, result: WriteResult, change: Change) -> WriteResult:
        if idem is not None:
            self.idem[idem.key] = (idem.fingerprint, result)
        for hook in self.hooks.on_change:
            hook(change)
        return result

    def read(self, world: str) -> World | None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        return self.worlds.get(world)

    def write_now(self, *args: object) -> WriteResult | None:
        return None  # every write takes the awaited path, where failures are injected

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
        replay = self._begin("put", world, precondition, idempotency)
        if replay:
            return replay
        created = world not in self.worlds
        etag = self._etag(world, body)
        self.worlds[world] = World(world, body, content_type, headers, etag, not is_memory(world))
        result = WriteResult(201 if created else 200, etag)
        return self._finish(idempotency, result, Change("put", world, etag))

    async def append(
        self,
        world: str,
        body: bytes,
        *,
        precondition: Precondition | None = None,
        idempotency: Idempotency | None = None,
    ) -> WriteResult:
        replay = self._begin("append", world, precondition, idempotency)
        if replay:
            return replay
        cur = self.worlds.get(world)
        if cur is None:
            raise NotFound()
        new = cur.body + body
        if len(new) > self.max_world_bytes:
            raise PayloadTooLarge(f"payload too large: max bytes {self.max_world_bytes}\n")
        etag = self._etag(world, new)
        self.worlds[world] = World(world, new, cur.content_type, cur.headers, etag, cur.durable)
        return self._finish(idempotency, WriteResult(200, etag), Change("post", world, etag))

    async def delete(
        self,
        world: str,
        *,
        precondition: Precondition | None = None,
        idempotency: Idempotency | None = None,
    ) -> WriteResult:
        replay = self._begin("delete", world, precondition, idempotency)
        if replay:
            return replay
        if world not in self.worlds:
            raise NotFound()
        del self.worlds[world]
        return self._finish(idempotency, WriteResult(204, None), Change("delete", world, None))

    def list_worlds(self) -> list[tuple[str, int]]:
        return sorted(
            ((k, len(w.body)) for k, w in self.worlds.items()), key=lambda t: t[0].encode()
        )

    def usage(self) -> Usage:
        mem = sum(len(w.body) for w in self.worlds.values() if not w.durable)
        dur = sum(len(w.body) for w in self.worlds.values() if w.durable)
        count = sum(1 for k in self.worlds if k != LEDGER)
        return Usage(dur, 0, mem, 256 * 1024 * 1024, count)

    def pool_stats(self) -> list[PoolStat]:
        return [PoolStat("read_cache_entries", len(self.worlds), "snapshot")]

    async def verify(self, world: str) -> VerifyResult:
        if self.verify_result is not None:
            return self.verify_result
        w = self.worlds.get(world)
        if w is None:
            return VerifyResult("missing")
        if not w.durable:
            return VerifyResult("memory")
        return VerifyResult("valid", 1, w.etag[5:], w.etag[5:])

    def close(self) -> None:
        self.closed = True


__all__ = ["ElastikError", "FakeEngine", "StorageFailure"]
