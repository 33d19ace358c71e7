"""Server-Sent Events for ``/listen/{pattern}`` (PROTOCOL §16).

``encode_event`` / ``encode_lag`` are the pure encoder. ``ListenHub`` numbers changes,
keeps the replay ring and fans events out to listeners. Each listener has its own
bounded queue: publishing never awaits, so a slow or stuck client can never hold up a
writer or another listener. When a listener's queue is full it falls "behind": further
events are only counted, and once it has drained what was queued it receives
``event: lag`` with the number it missed, then continues live.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ServiceUnavailable
from .model import Change
from .paths import Pattern

KEEPALIVE = b": keepalive\n\n"
# Idle time before a keepalive comment (matches the reference's 15 s).
KEEPALIVE_INTERVAL_S = 15.0
# Events queued per listener before it falls behind. An event is ~100-1200 bytes (the
# path is at most 1024 bytes), so 256 bounds one listener to ~300 KiB even with maximal
# names, and 1024 listeners to ~80 MiB in the worst case; a client that is 256 events
# behind is better served by one lag event than by a deeper buffer.
LISTENER_QUEUE_MAX = 256

_METHOD = {"put": b"PUT", "post": b"POST", "delete": b"DELETE"}


def encode_event(event_id: int, change: Change) -> bytes:
    """One event block: event, id, and data lines for path, method and (unquoted) etag."""
    parts = [
        b"event: ",
        change.kind.encode(),
        b"\nid: %d\ndata: path: /" % event_id,
        change.world.encode(),
        b"\ndata: method: ",
        _METHOD[change.kind],
        b"\n",
    ]
    if change.etag is not None:
        parts += [b"data: etag: ", change.etag.encode(), b"\n"]
    parts.append(b"\n")
    return b"".join(parts)


def encode_lag(missed: int) -> bytes:
    return b"event: lag\ndata: missed: %d\n\n" % missed


def parse_last_event_id(value: bytes | None) -> int | None:
    """A non-negative decimal id, or None (absent, negative, non-numeric: replay nothing)."""
    if value is None:
        return None
    value = value.strip(b" \t")
    if not value or not value.isdigit():
        return None
    return int(value)


class Listener:
    """One /listen stream: a pattern, a bounded queue and its lag accounting."""

    __slots__ = ("_wake", "closed", "missed", "pattern", "queue")

    def __init__(self, pattern: Pattern):
        self.pattern = pattern
        self.queue: deque[bytes] = deque()
        self.missed = 0  # > 0 means "behind": events are counted, not queued
        self.closed = False
        self._wake = asyncio.Event()

    def offer(self, payload: bytes) -> None:
        if self.missed or len(self.queue) >= LISTENER_QUEUE_MAX:
            self.missed += 1
        else:
            self.queue.append(payload)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def take(self) -> bytes | None:
        """Everything ready to send as one chunk (queued events, then any lag), or None."""
        if not self.queue and not self.missed:
            return None
        chunks = list(self.queue)
        self.queue.clear()
        if self.missed:
            chunks.append(encode_lag(self.missed))
            self.missed = 0
        return b"".join(chunks)

    async def wait(self, timeout: float) -> bool:
        """Wait for data or close; False on timeout."""
        if self.queue or self.missed or self.closed:
            return True
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return False
        return True


class ListenHub:
    """Numbers changes (ids start at 1 per process), keeps the replay ring, fans out."""

    def __init__(self, replay_max: int = 1024, max_connections: int = 1024):
        self.max_connections = max_connections
        self.next_id = 1
        # The replay ring (ELASTIK_LISTEN_REPLAY_MAX): (id, change), encoded when replayed.
        self.ring: deque[tuple[int, Change]] = deque(maxlen=max(1, replay_max))
        self.listeners: set[Listener] = set()
        self.lagged = 0  # counter: times a listener fell behind (visible to tests)

    def on_change(self, change: Change) -> None:
        """EngineHooks.on_change target; runs on the event loop thread, never blocks."""
        event_id = self.next_id
        self.next_id += 1
        self.ring.append((event_id, change))
        if not self.listeners:
            return  # encoded lazily, on replay
        world = change.world
        payload: bytes | None = None
        for listener in self.listeners:
            if listener.pattern.matches(world):
                if payload is None:
                    payload = encode_event(event_id, change)
                if not listener.missed and len(listener.queue) >= LISTENER_QUEUE_MAX:
                    self.lagged += 1
                listener.offer(payload)

    def subscribe(self, pattern: str, last_event_id: int | None) -> Listener:
        """Register a listener, pre-loaded with the replay (§16.4). Raises 503 when full."""
        if len(self.listeners) >= self.max_connections:
            raise ServiceUnavailable(headers=[(b"retry-after", b"1")])
        listener = Listener(Pattern(pattern))
        last_id = self.next_id - 1
        if last_event_id is not None and last_event_id <= last_id and self.ring:
            oldest = self.ring[0][0]
            if oldest > last_event_id + 1:
                listener.queue.append(encode_lag(oldest - last_event_id - 1))
            for event_id, change in self.ring:
                if event_id > last_event_id and listener.pattern.matches(change.world):
                    listener.queue.append(encode_event(event_id, change))
        self.listeners.add(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def close_all(self) -> None:
        """Shutdown: end every stream so in-flight connections can drain."""
        for listener in list(self.listeners):
            listener.close()


Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def stream(
    listener: Listener,
    hub: ListenHub,
    receive: Receive,
    send: Send,
    keepalive_s: float = KEEPALIVE_INTERVAL_S,
) -> None:
    """Pump ``listener`` into an already-started response until disconnect or shutdown."""

    async def watch_disconnect() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                listener.close()
                return

    watcher = asyncio.ensure_future(watch_disconnect())
    try:
        while not listener.closed:
            if await listener.wait(keepalive_s):
                chunk = listener.take()
                if chunk is None:
                    continue
            else:
                chunk = KEEPALIVE
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        hub.unsubscribe(listener)
        watcher.cancel()
