"""Memory worlds (``tmp/``, ``dev/``, ``sys/``, §17): current states, their byte total, and
what a PUT or POST does to one (``plan_write``, pure).

Two writers, never for the same moment: the engine applies plain memory PUT/POST directly
on the event loop thread (no thread hop, no fsync), and the writer thread applies memory
DELETEs (they append to the durable ledger) and writes carrying an Idempotency-Key (the key
is durable) after its batch commits. The engine sends every memory write through the
writer while any such write is in flight, so the two never interleave. ``lock`` keeps
``used`` exact; readers take single dict entries, which is atomic under the GIL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from . import audit
from .errors import NotFound, PayloadTooLarge
from .model import Change, Precondition, World, WriteResult


class MemoryStore:
    def __init__(self) -> None:
        self._worlds: dict[str, World] = {}
        self.used = 0
        self.lock = threading.Lock()

    def get(self, world: str) -> World | None:
        return self._worlds.get(world)

    def set(self, world: str, state: World | None) -> None:
        with self.lock:
            self._set(world, state)

    def _set(self, world: str, state: World | None) -> None:
        old = self._worlds.pop(world, None) if state is None else self._worlds.get(world)
        if old is not None:
            self.used -= len(old.body)
        if state is not None:
            self._worlds[world] = state
            self.used += len(state.body)

    def sizes(self) -> list[tuple[str, int]]:
        return [(name, len(w.body)) for name, w in list(self._worlds.items())]

    def __len__(self) -> int:
        return len(self._worlds)


@dataclass(frozen=True, slots=True)
class Planned:
    state: World
    delta: int  # change of the memory byte total
    result: WriteResult
    change: Change


def plan_write(
    kind: str,
    world: str,
    cur: World | None,
    data: bytes,
    content_type: str,
    headers: tuple[tuple[str, str], ...],
    precondition: Precondition | None,
    used: int,
    max_world_bytes: int,
    max_memory_bytes: int,
) -> Planned:
    """PUT (``kind="put"``) or POST (``"append"``) on a memory world; raises the refusal.

    Order: existence (404), precondition (412), world size then memory total (413).
    """
    if kind == "put":
        if precondition is not None:
            precondition(None if cur is None else cur.etag)
        body, ct, hdrs = data, content_type, tuple(sorted(headers))
        status, change_kind = (201 if cur is None else 200), "put"
    else:
        if cur is None:
            raise NotFound()
        if precondition is not None:
            precondition(cur.etag)
        body, ct, hdrs = cur.body + data, cur.content_type, cur.headers
        status, change_kind = 200, "post"
    if len(body) > max_world_bytes:
        raise PayloadTooLarge(f"payload too large: max bytes {max_world_bytes}\n")
    delta = len(body) - (0 if cur is None else len(cur.body))
    if delta > 0 and used + delta > max_memory_bytes:
        raise PayloadTooLarge(f"payload too large: max bytes {max_memory_bytes}\n")
    if cur is not None and kind == "append" and not data:
        etag = cur.etag  # an empty POST keeps a memory world's ETag (§7.3)
    else:
        etag = "sha256-" + audit.sha256_hex(body)
    return Planned(
        World(world, body, ct, hdrs, etag, False),
        delta,
        WriteResult(status, etag),
        Change("put" if change_kind == "put" else "post", world, etag),
    )
