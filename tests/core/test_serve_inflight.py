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


def post(path: str, body: bytes, token: str = "w") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def answers(transport: Recorder) -> list[bytes]:
    """Every answer written so far, split (several may leave in one write)."""
    out: list[bytes] = []
    for chunk in transport.written:
        for part in chunk.split(b"HTTP/1.1 ")[1:]:
            out.append(b"HTTP/1.1 " + part)
    return out


async def wait_answers(transport: Recorder, n: int) -> list[bytes]:
    for _ in range(300):
        if len(answers(transport)) >= n:
            break
        await asyncio.sleep(0.01)
    return answers(transport)


async def test_pipelined_durable_writes_run_together_and_answer_in_order() -> None:
    proto, transport, engine, state = connect()
    proto.data_received(
        put("/home/pipe/a", b"1")
        + post("/home/pipe/a", b"2")
        + post("/home/pipe/a", b"3", token="wrong")  # refused in its place in the queue
        + post("/home/pipe/a", b"4")
        + put("/home/pipe/b", b"x")
    )
    # All five were taken at once: the four writes wait on the writer side by side (one
    # Task each), instead of one by one behind the first.
    assert len(state.tasks) == 4 and transport.written == []
    got = await wait_answers(transport, 5)
    assert [a.split(b" ", 2)[1] for a in got] == [b"201", b"200", b"401", b"200", b"201"]
    ids = [int(a.split(b"x-request-id: ")[1].split(b"\r\n")[0]) for a in got]
    assert ids == sorted(ids)  # numbered in arrival order
    assert len(transport.written) < 5  # answers finished together leave in one write
    assert engine.read("home/pipe/a").body == b"124"  # applied in arrival order
    await settle(state)
    assert not transport.closed


async def test_a_read_behind_pipelined_writes_sees_all_of_them() -> None:
    proto, transport, _engine, state = connect()
    proto.data_received(
        put("/home/pipe/r", b"a")
        + post("/home/pipe/r", b"b")
        + post("/home/pipe/r", b"c")
        + b"GET /home/pipe/r HTTP/1.1\r\nHost: x\r\n\r\n"
        + post("/home/pipe/r", b"d")  # after the read: not visible to it
    )
    got = await wait_answers(transport, 5)
    assert [a.split(b" ", 2)[1] for a in got] == [b"201", b"200", b"200", b"200", b"200"]
    assert got[3].endswith(b"\r\n\r\nabc")
    await settle(state)


async def test_shutdown_with_pipelined_writes_answers_all_then_closes() -> None:
    proto, transport, engine, state = connect()
    proto.data_received(b"".join(put(f"/home/pipe/s{i}", b"v") for i in range(4)))
    proto.shutdown()
    assert not transport.closed
    await settle(state)
    got = await wait_answers(transport, 4)
    assert [a.split(b" ", 2)[1] for a in got] == [b"201"] * 4
    assert [b"connection: close" in a for a in got] == [False, False, False, True]
    assert transport.closed
    assert all(engine.read(f"home/pipe/s{i}") is not None for i in range(4))


async def test_lost_connection_with_pipelined_writes_keeps_every_write() -> None:
    proto, transport, engine, state = connect()
    proto.data_received(b"".join(put(f"/home/pipe/l{i}", b"v") for i in range(4)))
    transport.closed = True
    proto.connection_lost(None)
    await settle(state)
    assert transport.written == []
    assert all(engine.read(f"home/pipe/l{i}") is not None for i in range(4))


async def test_pipelined_writes_beyond_the_bound_wait_their_turn(monkeypatch) -> None:
    from elastik.server import serve

    monkeypatch.setattr(serve, "MAX_PIPELINED_WRITES", 2)
    proto, transport, engine, state = connect()
    proto.data_received(b"".join(post_or_put(i) for i in range(5)))
    assert len(state.tasks) == 2  # the rest wait behind, as any pipelined request
    got = await wait_answers(transport, 5)
    assert [a.split(b" ", 2)[1] for a in got] == [b"201", b"200", b"200", b"200", b"200"]
    assert engine.read("home/pipe/m").body == b"01234"
    await settle(state)


def post_or_put(i: int) -> bytes:
    return put("/home/pipe/m", b"0") if i == 0 else post("/home/pipe/m", str(i).encode())


async def test_durable_writes_in_every_durable_namespace_join_the_queue() -> None:
    proto, transport, engine, state = connect()
    approve = (
        b"PUT /etc/pipe/conf HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\n"
        b"Content-Length: 1\r\n\r\nc"
    )
    proto.data_received(
        put("/home/pipe/n", b"1")
        + approve
        + put("/var/log/deletes", b"x")  # the ledger: refused in its place
        + put("/usr/pipe/u", b"no approve token")  # 401 as well
        + post("/home/pipe/n", b"2")
    )
    assert len(state.tasks) == 3  # the three writes wait side by side
    got = await wait_answers(transport, 5)
    assert [a.split(b" ", 2)[1] for a in got] == [b"201", b"201", b"401", b"401", b"200"]
    assert engine.read("etc/pipe/conf").body == b"c"
    assert engine.read("home/pipe/n").body == b"12"
    await settle(state)


async def test_answers_that_leave_before_a_later_write_commits_are_counted_once() -> None:
    """The first write's commit is delivered only after a second write has joined it, and
    the second commits in a later batch: the first answer leaves alone while the second
    still waits (a partial flush), then the second leaves. Each is counted once."""
    import threading

    proto, transport, engine, state = connect()
    writer = engine._writer
    deliver = writer._deliver
    gate = threading.Event()

    def held(ops):  # writer thread: the first batch waits for the gate
        gate.wait(10)
        deliver(ops)

    writer._deliver = held
    proto.data_received(put("/home/pipe/p1", b"1"))
    for _ in range(500):  # the first write is committed, its delivery held
        if engine.read("home/pipe/p1") is not None:
            break
        await asyncio.sleep(0.005)
    writer._deliver = deliver  # later batches are delivered at once
    proto.data_received(put("/home/pipe/p2", b"2"))  # joins the first, in flight
    assert len(state.tasks) == 2
    gate.set()
    got = await wait_answers(transport, 2)
    await settle(state)
    assert [a.split(b" ", 2)[1] for a in got] == [b"201", b"201"]
    assert len(transport.written) == 2  # the first left before the second had committed
    assert state.total_requests == 2
