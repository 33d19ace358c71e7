"""The contract between the HTTP layer (``app``) and the storage engine (``engine``).

The engine owns revisions, the audit chain, quotas, idempotency keys and the delete ledger;
the HTTP layer never opens a database. Write methods are coroutines that resolve once the
change is durable (durable worlds) or applied (memory worlds); reads are synchronous and
served from the engine's cache or a reader connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

# Called by the engine inside the write, with the current ETag *token* (unquoted,
# e.g. "hmac-…" or "sha256-…") or None when the world does not exist. Raises an
# ElastikError (PreconditionFailed / NotFound) to abort the write with nothing changed.
Precondition = Callable[[str | None], None]

ChangeKind = Literal["put", "post", "delete"]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    data: Path
    key: bytes  # ELASTIK_KEY as raw UTF-8 bytes
    max_world_bytes: int = 64 * 1024 * 1024
    max_memory_bytes: int = 256 * 1024 * 1024
    max_storage_bytes: int = 0  # 0 = unlimited
    read_cache_max_entries: int = 5000
    idempotency_window_s: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class World:
    """The current state of one world, as GET serves it."""

    name: str  # canonical world path, e.g. "home/note"
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...]  # persisted headers, lowercase names, sorted by name
    etag: str  # unquoted token: "hmac-<hex>" (durable) or "sha256-<hex>" (memory)
    durable: bool


@dataclass(frozen=True, slots=True)
class Idempotency:
    key: str  # opaque, <= 255 bytes (validated by the HTTP layer)
    fingerprint: str  # hex sha256 over method, world, body and representation metadata


@dataclass(frozen=True, slots=True)
class WriteResult:
    status: int  # 201 created, 200 replaced/appended, 204 deleted
    etag: str | None  # unquoted token of the new state; None for delete
    replayed: bool = False  # True when answered from a stored Idempotency-Key


@dataclass(frozen=True, slots=True)
class Change:
    """Emitted once per successful write, in commit order, on the event loop thread."""

    kind: ChangeKind
    world: str
    etag: str | None


@dataclass(frozen=True, slots=True)
class Usage:
    storage_used: int
    storage_quota: int  # 0 = unlimited
    memory_used: int
    memory_limit: int
    worlds: int  # excluding the delete ledger


@dataclass(frozen=True, slots=True)
class VerifyResult:
    outcome: Literal["valid", "memory", "missing", "broken"]
    events: int = 0
    genesis: str = ""  # hmac hex of the first event
    latest: str = ""  # hmac hex of the last event
    break_at: str = ""  # 0-based index as text, or "state" (D3)
    expected: str = ""
    actual: str = ""


@dataclass(frozen=True, slots=True)
class PoolStat:
    name: str
    value: int
    kind: Literal["snapshot", "counter"]


@dataclass
class EngineHooks:
    on_change: list[Callable[[Change], None]] = field(default_factory=list)


class EngineAPI(Protocol):
    hooks: EngineHooks

    def read(self, world: str) -> World | None: ...

    def put(
        self,
        world: str,
        body: bytes,
        content_type: str,
        headers: tuple[tuple[str, str], ...],
        *,
        precondition: Precondition | None = None,
        idempotency: Idempotency | None = None,
    ) -> Awaitable[WriteResult]: ...

    def append(
        self,
        world: str,
        body: bytes,
        *,
        precondition: Precondition | None = None,
        idempotency: Idempotency | None = None,
    ) -> Awaitable[WriteResult]: ...

    def delete(
        self,
        world: str,
        *,
        precondition: Precondition | None = None,
        idempotency: Idempotency | None = None,
    ) -> Awaitable[WriteResult]: ...

    def write_now(
        self,
        kind: str,
        world: str,
        body: bytes,
        content_type: str,
        headers: tuple[tuple[str, str], ...],
        precondition: Precondition | None,
    ) -> WriteResult | None:
        """PUT (``kind="put"``) or POST (``"append"``) without waiting, when the engine can
        (memory worlds); ``None`` (and nothing done) otherwise. Never for idempotent writes."""
        ...

    def list_worlds(self) -> list[tuple[str, int]]: ...

    def usage(self) -> Usage: ...

    def pool_stats(self) -> list[PoolStat]: ...

    def verify(self, world: str) -> Awaitable[VerifyResult]: ...

    def close(self) -> None: ...
