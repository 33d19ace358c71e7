"""Stable, time-ordered Idempotency-Keys for CoAP exchanges (pure: the caller passes the time).

A CoAP retransmission carries the same (endpoint, MID, token) as the first attempt. The
exchange cache answers most retransmissions itself; the ones that still reach the core
(the first attempt is in flight, or its exchange was evicted from the bounded cache) must
carry the *same* Idempotency-Key so the core applies the write once.

The key is ``coap-<first sighting, ms, 11 hex digits>-<32 hex digits of SHA-256 over the
exchange and that time>``. The time of the exchange's **first sighting** is remembered here
(and, through ``on_new``, in the journal the gateway keeps on disk, so a restarted gateway
recomputes the same key for a retransmission: ``journal.py``): every retransmission maps to
the first attempt's key. The key leads with that time so that keys sort in the order they
are made: the core's index of keys then grows at its end, one B-tree leaf per commit,
instead of one random leaf per write (measured: ~15 % of the core's CPU per CoAP PUT).

A new sighting of an exchange after EXCHANGE_LIFETIME is a new message (a device whose
16-bit MIDs wrapped). Entries younger than MAX_TRANSMIT_SPAN -- the time in which a device
may still retransmit -- are never evicted below ``hard_capacity``; older ones go first once
the table holds more than ``capacity``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable

# RFC 7252 §4.8.2: a sender retransmits a CON for at most MAX_TRANSMIT_SPAN (45 s) and
# a message ID must not be reused within EXCHANGE_LIFETIME (247 s).
MAX_TRANSMIT_SPAN = 45.0
EXCHANGE_LIFETIME = 247.0
# Twice the gateway's default exchange cache (16,384), so first sightings outlive the
# cache's evictions; about 160 bytes an entry, ~5 MB on a Raspberry Pi. Beyond it, entries
# older than MAX_TRANSMIT_SPAN go; younger ones only past HARD_CAPACITY (~40 MB, more new
# exchanges per 45 s than a gateway can forward).
DEFAULT_CAPACITY = 32768
HARD_CAPACITY = 8 * DEFAULT_CAPACITY

Exchange = tuple[str, int, int, bytes]  # (host, port, MID, token)


def make_key(exchange: Exchange, first_ms: int) -> str:
    host, port, mid, token = exchange
    seed = f"{host}|{port}|{mid}|{token.hex()}|{first_ms}"
    return f"coap-{first_ms:011x}-" + hashlib.sha256(seed.encode()).hexdigest()[:32]


class ExchangeKeys:
    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        lifetime: float = EXCHANGE_LIFETIME,
        *,
        hard_capacity: int | None = None,
        on_new: Callable[[Exchange, int], None] | None = None,
    ):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.hard_capacity = max(capacity, hard_capacity or 8 * capacity)
        self.lifetime = lifetime
        self.on_new = on_new  # told of every first sighting (the journal)
        self._first_seen: OrderedDict[Exchange, int] = OrderedDict()  # -> first sighting, ms
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._first_seen)

    def key(self, host: str, port: int, mid: int, token: bytes, now: float) -> str:
        exchange = (host, port, mid, token)
        now_ms = int(now * 1000)
        first = self._first_seen.get(exchange)
        if first is None or now_ms - first > self.lifetime * 1000:
            first = now_ms
            self._first_seen[exchange] = now_ms
            self._first_seen.move_to_end(exchange)
            self._expire(now_ms)
            if self.on_new is not None:
                self.on_new(exchange, now_ms)
        return make_key(exchange, first)

    def restore(self, sightings: Iterable[tuple[Exchange, int]], now: float) -> int:
        """Take first sightings back (from the journal, at start): returns how many."""
        now_ms = int(now * 1000)
        seen = self._first_seen
        taken = 0
        for exchange, first_ms in sorted(sightings, key=lambda s: s[1]):
            if 0 <= now_ms - first_ms <= self.lifetime * 1000 and exchange not in seen:
                seen[exchange] = first_ms
                taken += 1
        self._expire(now_ms)
        return taken

    def _expire(self, now_ms: int) -> None:
        seen = self._first_seen
        lifetime_ms = self.lifetime * 1000
        span_ms = MAX_TRANSMIT_SPAN * 1000
        while seen:
            _exchange, first = next(iter(seen.items()))
            age = now_ms - first
            if age > lifetime_ms:
                seen.popitem(last=False)
            elif len(seen) > self.hard_capacity or (len(seen) > self.capacity and age > span_ms):
                seen.popitem(last=False)
                self.evictions += 1
            else:
                break
