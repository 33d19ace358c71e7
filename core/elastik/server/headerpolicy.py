"""Which request headers a PUT persists (PROTOCOL §11), and the stored content type (§10).

Four layers, first decisive one wins: hard deny, user deny (``ELASTIK_DENY_HEADERS``),
default allow, user allow (``ELASTIK_PERSIST_HEADERS``). Pure; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..headernames import DEFAULT_ALLOW, HARD_DENY, HARD_DENY_PREFIXES

OCTET_STREAM = "application/octet-stream"

# Distinct header names remembered with their decision. Header names come from clients, so
# the memo is bounded; 4096 covers any real deployment's vocabulary many times over.
_MEMO_MAX = 4096


class NameList:
    """A parsed ``ELASTIK_PERSIST_HEADERS`` / ``ELASTIK_DENY_HEADERS`` value."""

    __slots__ = ("exact", "prefixes")

    def __init__(self, spec: str = ""):
        exact: set[str] = set()
        prefixes: list[str] = []
        for entry in spec.split(","):
            entry = entry.strip().lower()
            if not entry:
                continue
            if entry.endswith("*"):
                if len(entry) > 1:  # "*" alone is ignored in both lists
                    prefixes.append(entry[:-1])
            else:
                exact.add(entry)
        self.exact = frozenset(exact)
        self.prefixes = tuple(prefixes)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.exact or name.startswith(self.prefixes))


# Anything but visible ASCII, space and tab (what HTTP header values may be as text).
_NOT_VISIBLE = re.compile(rb"[^\x20-\x7e\t]")


def _visible(value: bytes) -> bool:
    return _NOT_VISIBLE.search(value) is None


class HeaderPolicy:
    def __init__(self, persist: str = "", deny: str = ""):
        self.allow = NameList(persist)
        self.deny = NameList(deny)
        self._memo: dict[bytes, str | None] = {}

    def _decide(self, raw_name: bytes) -> str | None:
        """The lowercase name if a header called ``raw_name`` is persisted, else None."""
        try:
            return self._memo[raw_name]
        except KeyError:
            pass
        name = raw_name.decode("latin-1").lower()
        keep: str | None
        if name in HARD_DENY or name.startswith(HARD_DENY_PREFIXES) or name in self.deny:
            keep = None
        elif name in DEFAULT_ALLOW or name in self.allow:
            keep = name
        else:
            keep = None
        if len(self._memo) < _MEMO_MAX:
            self._memo[raw_name] = keep
        return keep

    def persisted(self, headers: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
        """Headers a PUT stores: lowercased names, last value wins, sorted by name."""
        kept: dict[str, str] = {}
        for raw_name, value in headers:
            name = self._decide(raw_name)
            if name is None:
                continue
            if not _visible(value):
                continue  # dropped silently, like the reference
            kept[name] = value.decode("ascii")
        return tuple(sorted(kept.items()))


def content_type(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """First ``Content-Type``; missing, empty or not visible ASCII -> application/octet-stream."""
    for name, value in headers:
        if name == b"content-type":
            return content_type_value(value)
    return OCTET_STREAM


def content_type_value(value: bytes | None) -> str:
    """The stored media type for the first Content-Type value (None: header absent)."""
    if value is None:
        return OCTET_STREAM
    value = value.strip(b" \t")
    if not value or not _visible(value):
        return OCTET_STREAM
    return value.decode("ascii")
