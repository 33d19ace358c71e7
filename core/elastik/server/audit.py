"""The audit chain, as pure functions: HMAC of an event (§14.4), meta_sha256 (§14.5), the
verification walk (§14.7 a–c) and the D3 state check. No I/O: callers feed event rows in.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Headers = Sequence[tuple[str, str]]

# meta_sha256 of the ledger's delete events: sha256("content-type\0\0"), no headers (§14.3).
DELETE_META_SHA256 = hashlib.sha256(b"content-type\x00\x00").hexdigest()
KEY_CHECK_MESSAGE = b"elastik-key-check"

EVENT_PUT = "put"
EVENT_APPEND = "append"
EVENT_DELETE_INTENT = "delete_intent"
EVENT_DELETE_COMMIT = "delete_commit"
STATE_EVENTS = frozenset((EVENT_PUT, EVENT_APPEND))
LEDGER_CONTENT_TYPE = "application/octet-stream"  # the ledger's body is created empty (§14.6)


_MESSAGE = (
    b"prev\x00%d\x00%s\x00type\x00%d\x00%s\x00target\x00%d\x00%s\x00"
    b"body-sha256\x00%d\x00%s\x00size\x00%d\x00%s\x00content-type\x00%d\x00%s\x00"
    b"meta-sha256\x00%d\x00%s\x00"
)


def hmac_message(
    prev: str,
    event_type: str,
    target: str,
    body_sha256: str,
    size: int,
    content_type: str,
    meta_sha256: str,
) -> bytes:
    """The exact bytes the event HMAC covers (§14.4): seven fields, each
    ``label 0x00 decimal(len(value)) 0x00 value 0x00``, in this order (one format call: this
    runs twice per write)."""
    p, e, t = prev.encode(), event_type.encode(), target.encode()
    b, z, c, m = body_sha256.encode(), b"%d" % size, content_type.encode(), meta_sha256.encode()
    return _MESSAGE % (
        len(p), p, len(e), e, len(t), t, len(b), b, len(z), z, len(c), c, len(m), m
    )  # fmt: skip


def event_hmac(
    key: bytes,
    prev: str,
    event_type: str,
    target: str,
    body_sha256: str,
    size: int,
    content_type: str,
    meta_sha256: str,
) -> str:
    msg = hmac_message(prev, event_type, target, body_sha256, size, content_type, meta_sha256)
    return _hmac.new(key, msg, hashlib.sha256).hexdigest()


def meta_sha256(content_type: str, headers: Headers) -> str:
    """sha256 over the content type and the persisted headers sorted by name (§14.5)."""
    h = hashlib.sha256(b"content-type\x00" + content_type.encode() + b"\x00")
    for name, value in sorted(headers):
        h.update(name.encode() + b"\x00" + value.encode() + b"\x00")
    return h.hexdigest()


def key_check_value(key: bytes) -> str:
    """A value stored with the data so a wrong key is noticed at startup without a full walk."""
    return _hmac.new(key, KEY_CHECK_MESSAGE, hashlib.sha256).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event row plus its event_headers (§14.2)."""

    id: int
    event_type: str
    target: str
    body_sha256: str
    size: int
    content_type: str
    meta_sha256: str
    hmac: str
    prev_hmac: str
    headers: tuple[tuple[str, str], ...] = ()

    def recomputed_hmac(self, key: bytes) -> str:
        return event_hmac(
            key,
            self.prev_hmac,
            self.event_type,
            self.target,
            self.body_sha256,
            self.size,
            self.content_type,
            self.meta_sha256,
        )


@dataclass(frozen=True, slots=True)
class Break:
    """Where and how a chain (or the current state) fails verification."""

    at: str  # 0-based event index as text, or "state"
    expected: str
    actual: str

    def message(self, world: str) -> str:
        """The §1.3 startup failure text (without the ``elastik-core: `` prefix)."""
        return (
            f"build Engine failed: audit chain verification failed for {world}: "
            f"audit chain broken at event {self.at}: expected {self.expected}, "
            f"actual {self.actual}"
        )


NO_EVENTS = Break("0", "at-least-one-event", "no-events")


class ChainWalker:
    """Feeds events in id order and reports the first failure of rules (a), (b), (c).

    ``start_index``/``prev`` let a caller resume from a verified checkpoint.
    """

    __slots__ = ("count", "first", "index", "key", "last", "last_state", "prev")

    def __init__(self, key: bytes, start_index: int = 0, prev: str = "") -> None:
        self.key = key
        self.index = start_index
        self.prev = prev
        self.count = 0
        self.first: Event | None = None
        self.last: Event | None = None
        self.last_state: Event | None = None  # latest put/append: what the state must match

    def feed(self, ev: Event) -> Break | None:
        at = str(self.index)
        if ev.prev_hmac != self.prev:  # (a) chain link
            return Break(at, f"hmac-{self.prev}", f"hmac-{ev.prev_hmac}")
        meta = meta_sha256(ev.content_type, ev.headers)
        if meta != ev.meta_sha256:  # (b) metadata
            return Break(at, f"meta-sha256-{meta}", f"meta-sha256-{ev.meta_sha256}")
        mac = ev.recomputed_hmac(self.key)
        if mac != ev.hmac:  # (c) hmac
            return Break(at, f"hmac-{mac}", f"hmac-{ev.hmac}")
        if self.first is None:
            self.first = ev
        self.last = ev
        if ev.event_type in STATE_EVENTS:
            self.last_state = ev
        self.prev = ev.hmac
        self.index += 1
        self.count += 1
        return None


def verify_chain(key: bytes, events: Iterable[Event]) -> tuple[Break | None, ChainWalker]:
    """Walk a whole chain from index 0. A chain with zero events fails (§14.7)."""
    walker = ChainWalker(key)
    for ev in events:
        brk = walker.feed(ev)
        if brk is not None:
            return brk, walker
    if walker.count == 0:
        return NO_EVENTS, walker
    return None, walker


EMPTY_SHA256 = sha256_hex(b"")


def check_state(
    latest_state: Event | None, body: bytes, content_type: str, headers: Headers
) -> Break | None:
    """D3: the stored state must match the latest put/append event.

    ``latest_state`` None (a chain of delete events only: the ledger) means the state must
    still be the ledger's empty creation state. Field names prefix the values.
    """
    if latest_state is None:
        want_sha, want_size, want_ct = EMPTY_SHA256, 0, LEDGER_CONTENT_TYPE
        want_meta = meta_sha256(LEDGER_CONTENT_TYPE, ())
    else:
        want_sha, want_size = latest_state.body_sha256, latest_state.size
        want_ct, want_meta = latest_state.content_type, latest_state.meta_sha256
    body_sha = sha256_hex(body)
    if body_sha != want_sha:
        return Break("state", f"body-sha256-{want_sha}", f"body-sha256-{body_sha}")
    if len(body) != want_size:
        return Break("state", f"size-{want_size}", f"size-{len(body)}")
    if content_type != want_ct:
        return Break("state", f"content-type-{want_ct}", f"content-type-{content_type}")
    meta = meta_sha256(content_type, headers)
    if meta != want_meta:
        return Break("state", f"meta-sha256-{want_meta}", f"meta-sha256-{meta}")
    return None
