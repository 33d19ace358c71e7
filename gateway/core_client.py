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
    """One keep-alive HTTP/1.1 connection to the core; httptools (llhttp) parses answers.

    Requests may be pipelined: ``waiters`` holds one future per request sent, in order,
    and each answer completes the oldest. Requests queued in one turn of the event loop
    leave in one write (``_flush``).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.parser = httptools.HttpResponseParser(self)
        self.waiters: deque[asyncio.Future[Response]] = deque()
        self.got_bytes = False  # the oldest waiter's answer has begun
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.last_used = 0.0
        self.exclusive = False  # a request that must not share the connection is on it
        self._out: list[bytes] = []

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._out:  # requests queued while connecting
            self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamUnavailable(f"bad answer from the core: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(None)

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self.got_bytes = True
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
        self.got_bytes = False
        if self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                status = self.parser.get_status_code()
                w.set_result(Response(status, b"".join(self.body), self.headers))
        if self.closed:
            self.close()

    # -- use
    def request(self, data: bytes) -> asyncio.Future[Response]:
        """Queue one request; it is written with the others of this turn of the loop."""
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_exception(_Stale())
            return fut
        self.waiters.append(fut)
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)
        if len(self._out) >= WRITE_GROUP:
            self._flush()
        return fut

    def _flush(self) -> None:
        if self.transport is None:  # still connecting: connection_made writes them
            return
        out, self._out = self._out, []
        if not self.closed and out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def fail_all(self, message: str) -> None:
        """The connection could not be made: every request queued on it fails with this."""
        self.closed = True
        waiters, self.waiters = self.waiters, deque()
        self._out = []
        for w in waiters:
            if not w.done():
                w.set_exception(UpstreamUnavailable(message))

    def expire(self, fut: asyncio.Future[Response]) -> None:
        """A request's deadline passed: fail it and drop the connection (and with it the
        requests pipelined behind it, which are retried where that is safe)."""
        if not fut.done():
            fut.set_exception(TimeoutError())
        self.close()

    def _fail(self, exc: Exception | None) -> None:
        """Fail every waiter: the oldest with ``exc`` (or as cut mid-answer when its answer
        had begun), the others as never answered (``_Stale``)."""
        waiters, self.waiters = self.waiters, deque()
        self._out = []
        first = True
        for w in waiters:
            if not w.done():
                if first and exc is not None:
                    w.set_exception(exc)
                elif first and self.got_bytes:
                    w.set_exception(UpstreamUnavailable("core closed the connection mid-answer"))
                else:
                    w.set_exception(_Stale())
            first = False

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        else:  # still connecting: no connection_lost will tell the waiters
            self._fail(None)


# Header values that would split the request line or headers are never sent.
_UNSAFE = re.compile(r"[\r\n\x00]")
# An idle pooled connection older than this is closed instead of reused: servers drop idle
# keep-alive connections after a while (uvicorn after 5 s by default), and a request sent
# on one that is being closed has to be retried.
IDLE_SECONDS = 4.0
# Requests that may share a connection (reads, and writes with an Idempotency-Key: both
# safe to resend if the connection fails under them) are pipelined, up to this many per
# connection: the core runs pipelined durable writes side by side and answers those that
# commit together in one write, so a burst of datagrams costs a few TCP segments each way
# instead of one per request.
PIPELINE_DEPTH = 32
# Shared requests are written in groups of up to this many, not all of a turn in one write:
# the core starts on the first group while the gateway still decodes the rest of a burst.
# Measured with bench/gateway_coap.py at 16 outstanding: one write per turn ~2,700 PUT/s,
# groups of 8 ~3,100, 4 ~3,400, 2 ~3,450 (the core's CPU per request grows as groups
# shrink: fewer answers leave together).
WRITE_GROUP = 4


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
        self._open: _Conn | None = None  # the connection taking this turn's shared requests
        self._dials: set[asyncio.Task[None]] = set()
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
                        resp = await self._exchange(data, deadline, safe)
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

    async def _exchange(self, data: bytes, deadline: float, shared: bool) -> Response:
        """Send one request and wait for its answer.

        ``shared``: the request may be pipelined with others (it is safe to resend); such
        requests of one turn of the event loop go on one connection in one write. Any other
        request gets a connection of its own with nothing ahead of or behind it.
        """
        loop = asyncio.get_running_loop()
        conn = self._open if shared else None
        if conn is None or conn.closed or conn.exclusive or len(conn.waiters) >= PIPELINE_DEPTH:
            conn = self._connection(deadline)
            if shared:
                self._open = conn  # the next shared requests of this turn join it
                loop.call_soon(self._close_turn, conn)
            else:
                conn.exclusive = True
        fut = conn.request(data)
        timer = loop.call_at(deadline, conn.expire, fut)
        try:
            resp = await fut
        except asyncio.CancelledError:
            # The answer will still come and is skipped in its turn; without anyone else
            # waiting on the connection, it is not worth keeping.
            if not any(not w.done() for w in conn.waiters):
                conn.close()
            raise
        finally:
            timer.cancel()
        conn.exclusive = False
        if not conn.closed and not conn.waiters and len(self._idle) < self.connections:
            conn.last_used = loop.time()
            self._idle.append(conn)
        return resp

    def _connection(self, deadline: float) -> _Conn:
        """An idle pooled connection with nothing in flight, or a new one.

        A new connection is returned at once, still connecting: requests queue on it and
        leave when it is up, so a burst that finds no idle connection opens one, not one
        per request.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._idle:
            c = self._idle.pop()
            if c.waiters:  # taken again since it went idle (joined as this turn's shared)
                continue
            if not c.closed and now - c.last_used < IDLE_SECONDS:
                return c
            c.close()
        conn = _Conn()
        task = loop.create_task(self._dial(conn, deadline))
        self._dials.add(task)
        task.add_done_callback(self._dials.discard)
        return conn

    async def _dial(self, conn: _Conn, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                await loop.create_connection(
                    lambda: conn, self._host, self._port, ssl=self._ssl or None
                )
        except TimeoutError:
            conn.fail_all(f"core did not answer within {self.timeout}s")
        except OSError as exc:
            conn.fail_all(f"core unreachable: {type(exc).__name__}")
        except BaseException:
            conn.fail_all("gateway shutting down")
            raise
        else:
            if conn.closed:  # given up (timed out) while connecting
                conn.close()
            elif not conn.waiters:  # everyone gave up meanwhile
                conn.last_used = loop.time()
                self._idle.append(conn)

    def _close_turn(self, conn: _Conn) -> None:
        if self._open is conn:
            self._open = None

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
        for task in list(self._dials):
            task.cancel()
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
