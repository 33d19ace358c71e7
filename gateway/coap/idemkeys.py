"""Stable Idempotency-Keys for CoAP exchanges (pure: the caller passes the time).

A CoAP retransmission carries the same (endpoint, MID, token) as the first attempt. The
exchange cache answers most retransmissions itself; the ones that still reach the core
(the first attempt is in flight, or its exchange was evicted from the bounded cache) must
carry the *same* Idempotency-Key so the core applies the write once.

The key hashes (endpoint, MID, token) with the 600 s time bucket of the exchange's **first
sighting**, remembered here for EXCHANGE_LIFETIME: a retransmission that arrives after a
bucket boundary still maps to the first attempt's key. The bucket keeps a device whose MIDs
wrap (65,536 messages) from reusing a key the core still remembers (24 h), which the core
would answer with 422. Only if this table itself has forgotten the exchange (more than
``capacity`` new exchanges within EXCHANGE_LIFETIME) does the key fall back to the bucket of
the retransmission's own arrival time.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

# RFC 7252 §4.8.2: a sender retransmits a CON for at most MAX_TRANSMIT_SPAN (45 s) and
# a message ID must not be reused within EXCHANGE_LIFETIME (247 s).
EXCHANGE_LIFETIME = 247.0
BUCKET_SECONDS = 600
# Twice the gateway's default exchange cache (16,384), so first sightings outlive the
# cache's evictions; about 160 bytes an entry, ~5 MB at most on a Raspberry Pi.
DEFAULT_CAPACITY = 32768

Exchange = tuple[str, int, int, bytes]  # (host, port, MID, token)


class ExchangeKeys:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, lifetime: float = EXCHANGE_LIFETIME):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.lifetime = lifetime
        self._first_seen: OrderedDict[Exchange, float] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._first_seen)

    def key(self, host: str, port: int, mid: int, token: bytes, now: float) -> str:
        exchange = (host, port, mid, token)
        first = self._first_seen.get(exchange)
        if first is None or now - first > self.lifetime:
            first = now
            self._first_seen[exchange] = now
            self._first_seen.move_to_end(exchange)
            self._expire(now)
        seed = f"{host}|{port}|{mid}|{token.hex()}|{int(first // BUCKET_SECONDS)}"
        return "coap-" + hashlib.sha256(seed.encode()).hexdigest()[:40]

    def _expire(self, now: float) -> None:
        seen = self._first_seen
        while seen:
            _exchange, first = next(iter(seen.items()))
            if now - first > self.lifetime:
                seen.popitem(last=False)
            elif len(seen) > self.capacity:
                seen.popitem(last=False)
                self.evictions += 1
            else:
                break
