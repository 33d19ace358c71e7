"""A bounded LRU of durable worlds' current state, with the reference's /proc/pool counters.

The writer puts every state it commits (so a write is always visible to the next read);
readers fill misses from their own connection. A fill is dropped when any write committed
while the reader was reading (``generation`` moved), so a slow reader can never put back a
state older than the writer's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from .model import World

# Bodies above 1 MiB are not cached (counted as ``capped``): a handful of 64 MiB worlds must
# not push thousands of small ones out or hold gigabytes of memory.
MAX_CACHED_BODY = 1024 * 1024
# Total cached body bytes: 64 MiB keeps the default 5000 entries of small worlds resident.
MAX_CACHED_BYTES = 64 * 1024 * 1024

_MISSING = object()


class ReadCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max(1, max_entries)
        self._lru: OrderedDict[str, World | None] = OrderedDict()  # None = tombstone
        self._lock = threading.Lock()
        self._bytes = 0
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self.capped = 0
        self.evictions = 0
        self.open_fails = 0

    def get(self, world: str) -> tuple[bool, World | None]:
        with self._lock:
            got = self._lru.get(world, _MISSING)
            if got is _MISSING:
                self.misses += 1
                return False, None
            self._lru.move_to_end(world)
            self.hits += 1
            return True, got  # type: ignore[return-value]

    def fill(self, world: str, state: World | None, generation: int) -> None:
        """Cache a state read by a reader, unless a write committed since ``generation``."""
        with self._lock:
            if generation == self.generation and world not in self._lru:
                self._store(world, state)

    def peek(self, world: str) -> World | None:
        """The cached state without touching LRU order or counters (None: absent/deleted)."""
        with self._lock:
            got = self._lru.get(world)
            return got

    def update_many(self, states: dict[str, World | None], drops: set[str] | None = None) -> None:
        """The writer's committed states (None = deleted) and forgotten entries, in one step."""
        with self._lock:
            self.generation += 1
            for world in drops or ():
                old = self._lru.pop(world, None)
                if old is not None:
                    self._bytes -= len(old.body)
            for world, state in states.items():
                self._store(world, state)

    def _store(self, world: str, state: World | None) -> None:
        old = self._lru.pop(world, None)
        if old is not None:
            self._bytes -= len(old.body)
        if state is not None and len(state.body) > MAX_CACHED_BODY:
            self.capped += 1
            return
        self._lru[world] = state
        if state is not None:
            self._bytes += len(state.body)
        while len(self._lru) > self.max_entries or self._bytes > MAX_CACHED_BYTES:
            _, gone = self._lru.popitem(last=False)
            if gone is not None:
                self._bytes -= len(gone.body)
            self.evictions += 1

    def snapshot(self) -> tuple[int, int]:
        """(entries, tombstones)."""
        with self._lock:
            tomb = sum(1 for v in self._lru.values() if v is None)
            return len(self._lru), tomb
