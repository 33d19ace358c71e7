"""Idle keep-alive connections are closed after the keep-alive timeout, busy ones never.

The protocol (elastik.server.serve) arms one timer per connection and re-arms it lazily
instead of one timer per request. These tests serve the real app and engine from uvicorn
on a loopback socket with a short timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from elastik.server.serve import CoreServer, bind_socket, uvicorn_config

from tests.core.app_support import make_app

TIMEOUT = 0.4


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[int]:
    app, _engine = make_app()
    config = uvicorn_config(app)
    config.timeout_keep_alive = TIMEOUT  # type: ignore[assignment]
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = CoreServer(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        app.hub.close_all()
        await asyncio.wait_for(task, 15)


async def put(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bytes:
    writer.write(
        b"PUT /tmp/ka/%d HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer w\r\n"
        b"Content-Length: 2\r\n\r\nhi" % n
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server closes the connection within ``within`` seconds (bytes it
    sends meanwhile, such as SSE comments, are read and ignored)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (left := deadline - loop.time()) > 0:
        try:
            if not await asyncio.wait_for(reader.read(4096), left):
                return True
        except TimeoutError:
            return False
    return False


async def test_idle_connection_is_closed_after_the_timeout() -> None:
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await put(reader, writer, 1)).startswith(b"HTTP/1.1 201 ")
        assert await closed_by_server(reader, TIMEOUT * 5)
        writer.close()


async def test_a_connection_in_use_is_never_closed_for_idleness() -> None:
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for n in range(int(TIMEOUT * 3 / 0.05)):  # requests every 50 ms for 3 timeouts
            assert (await put(reader, writer, n)).startswith(b"HTTP/1.1 20")
            await asyncio.sleep(0.05)
        assert await closed_by_server(reader, TIMEOUT * 5)  # and then idle: closed
        writer.close()


async def test_an_open_stream_outlives_the_timeout() -> None:
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await put(reader, writer, 0)).startswith(b"HTTP/1.1 201 ")  # arms the timer
        writer.write(b"GET /listen/* HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        assert not await closed_by_server(reader, TIMEOUT * 4)
        writer.close()
