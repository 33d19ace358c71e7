"""§16 SSE: encoder, replay ring and Last-Event-ID, lag, backpressure, limits, keepalive."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from elastik.server import sse
from elastik.server.errors import ServiceUnavailable
from elastik.server.model import Change

E = "hmac-" + "0" * 64


def put(world: str, etag: str = E) -> Change:
    return Change("put", world, etag)


def test_encode_event_put_and_delete() -> None:
    assert sse.encode_event(7, put("home/a b")) == (
        b"event: put\nid: 7\ndata: path: /home/a b\ndata: method: PUT\ndata: etag: "
        + E.encode()
        + b"\n\n"
    )
    assert sse.encode_event(8, Change("delete", "tmp/\u00e9", None)) == (
        "event: delete\nid: 8\ndata: path: /tmp/\u00e9\ndata: method: DELETE\n\n".encode()
    )
    assert b"method: POST" in sse.encode_event(9, Change("post", "home/x", E))


def test_encode_lag() -> None:
    assert sse.encode_lag(3) == b"event: lag\ndata: missed: 3\n\n"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [(None, None), (b"", None), (b"abc", None), (b"-1", None), (b"5", 5), (b" 5 ", 5)],
)
def test_parse_last_event_id(value: bytes | None, parsed: int | None) -> None:
    assert sse.parse_last_event_id(value) == parsed


async def test_ids_start_at_one_and_fan_out_by_pattern() -> None:
    hub = sse.ListenHub()
    a = hub.subscribe("home/a*", None)
    b = hub.subscribe("*", None)
    hub.on_change(put("home/abc"))
    hub.on_change(put("home/b"))
    assert a.take() == sse.encode_event(1, put("home/abc"))
    assert b.take() == sse.encode_event(1, put("home/abc")) + sse.encode_event(2, put("home/b"))
    assert a.take() is None


async def test_replay_after_last_event_id_matching_pattern_only() -> None:
    hub = sse.ListenHub(replay_max=10)
    for w in ("home/x", "home/y", "home/x"):
        hub.on_change(put(w))
    listener = hub.subscribe("home/x", 1)
    assert listener.take() == sse.encode_event(3, put("home/x"))


@pytest.mark.parametrize("last", [None, 3, 99])
async def test_no_replay_without_header_or_for_current_or_future_id(last: int | None) -> None:
    hub = sse.ListenHub(replay_max=10)
    for _ in range(3):
        hub.on_change(put("home/x"))
    assert hub.subscribe("*", last).take() is None


async def test_lag_event_when_replay_ring_lost_events() -> None:
    hub = sse.ListenHub(replay_max=3)
    for i in range(6):  # ids 1..6, ring keeps 4..6
        hub.on_change(put(f"home/{i}"))
    listener = hub.subscribe("home/5", 1)
    # missed = oldest buffered (4) - 1 - 1 = 2, counted over all events
    assert listener.take() == sse.encode_lag(2) + sse.encode_event(6, put("home/5"))


async def test_slow_listener_falls_behind_and_gets_lag_without_blocking_others() -> None:
    hub = sse.ListenHub()
    slow = hub.subscribe("*", None)
    fast = hub.subscribe("*", None)
    total = sse.LISTENER_QUEUE_MAX + 10
    for i in range(total):
        hub.on_change(put(f"home/{i}"))
        fast.take()  # a fast listener drains as it goes
    chunk = slow.take()
    assert chunk is not None
    assert chunk.count(b"event: put") == sse.LISTENER_QUEUE_MAX
    assert chunk.endswith(sse.encode_lag(10))
    assert hub.lagged == 1
    hub.on_change(put("home/after"))  # then it continues live
    assert slow.take() == sse.encode_event(total + 1, put("home/after"))


async def test_connection_limit_503_and_slot_frees() -> None:
    hub = sse.ListenHub(max_connections=2)
    first = hub.subscribe("*", None)
    hub.subscribe("*", None)
    with pytest.raises(ServiceUnavailable) as info:
        hub.subscribe("*", None)
    assert info.value.status == 503
    assert info.value.body == b"too many listen connections\n"
    assert (b"retry-after", b"1") in info.value.headers
    hub.unsubscribe(first)
    hub.subscribe("*", None)


class Pipe:
    """ASGI receive/send pair for a streaming response."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.disconnect = asyncio.Event()
        self.got = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self.got.set()

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent)


async def test_stream_sends_keepalive_when_idle_and_ends_on_disconnect() -> None:
    hub = sse.ListenHub()
    listener = hub.subscribe("*", None)
    pipe = Pipe()
    task = asyncio.ensure_future(sse.stream(listener, hub, pipe.receive, pipe.send, 0.05))
    await asyncio.wait_for(pipe.got.wait(), 5)
    assert pipe.body().startswith(sse.KEEPALIVE)
    hub.on_change(put("home/x"))
    while sse.encode_event(1, put("home/x")) not in pipe.body():
        await asyncio.sleep(0.01)
    pipe.disconnect.set()
    await asyncio.wait_for(task, 5)
    assert listener not in hub.listeners
    assert pipe.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_close_all_ends_streams_for_shutdown() -> None:
    hub = sse.ListenHub()
    listener = hub.subscribe("*", None)
    pipe = Pipe()
    task = asyncio.ensure_future(sse.stream(listener, hub, pipe.receive, pipe.send, 30))
    await asyncio.sleep(0.01)
    hub.close_all()
    await asyncio.wait_for(task, 5)
    assert not hub.listeners


async def test_stuck_listener_does_not_block_publisher() -> None:
    hub = sse.ListenHub()
    listener = hub.subscribe("*", None)
    blocked = asyncio.Event()

    async def stuck_send(message: dict[str, Any]) -> None:
        await blocked.wait()  # the client never reads

    pipe = Pipe()
    task = asyncio.ensure_future(sse.stream(listener, hub, pipe.receive, stuck_send, 30))
    hub.on_change(put("home/first"))
    await asyncio.sleep(0.01)  # the stream is now stuck in send()
    for i in range(5000):  # publishing stays synchronous and bounded
        hub.on_change(put(f"home/{i}"))
    assert len(listener.queue) <= sse.LISTENER_QUEUE_MAX
    assert listener.missed > 0
    pipe.disconnect.set()
    blocked.set()
    await asyncio.wait_for(task, 5)
