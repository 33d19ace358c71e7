"""The one HTTP client to the core: a keep-alive aiohttp pool that implements Upstream.

Every request the gateway makes to the core goes through ``CoreClient``: ``send()`` for
the request flow and ``listen()`` for the ``/listen`` SSE streams that feed Observe.
Connection failures and timeouts become ``UpstreamUnavailable``; every HTTP answer,
including 4xx/5xx, comes back as a ``Response`` for the front door to map.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import socket
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import aiohttp
import httptools
from yarl import URL

from .flow import Request, Response, UpstreamUnavailable
from .sse import SSEEvent, SSEParser

log = logging.getLogger("gateway.core")

# RFC 3986 pchar minus '%' plus '/': kept as-is in the request target; everything else is
# percent-encoded, so a literal '%' in a CoAP Uri-Path reaches the core as '%25'.
_SAFE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
)

# Largest core answer the gateway reads into memory. The core's own default world limit
# is 64 MiB; a CoAP device can never usefully fetch more than that block-wise anyway.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


@functools.lru_cache(maxsize=4096)  # sensors write the same worlds over and over
def encode_path(path: str) -> str:
    """Percent-encode a world path for the request target (uppercase hex, like the core)."""
    out = []
    for b in path.encode("utf-8"):
        out.append(chr(b) if b in _SAFE else f"%{b:02X}")
    return "".join(out)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class _Stale(Exception):
    """A pooled connection was closed by the core before it answered anything."""


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to the core; httptools (llhttp) parses answers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.got_bytes = False
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.last_used = 0.0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamUnavailable(f"bad answer from the core: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.got_bytes:
            self._fail(UpstreamUnavailable("core closed the connection mid-answer"))
        else:
            self._fail(_Stale())

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self.headers = {}
        self.body = []
        self.size = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {val}" if key in self.headers else val

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_RESPONSE_BYTES:
            self._fail(UpstreamUnavailable("answer from the core too large"))
            self.close()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.closed = True  # answer first, then close
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            status = self.parser.get_status_code()
            w.set_result(Response(status, b"".join(self.body), self.headers))
        if self.closed:
            self.close()

    # -- use
    def request(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.got_bytes = False
        self.transport.write(data)
        return self.waiter

    def expire(self) -> None:
        """The request's deadline passed: fail it and drop the connection."""
        self._fail(TimeoutError())
        self.close()

    def _fail(self, exc: Exception) -> None:
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


# Header values that would split the request line or headers are never sent.
_UNSAFE = re.compile(r"[\r\n\x00]")
# An idle pooled connection older than this is closed instead of reused: servers drop idle
# keep-alive connections after a while (uvicorn after 5 s by default), and a request sent
# on one that is being closed has to be retried.
IDLE_SECONDS = 4.0


class CoreClient:
    """Upstream that speaks HTTP/1.1 to the core over a pool of keep-alive connections.

    Requests use a lean pool of asyncio protocols with httptools' parser (the hot path of
    every CoAP request, so it is kept to one write and one parse); the long-lived
    ``/listen`` streams use aiohttp.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0, connections: int = 64):
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = parts.scheme == "https"
        self._hostport = parts.netloc.encode("latin-1")
        self._prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.connections = connections
        self._idle: list[_Conn] = []
        self._free = connections  # request slots not in use
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    def _encode(self, request: Request) -> bytes:
        method = "GET" if request.method == "HEAD" else request.method
        target = self._prefix + encode_path(request.path)
        lines = [f"{method} {target} HTTP/1.1".encode("latin-1"), b"Host: " + self._hostport]
        for name, value in request.headers.items():
            if _UNSAFE.search(name) or _UNSAFE.search(value):
                continue
            lines.append(f"{name}: {value}".encode("latin-1", "replace"))
        if method in ("PUT", "POST"):
            lines.append(b"Content-Length: %d" % len(request.body))
            return b"\r\n".join(lines) + b"\r\n\r\n" + request.body
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def send(self, request: Request) -> Response:
        # One retry when a pooled connection turns out to have been closed by the core
        # before it answered anything. Only for requests safe to resend: reads, and writes
        # with an Idempotency-Key (a core that did apply the first attempt answers the
        # retry from its key table).
        safe = not request.is_write or "idempotency-key" in request.headers
        data = self._encode(request)
        # One deadline for the whole request (slot wait, connect, answer), enforced with
        # timers on the futures awaited rather than asyncio.timeout() and a Semaphore: this
        # is the hot path of every CoAP request and those two were ~9% of the gateway's CPU.
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            await self._acquire(deadline)
            try:
                for attempt in range(2):
                    try:
                        resp = await self._exchange(data, deadline)
                    except _Stale:
                        if attempt == 0 and safe:
                            continue
                        raise UpstreamUnavailable("core closed the connection") from None
                    break
            finally:
                self._release()
        except TimeoutError:
            raise UpstreamUnavailable(f"core did not answer within {self.timeout}s") from None
        except OSError as exc:
            raise UpstreamUnavailable(f"core unreachable: {type(exc).__name__}") from None
        if request.method == "HEAD":
            return Response(resp.status, b"", resp.headers)
        return resp

    # -- request slots: a FIFO counting semaphore with a deadline and no await when free
    async def _acquire(self, deadline: float) -> None:
        if self._free > 0 and not self._slot_waiters:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._slot_waiters.append(fut)
        timer = loop.call_at(deadline, _expire, fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release()  # granted just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._slot_waiters.remove(fut)
            raise
        finally:
            timer.cancel()

    def _release(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot goes straight to the next waiter
                return
        self._free += 1

    async def _exchange(self, data: bytes, deadline: float) -> Response:
        loop = asyncio.get_running_loop()
        conn = None
        now = loop.time()
        while self._idle:
            c = self._idle.pop()
            if not c.closed and now - c.last_used < IDLE_SECONDS:
                conn = c
                break
            c.close()
        if conn is None:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    _Conn, self._host, self._port, ssl=self._ssl or None
                )
        timer = loop.call_at(deadline, conn.expire)
        try:
            resp = await conn.request(data)
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
        if not conn.closed and len(self._idle) < self.connections:
            conn.last_used = loop.time()
            self._idle.append(conn)
        else:
            conn.close()
        return resp

    async def listen(
        self, pattern: str, headers: Mapping[str, str], last_event_id: str | None = None
    ) -> AsyncIterator[SSEEvent]:
        """Yield the events of ``/listen/<pattern>`` until the stream ends.

        Raises ``UpstreamUnavailable`` when the core cannot be reached and
        ``ListenRefused`` when it answers with a non-200 status.
        """
        session = self._get_session()
        hdrs = dict(headers)
        if last_event_id is not None:
            hdrs["last-event-id"] = last_event_id
        try:
            async with session.get(
                URL(self.base_url + "/listen/" + encode_path(pattern.lstrip("/")), encoded=True),
                headers=hdrs,
                # No total timeout: the stream lives as long as the observation. The core
                # sends a keepalive comment every 15 s, so 45 s of silence means it is gone.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=45),
            ) as resp:
                if resp.status != 200:
                    raise ListenRefused(resp.status)
                yield SSEEvent(event="_open")  # the stream is live from here on
                parser = SSEParser()
                async for chunk in resp.content.iter_any():
                    for event in parser.feed(chunk):
                        yield event
        except TimeoutError:
            raise UpstreamUnavailable("listen stream went silent") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable(f"listen stream failed: {type(exc).__name__}") from None

    async def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class ListenRefused(Exception):
    def __init__(self, status: int):
        super().__init__(f"core refused /listen with HTTP {status}")
        self.status = status
