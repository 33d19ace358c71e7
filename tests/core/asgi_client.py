"""Drive the ASGI app in-process: build the scope uvicorn would, collect the response."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n == name.encode():
                return v.decode("latin-1")
        return None

    def all(self, name: str) -> list[str]:
        return [v.decode("latin-1") for n, v in self.headers if n == name.encode()]

    @property
    def names(self) -> list[str]:
        return [n.decode() for n, _ in self.headers]


def scope(
    method: str, raw_path: bytes, headers: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    raw_path, _, query = raw_path.partition(b"?")  # uvicorn keeps the query out of raw_path
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "raw_path": raw_path,
        "path": raw_path.decode("latin-1"),
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or [])],
    }


async def call(
    app: Any,
    method: str,
    path: str | bytes,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | list[bytes] = b"",
) -> Result:
    raw = path.encode() if isinstance(path, str) else path
    chunks = body if isinstance(body, list) else [body]
    received: list[dict[str, Any]] = []
    consumed = 0

    async def receive() -> dict[str, Any]:
        nonlocal consumed
        if consumed < len(chunks):
            consumed += 1
            return {
                "type": "http.request",
                "body": chunks[consumed - 1],
                "more_body": consumed < len(chunks),
            }
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        received.append(message)

    await app(scope(method, raw, headers), receive, send)
    start = received[0]
    assert start["type"] == "http.response.start"
    body_out = b"".join(m.get("body", b"") for m in received[1:])
    res = Result(start["status"], list(start["headers"]), body_out)
    res.chunks = [m.get("body", b"") for m in received[1:]]
    res.extra = {"consumed": consumed}  # type: ignore[attr-defined]
    return res
