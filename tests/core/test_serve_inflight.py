"""A fast-path request that waits (a durable write) while the connection changes under it.

These drive ``ElastikHttpProtocol`` directly, on the real app and storage engine, with a
recording transport: the states below (shutdown or a lost connection in the instant between
a durable write's arrival and its commit) cannot be hit deterministically over a socket.
The socket-level behaviour is covered by tests/core/blackbox/test_request_framing.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from elastik.server.serve import ElastikHttpProtocol, uvicorn_config
from uvicorn.server import ServerState

from tests.core.app_support import make_app


class Recorder:
    """The transport surface the protocol uses; keeps what was written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 1), "peername": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def connect() -> tuple[ElastikHttpProtocol, Recorder, Any, ServerState]:
    app, engine = make_app()
    config = uvicorn_config(app)
    config.load()
    state = ServerState()
    proto = ElastikHttpProtocol(config=config, server_state=state, app_state={})
    transport = Recorder()
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto, transport, engine, state


def put(path: str, body: bytes) -> bytes:
    return (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer w\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def settle(state: ServerState) -> None:
    for _ in range(500):
        if not state.tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("requests still in flight")


async def test_shutdown_while_a_durable_write_waits_closes_after_its_answer() -> None:
    proto, transport, engine, state = connect()
    proto.data_received(put("/home/inflight/a", b"durable"))
    assert state.tasks and not transport.written  # waiting for the writer
    proto.shutdown()
    assert not transport.closed  # the drain waits for the answer
    await settle(state)
    assert len(transport.written) == 1
    answer = transport.written[0]
    assert answer.startswith(b"HTTP/1.1 201 ") and b"\r\nconnection: close\r\n" in answer
    assert transport.closed
    assert engine.read("home/inflight/a").body == b"durable"


async def test_lost_connection_while_a_durable_write_waits_keeps_the_write() -> None:
    proto, transport, engine, state = connect()
    proto.data_received(put("/home/inflight/b", b"kept"))
    transport.closed = True
    proto.connection_lost(None)
    await settle(state)
    assert transport.written == []  # nothing written to the lost connection
    assert engine.read("home/inflight/b").body == b"kept"  # acknowledged or not, applied


async def test_pipelined_requests_wait_for_the_durable_write_ahead_of_them() -> None:
    proto, transport, _engine, state = connect()
    proto.data_received(
        put("/home/inflight/c", b"first")
        + put("/tmp/inflight/d", b"second")
        + b"GET /home/inflight/c HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert transport.written == []  # nothing may overtake the durable write
    await settle(state)
    for _ in range(100):
        if len(transport.written) == 3:
            break
        await asyncio.sleep(0.01)
    statuses = [w.split(b" ", 2)[1] for w in transport.written]
    assert statuses == [b"201", b"201", b"200"]
    assert transport.written[2].endswith(b"\r\n\r\nfirst")
    assert not transport.closed
