"""/listen through the ASGI app: headers, auth, limits, events from writes (§16)."""

from __future__ import annotations

import asyncio
from typing import Any

from .app_support import A, W, make_app
from .asgi_client import call, scope


class Stream:
    def __init__(self, app: Any, path: bytes, headers: list[tuple[str, str]] | None = None):
        self.messages: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.task = asyncio.ensure_future(app(scope("GET", path, headers), self.receive, self.send))

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    async def until(self, needle: bytes) -> None:
        for _ in range(500):
            if needle in self.body():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{needle!r} not in {self.body()!r}")

    async def close(self) -> None:
        self.gone.set()
        await asyncio.wait_for(self.task, 5)


async def test_listen_streams_put_post_delete_in_order() -> None:
    app, _ = make_app()
    s = Stream(app, b"/listen/home/sse%2A")
    await asyncio.sleep(0.01)
    start = s.messages[0]
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/event-stream"
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"x-request-id"] == b"1" and b"content-length" not in headers
    assert s.body() == b""  # nothing on connect
    etag = (await call(app, "PUT", "/home/sse/a", W, b"x")).header("etag").strip('"')
    await call(app, "PUT", "/home/other", W, b"x")
    await call(app, "POST", "/home/sse/a", W, b"y")
    await call(app, "PUT", "/home/sse/a", [*W, ("If-Match", '"stale"')], b"z")  # 412: no event
    await call(app, "DELETE", "/home/sse/a", A)
    await s.until(b"event: delete")
    body = s.body().decode()
    assert body.startswith(
        f"event: put\nid: 1\ndata: path: /home/sse/a\ndata: method: PUT\ndata: etag: {etag}\n\n"
    )
    assert "event: post\nid: 3\n" in body
    assert body.endswith("event: delete\nid: 4\ndata: path: /home/sse/a\ndata: method: DELETE\n\n")
    await s.close()
    assert not app.hub.listeners


async def test_listen_last_event_id_replay() -> None:
    app, _ = make_app()
    for i in range(3):
        await call(app, "PUT", f"/home/r{i}", W, b"x")
    s = Stream(app, b"/listen/*", [("Last-Event-ID", "1")])
    await s.until(b"id: 3")
    assert s.body().count(b"event: put") == 2
    await s.close()


async def test_listen_requires_read_token_with_listen_body() -> None:
    app, _ = make_app(read_token="r")
    res = await call(app, "GET", "/listen/*")
    assert res.status == 401
    assert res.body == b"auth required: listen requires read token\n"


async def test_listen_connection_limit() -> None:
    app, _ = make_app(max_listen_connections=1)
    s = Stream(app, b"/listen/*")
    await asyncio.sleep(0.01)
    res = await call(app, "GET", "/listen/*")
    assert res.status == 503
    assert res.body == b"too many listen connections\n"
    assert res.header("retry-after") == "1"
    await s.close()
    again = Stream(app, b"/listen/*")
    await asyncio.sleep(0.01)
    assert again.messages[0]["status"] == 200
    await again.close()


async def test_listen_bad_pattern_utf8() -> None:
    app, _ = make_app()
    res = await call(app, "GET", "/listen/%FF")
    assert (res.status, res.body) == (400, b"Invalid URL: Invalid UTF-8 in `pattern`")
