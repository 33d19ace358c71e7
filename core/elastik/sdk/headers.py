"""The core's four-layer persisted-header policy (PROTOCOL §11), for ``FakeElastik``.

Layer 1 hard deny, layer 2 user deny (``ELASTIK_DENY_HEADERS``), layer 3 default allow,
layer 4 user allow (``ELASTIK_PERSIST_HEADERS``). The name lists are the server's own
(``elastik.headernames``, shared with ``elastik.server.headerpolicy``), so the fake and the core can
never disagree about them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from elastik.headernames import DEFAULT_ALLOW, HARD_DENY, HARD_DENY_PREFIXES

__all__ = [
    "DEFAULT_ALLOW",
    "HARD_DENY",
    "HARD_DENY_PREFIXES",
    "HeaderAllowlist",
    "coerce_allowlist",
    "should_persist",
]


@dataclass(frozen=True)
class HeaderAllowlist:
    """A comma list of names; an entry ending in ``*`` is a prefix (``x-meta-*``)."""

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> HeaderAllowlist:
        exact: set[str] = set()
        prefixes: list[str] = []
        for entry in raw.split(","):
            entry = entry.strip().lower()
            if entry.endswith("*"):
                if entry[:-1]:  # "*" alone is ignored, like the core does
                    prefixes.append(entry[:-1])
            elif entry:
                exact.add(entry)
        return cls(frozenset(exact), tuple(prefixes))

    @classmethod
    def from_env(cls, name: str = "ELASTIK_PERSIST_HEADERS") -> HeaderAllowlist:
        return cls.parse(os.environ.get(name, ""))

    @classmethod
    def empty(cls) -> HeaderAllowlist:
        return cls()

    def matches(self, name: str) -> bool:
        return name in self.exact or any(name.startswith(p) for p in self.prefixes)

    def is_empty(self) -> bool:
        return not self.exact and not self.prefixes


def coerce_allowlist(value: HeaderAllowlist | str | None, env_name: str) -> HeaderAllowlist:
    if value is None:
        return HeaderAllowlist.from_env(env_name)
    if isinstance(value, str):
        return HeaderAllowlist.parse(value)
    return value


def should_persist(
    name: str, allow: HeaderAllowlist | None = None, deny: HeaderAllowlist | None = None
) -> bool:
    n = name.strip().lower()
    if not n or n in HARD_DENY or n.startswith(HARD_DENY_PREFIXES):
        return False
    if deny is not None and deny.matches(n):
        return False
    return n in DEFAULT_ALLOW or (allow is not None and allow.matches(n))
