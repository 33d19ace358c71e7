"""Memory worlds (``tmp/``, ``dev/``, ``sys/``, §17): a dict of current states and their
byte total. Only the writer thread mutates it (after its batch commits); readers on any
thread read single dict entries, which is atomic under the GIL.
"""

from __future__ import annotations

from .model import World


class MemoryStore:
    def __init__(self) -> None:
        self._worlds: dict[str, World] = {}
        self.used = 0

    def get(self, world: str) -> World | None:
        return self._worlds.get(world)

    def set(self, world: str, state: World | None) -> None:
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
