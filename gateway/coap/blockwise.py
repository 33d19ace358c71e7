"""Bounded state for RFC 7959 block-wise transfers (sans-IO).

``Block1Spool`` reassembles request bodies sent in blocks; ``Block2Cache`` keeps a
complete answer while a device fetches it block by block. Both are LRU tables with a
lifetime, bounded in entries and in bytes, so a device that starts transfers and walks
away (or a flood of block-0 requests) cannot grow the gateway's memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

# How long an unfinished transfer is kept: RFC 7252 MAX_TRANSMIT_WAIT (93 s) is the
# longest a device may take to send the next block including all retransmissions.
TRANSFER_LIFETIME = 93.0


class BlockError(Exception):
    """A block out of sequence (4.08) or a body over the limit (4.13)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class _Assembly:
    body: bytearray
    expires: float


class Block1Spool:
    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._table: OrderedDict[Hashable, _Assembly] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def feed(self, key: Hashable, num: int, more: bool, size: int, payload: bytes) -> bytes | None:
        """Add one block. Returns the whole body after the last block, None before it."""
        now = self._clock()
        self._expire(now)
        if num == 0:
            entry = _Assembly(bytearray(), now + TRANSFER_LIFETIME)
            self._table[key] = entry
            self._table.move_to_end(key)
            while len(self._table) > self.max_entries:
                self._table.popitem(last=False)
        else:
            found = self._table.get(key)
            if found is None:
                raise BlockError("4.08", "no transfer in progress for this block")
            entry = found
        if more and len(payload) != size:
            self._table.pop(key, None)
            raise BlockError("4.00", "block payload does not match its size")
        if num * size != len(entry.body):
            self._table.pop(key, None)
            raise BlockError("4.08", "block out of sequence")
        if len(entry.body) + len(payload) > self.max_bytes:
            self._table.pop(key, None)
            raise BlockError("4.13", "request body too large")
        entry.body += payload
        entry.expires = now + TRANSFER_LIFETIME
        if more:
            return None
        self._table.pop(key, None)
        return bytes(entry.body)

    def _expire(self, now: float) -> None:
        for k in [k for k, e in self._table.items() if e.expires < now]:
            del self._table[k]


class Block2Cache:
    """Complete answers being fetched block-wise, keyed by (endpoint, world, ...)."""

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._table: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def put(self, key: Hashable, value: object) -> None:
        now = self._clock()
        self._table[key] = (now + TRANSFER_LIFETIME, value)
        self._table.move_to_end(key)
        while len(self._table) > self.max_entries:
            self._table.popitem(last=False)

    def get(self, key: Hashable) -> object | None:
        item = self._table.get(key)
        if item is None:
            return None
        if item[0] < self._clock():
            del self._table[key]
            return None
        return item[1]

    def drop(self, key: Hashable) -> None:
        self._table.pop(key, None)


def block_slice(body: bytes, num: int, szx: int) -> tuple[bytes, bool]:
    """(payload of block ``num`` at size 2**(szx+4), more?) -- ValueError past the end."""
    size = 1 << (szx + 4)
    start = num * size
    if start >= len(body) and not (start == 0 and not body):
        raise ValueError("block out of range")
    end = min(start + size, len(body))
    return body[start:end], end < len(body)
