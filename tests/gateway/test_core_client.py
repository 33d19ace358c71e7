"""The core client against real sockets: our core for the normal path, and a small raw
asyncio server for the misbehaviours a core can show (closing idle connections, hanging,
garbage answers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from gateway.core_client import CoreClient
from gateway.flow import Request, UpstreamUnavailable
from tests.support.servers import free_port


@asynccontextmanager
async def closing(client: CoreClient) -> AsyncIterator[CoreClient]:
    try:
        yield client
    finally:
        await client.close()


async def test_round_trips_and_keep_alive_against_our_core(our_core):
    async with closing(CoreClient(our_core.url, connections=4)) as c:
        auth = {"authorization": "Bearer w"}
        r = await c.send(
            Request("PUT", "/home/cc/a b%", b"x", {**auth, "content-type": "text/plain"})
        )
        assert r.status == 201 and r.headers["etag"].startswith('"hmac-')
        assert r.headers["location"] == "/home/cc/a%20b%25"
        r = await c.send(Request("GET", "/home/cc/a b%"))
        assert (r.status, r.body, r.headers["content-type"]) == (200, b"x", "text/plain")
        r = await c.send(Request("HEAD", "/home/cc/a b%"))
        assert (r.status, r.body) == (200, b"")
        r = await c.send(Request("DELETE", "/home/cc/a b%", headers={"authorization": "Bearer a"}))
        assert r.status == 204
        results = await asyncio.gather(
            *(c.send(Request("GET", f"/home/cc/missing{i}")) for i in range(20))
        )
        assert {r.status for r in results} == {404}
        assert len(c._idle) <= 4
        # Header values that would split the request are never sent.
        r = await c.send(Request("GET", "/home/cc/x", headers={"x-evil": "a\r\nHost: b"}))
        assert r.status == 404


async def test_connection_refused_is_unavailable():
    c = CoreClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UpstreamUnavailable):
        await c.send(Request("GET", "/home/x"))
    await c.close()


class RawServer:
    """Answers according to ``mode``: ok, close-after-answer, hang, garbage."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                self.requests += 1
                served += 1
                if self.mode == "cut-first-pipeline" and self.connections == 1 and served == 2:
                    writer.close()  # the first connection dies with a pipeline queued on it
                    return
                if self.mode == "drop-second" and served == 2:
                    writer.close()  # closed while idle, just as the request arrived
                    return
                if self.mode == "hang":
                    await asyncio.sleep(30)
                if self.mode == "garbage":
                    writer.write(b"HTTP/9 nonsense\r\n\r\n")
                    await writer.drain()
                    writer.close()
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    def drop_idle(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()


@pytest.fixture
async def raw():
    servers = []

    async def start(mode: str) -> tuple[RawServer, str]:
        rs = RawServer(mode)
        srv = await asyncio.start_server(rs.handle, "127.0.0.1", 0)
        servers.append(srv)
        port = srv.sockets[0].getsockname()[1]
        return rs, f"http://127.0.0.1:{port}"

    yield start
    for s in servers:
        s.close()


async def test_stale_pooled_connection_is_retried_when_safe(raw):
    rs, url = await raw("ok")
    async with closing(CoreClient(url)) as c:
        assert (await c.send(Request("GET", "/home/x"))).body == b"ok"
        rs.drop_idle()  # the core closes idle keep-alive connections
        await asyncio.sleep(0.05)
        assert (await c.send(Request("GET", "/home/x"))).body == b"ok"
        rs.drop_idle()
        await asyncio.sleep(0.05)
        keyed = Request("POST", "/home/x", b"+", {"idempotency-key": "k1"})
        assert (await c.send(keyed)).status == 200
        assert rs.connections >= 3


async def test_request_on_a_connection_closed_under_it(raw):
    rs, url = await raw("drop-second")
    async with closing(CoreClient(url)) as c:
        assert (await c.send(Request("GET", "/home/x"))).status == 200
        # Reused connection dies without an answer: a GET is resent on a new one...
        assert (await c.send(Request("GET", "/home/x"))).body == b"ok"
        assert rs.connections == 2
        # ...a write with an Idempotency-Key too; a write without one is not resent.
        assert (
            await c.send(Request("PUT", "/home/x", b"v", {"idempotency-key": "k"}))
        ).status == 200
        assert rs.connections == 3
        with pytest.raises(UpstreamUnavailable, match="closed"):
            await c.send(Request("POST", "/home/x", b"+"))
        assert rs.requests == 6


async def test_timeout_is_unavailable(raw):
    _rs, url = await raw("hang")
    c = CoreClient(url, timeout=0.3)
    with pytest.raises(UpstreamUnavailable, match="did not answer"):
        await c.send(Request("PUT", "/home/x", b"v"))
    await c.close()


async def test_garbage_answer_is_unavailable(raw):
    _rs, url = await raw("garbage")
    c = CoreClient(url)
    with pytest.raises(UpstreamUnavailable):
        await c.send(Request("GET", "/home/x"))
    await c.close()


async def test_safe_requests_share_connections_and_each_gets_its_own_answer(our_core, monkeypatch):
    from gateway import core_client

    opened = []
    real = core_client._Conn.connection_made

    def counting(self, transport):
        opened.append(self)
        real(self, transport)

    monkeypatch.setattr(core_client._Conn, "connection_made", counting)
    c = CoreClient(our_core.url)
    auth = {"authorization": "Bearer w"}
    try:
        await c.send(Request("GET", "/home/pp/warm"))  # one pooled connection to start with
        n = 48
        puts = await asyncio.gather(
            *(
                c.send(
                    Request(
                        "PUT", f"/home/pp/{i}", b"v%d" % i, {**auth, "idempotency-key": f"k{i}"}
                    )
                )
                for i in range(n)
            )
        )
        assert [r.status for r in puts] == [201] * n
        gets = await asyncio.gather(*(c.send(Request("GET", f"/home/pp/{i}")) for i in range(n)))
        assert [r.body for r in gets] == [b"v%d" % i for i in range(n)]
        assert [r.headers["etag"] for r in gets] == [r.headers["etag"] for r in puts]
        # Pipelined: far fewer connections than requests in flight at once.
        assert 1 <= len(opened) <= n // 4
    finally:
        await c.close()


async def test_writes_without_a_key_never_share_a_connection(raw):
    rs, url = await raw("ok")
    async with closing(CoreClient(url)) as c:
        results = await asyncio.gather(
            *(c.send(Request("POST", f"/home/x{i}", b"+")) for i in range(6))
        )
        assert [r.status for r in results] == [200] * 6
        assert rs.connections == 6  # each alone: none may be resent if its connection died


async def test_pipeline_cut_by_the_core_resends_what_was_not_answered(raw):
    rs, url = await raw("cut-first-pipeline")
    async with closing(CoreClient(url)) as c:
        await c.send(Request("GET", "/home/first"))  # connection 1, answered
        reqs = [Request("GET", f"/home/r{i}") for i in range(5)]
        reqs += [
            Request("PUT", f"/home/w{i}", b"v", {"idempotency-key": f"k{i}"}) for i in range(5)
        ]
        results = await asyncio.gather(*(c.send(r) for r in reqs))
        # All ten went out on connection 1, which died after reading one more request:
        # every one of them is resent on a new connection and answered.
        assert [r.body for r in results] == [b"ok"] * 10
        # Connection 1 took all ten in one go (1 + 1 read before it died), and all ten were
        # resent together on connection 2: one by one, they would have opened more.
        assert (rs.connections, rs.requests) == (2, 12)
