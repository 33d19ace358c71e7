"""The I/O shell around ``App``: socket binding, uvicorn (httptools + uvloop), signals.

``ElastikHttpProtocol`` adjusts uvicorn's httptools protocol to the reference's wire
behaviour at the edges that an ASGI app cannot see: raw UTF-8 in the request-target is
accepted (percent-encoded before parsing), request-targets over hyper's limit get a bare
414, more than 100 headers a bare 431, and unparsable requests a bare 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from email.utils import formatdate
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from ..aio import start_eager
from .app import Response
from .errors import FatalError

logger = logging.getLogger("elastik.server")

# hyper rejects request-targets of 65535 bytes or more with 414 (its MAX_URI_LEN).
MAX_REQUEST_TARGET = 65534
# hyper answers 431 beyond 100 request headers (its default header array size) ...
MAX_HEADERS = 100
# ... or when the head of a request outgrows its read buffer (8 KiB + 100 * 4 KiB).
MAX_HEAD_BYTES = 8192 + 4096 * 100
# Idle keep-alive connections are closed after this long. The reference never closes idle
# connections, and clients (the SDK's pool, the gateway's core client) reuse them after long
# quiet spells, where a server-side close turns the next POST into an error; an hour keeps
# that practically impossible while still reclaiming sockets of vanished peers.
KEEPALIVE_TIMEOUT_S = 3600
# Listen backlog: bursts of 64+ concurrent clients connecting at once must not be refused.
BACKLOG = 2048


# Methods llhttp parses itself. Any other token (FOO, get, M-SEARCH...) is an extension
# method to hyper and gets 405 from the router; llhttp would refuse it with 400, so such a
# request line is parsed as PATCH and the real method restored in the scope.
_NATIVE_METHODS = frozenset({b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS", b"PATCH"})
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _encode_non_ascii(url: bytes) -> bytes:
    return b"".join(b"%%%02X" % c if c >= 0x80 else bytes((c,)) for c in url)


# A request head still incomplete after this many bytes is cut off with a bare 431 and the
# connection closed, so a client cannot make us buffer an endless request line or header
# block: everything a legal head may hold (above) plus slack for pipelined leftovers.
MAX_UNFINISHED_HEAD = MAX_REQUEST_TARGET + MAX_HEAD_BYTES + 64 * 1024

# Pipelined durable writes (PUT/POST/DELETE outside the memory namespaces) on one
# connection run together:
# each goes to the writer queue as it arrives (so they are applied in arrival order, as if
# one by one) and the answers leave in order, joined into one write where they finish
# together. Up to this many per connection; beyond, reading pauses as for any pipeline.
MAX_PIPELINED_WRITES = 64
_QUEUED_METHODS = frozenset((b"PUT", b"POST", b"DELETE"))
# The durable namespaces (paths.NAMESPACES minus memory ones and /proc), as raw targets: a
# target spelled otherwise (percent-encoded) is simply not joined.
_DURABLE_PREFIXES = (b"/home/", b"/etc/", b"/lib/", b"/boot/", b"/usr/", b"/var/")

# Bodies up to this size are joined with the head into one write (one syscall, one TCP
# segment for small answers); larger ones are written separately to avoid copying them.
JOIN_BODY_MAX = 64 * 1024


class ElastikCycle(RequestResponseCycle):
    """uvicorn's request/response cycle with a faster, equivalent response path.

    The head is held back until the first body message, so a whole small response leaves
    in one write; header names and values come only from ``App`` (which builds them from
    constants and validated values), so uvicorn's per-header regex checks are skipped.
    A start message carrying ``"elastik.stream": True`` (SSE) is written at once.
    """

    _head: bytes | None = None

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started:
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()
            if self.disconnected:
                return
            self.response_started = True
            if self.waiting_for_100_continue and self.more_body:
                # Answered without asking for the body: the client will not send it, so the
                # connection cannot be reused (its next bytes would be taken as this body).
                self.keep_alive = False
            self.waiting_for_100_continue = False
            status = message["status"]
            line = STATUS_LINE[status]
            if self.scope["http_version"] == "1.0":  # answer in the request's version, as hyper
                line = b"HTTP/1.0" + line[8:]
            parts = [line]
            close = False
            for name, value in message["headers"]:
                if name == b"content-length":
                    self.expected_content_length = int(value)
                    self.chunked_encoding = False
                elif name == b"connection" and b"close" in value.lower():
                    self.keep_alive = False
                    close = True
                parts += (name, b": ", value, b"\r\n")
            if not self.keep_alive and not close:
                parts.append(b"connection: close\r\n")
            if (
                self.chunked_encoding is None
                and self.scope["method"] != "HEAD"
                and status not in (204, 304)
            ):
                self.chunked_encoding = True
                parts.append(b"transfer-encoding: chunked\r\n")
            parts.append(b"\r\n")
            head = b"".join(parts)
            if message.get("elastik.stream"):
                self.transport.write(head)
            else:
                self._head = head
            return
        if kind == "http.response.body" and self._head is not None and not self.disconnected:
            head, self._head = self._head, None
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if self.scope["method"] == "HEAD":
                self.expected_content_length = 0
                self.transport.write(head)
            elif self.chunked_encoding:
                chunk = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
                self.transport.write(head + chunk + (b"" if more else b"0\r\n\r\n"))
            else:
                if len(body) > self.expected_content_length:
                    raise RuntimeError("Response content longer than Content-Length")
                self.expected_content_length -= len(body)
                if len(body) <= JOIN_BODY_MAX:
                    self.transport.write(head + body)
                else:
                    self.transport.write(head)
                    self.transport.write(body)
            if not more:
                if self.expected_content_length != 0:
                    raise RuntimeError("Response content shorter than Content-Length")
                self.response_complete = True
                self.message_event.set()
                if not self.keep_alive:
                    self.transport.close()
                self.on_response()
            return
        if self._head is not None:  # disconnected before the body: nothing to send
            self._head = None
            return
        await super().send(message)


class _Flag:
    """``message_event`` of ``_InFlight``: uvicorn sets it when the connection is lost."""

    __slots__ = ()

    def set(self) -> None:
        pass


class _InFlight:
    """What uvicorn's protocol code reads of a cycle, for a fast-path request that waits,
    plus its place in the connection's queue of answers (``out``: the finished answer)."""

    __slots__ = ("close", "disconnected", "keep_alive", "out", "queued", "response_complete")
    message_event = _Flag()

    def __init__(self, queued: bool) -> None:
        self.response_complete = False
        self.disconnected = False
        self.keep_alive = True
        self.queued = queued  # a durable write: later durable writes may run beside it
        self.out: bytes | None = None
        self.close = False


class ElastikHttpProtocol(HttpToolsProtocol):
    _at_request_line = True
    _real_method: bytes | None = None
    _in_head = False
    _head_seen = 0
    # Set while the parser is fed: a request whose head arrives then is started after the
    # chunk is parsed (so a body in the same chunk is already there) and eagerly.
    _feeding = False
    _pending: tuple[RequestResponseCycle, Any] | None = None
    # Keep-alive: one timer per connection re-armed lazily, not one per request.
    _idle_timer: asyncio.TimerHandle | None = None
    _last_active = 0.0
    # Fast path (see on_headers_complete): the current request has no cycle (yet).
    _fast = False
    _fast_body: list[bytes]
    _respond_now: Callable[..., Any] | None = None
    _chunk_len = 0
    # Fast-path requests not yet answered, in arrival order (see MAX_PIPELINED_WRITES).
    _flights: deque[_InFlight] | None = None
    _queued_req = False  # the current request is a durable write (may join the flights)
    _flush_scheduled = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._respond_now = getattr(self.app, "respond_now", None)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if self._feeding and self._pending is None:
            self._pending = (cycle, app)
        else:  # a pipelined request started by the previous response: a plain Task
            super()._start_asgi_task(cycle, app)

    def _start_eager(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._run_request(cycle.run_asgi(app))

    def _run_request(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a request's coroutine now; make a Task only if it has to wait.

        Most requests (memory writes, reads, every error) complete without suspending, so
        they cost no Task, no scheduling round and no done-callback. A durable write
        suspends on the writer and continues in a Task the drain waits for.
        """
        try:
            done, task = start_eager(coro, self.loop)
        except BaseException:  # the coroutines handle the app's errors; a last resort
            logger.exception("request failed outside the application")
            self.transport.close()
            return
        if not done:
            assert isinstance(task, asyncio.Task)
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)

    def _unset_keepalive_if_required(self) -> None:
        self._last_active = self.loop.time()

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._last_active = self.loop.time()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._idle_timer is None:
            self._idle_timer = self.loop.call_later(self.timeout_keep_alive, self._idle_check)

    def _idle_check(self) -> None:
        """Close a connection idle for ``timeout_keep_alive`` (no request in progress)."""
        self._idle_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            wait = float(self.timeout_keep_alive)
        else:
            wait = self._last_active + self.timeout_keep_alive - self.loop.time()
            if wait <= 0:
                self.transport.close()
                return
        self._idle_timer = self.loop.call_later(wait, self._idle_check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._flights:
            for flight in self._flights:
                flight.disconnected = True
        super().connection_lost(exc)

    def shutdown(self) -> None:
        flights = self._flights
        if flights and self.cycle is flights[-1]:
            flights[-1].keep_alive = False  # the last answer closes the connection
            return
        super().shutdown()

    def data_received(self, data: bytes) -> None:
        # Fix-ups for a request line that starts this chunk (the common, unpipelined case):
        # llhttp refuses raw bytes >= 0x80 in the request-target and extension methods,
        # both of which hyper accepts.
        if self._at_request_line:
            if data.startswith(b"PRI * HTTP/2.0"):  # h2c prior knowledge: close, no answer
                self.transport.close()
                return
            sp = data.find(b" ", 0, 64)
            if sp > 0 and data[:sp] not in _NATIVE_METHODS and all(c in _TCHAR for c in data[:sp]):
                self._real_method = data[:sp]
                data = b"PATCH" + data[sp:]
            if not data.isascii():
                end = data.find(b"\n")
                line = data if end < 0 else data[:end]
                if not line.isascii():
                    data = _encode_non_ascii(line) + (b"" if end < 0 else data[end:])
        self._feeding = True
        self._chunk_len = len(data)
        try:
            super().data_received(data)
        finally:
            self._feeding = False
        if self._fast:  # the body goes on in later chunks: continue as an ASGI request
            if self.transport.is_closing():  # refused (400) mid-body: nothing to continue
                self._fast = False
                self._fast_body = []
            else:
                self._to_cycle(complete=False)
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._start_eager(*pending)
        if self._in_head:
            self._head_seen += len(data)
            if self._head_seen > MAX_UNFINISHED_HEAD and not self.transport.is_closing():
                self._in_head = False
                self._bare_close(b"431 Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._at_request_line = False  # until this message completes at a chunk boundary
        self._in_head = True
        self._head_seen = 0

    def on_message_complete(self) -> None:
        if self._fast:
            self._fast = False
            self._at_request_line = True
            self._answer_fast()
            return
        super().on_message_complete()
        self._at_request_line = True

    def on_body(self, body: bytes) -> None:
        if self._fast:
            self._fast_body.append(body)
        else:
            super().on_body(body)

    def on_headers_complete(self) -> None:
        self._in_head = False
        bare = 0
        parser = self.parser
        if len(self.url) > MAX_REQUEST_TARGET:
            bare = 414
        elif len(self.headers) > MAX_HEADERS or (
            self._head_seen + self._chunk_len > MAX_HEAD_BYTES
            and sum(len(n) + len(v) + 4 for n, v in self.headers) + len(self.url) > MAX_HEAD_BYTES
        ):
            bare = 431
        elif parser.get_http_version() not in ("1.0", "1.1"):
            bare = 400  # hyper serves HTTP/1.0 and 1.1 only
        if bare:
            self.url = b"/"
            self.scope["extensions"] = {"elastik.bare": {"status": bare}}
            return self._open_cycle()
        self._queued_req = queued = parser.get_method() in _QUEUED_METHODS and self.url.startswith(
            _DURABLE_PREFIXES
        )
        cycle = self.cycle
        flights = self._flights
        if (
            self._respond_now is not None
            and self._real_method is None
            and not self.expect_100_continue
            and (
                cycle is None
                or cycle.response_complete
                # a durable write behind durable writes still in flight: join them
                or (
                    queued
                    and flights
                    and cycle is flights[-1]
                    and flights[-1].queued
                    and flights[-1].keep_alive  # not after a shutdown began
                    and len(flights) < MAX_PIPELINED_WRITES
                )
            )
            and not self.pipeline
            and not self.flow.write_paused
            and parser.should_keep_alive()
            and parser.get_http_version() == "1.1"
            and not parser.should_upgrade()
        ):
            # Fast path: answered at the end of the message without an ASGI cycle if the
            # app can (App.respond_now); otherwise the cycle is opened then (_to_cycle).
            self._fast = True
            self._fast_body = []
            return
        self._open_cycle()

    def _open_cycle(self) -> None:
        """uvicorn's head handling: the scope, a cycle and (soon) its ASGI task."""
        super().on_headers_complete()
        if self.cycle is not None and type(self.cycle) is RequestResponseCycle:
            # The ASGI task has not run yet: it will look send() up on the new class.
            self.cycle.__class__ = ElastikCycle
        if self._real_method is not None:  # the ASGI task has not started yet
            self.scope["method"] = self._real_method.decode("ascii")
            self._real_method = None

    def _to_cycle(self, complete: bool) -> None:
        """Hand a fast-path request, body so far included, to the ASGI path."""
        body = self._fast_body
        self._fast = False
        self._fast_body = []
        self._open_cycle()
        cycle = self.cycle
        for chunk in body:
            cycle.body += chunk
        if complete:
            cycle.more_body = False
        cycle.message_event.set()

    def _answer_fast(self) -> None:
        chunks = self._fast_body
        self._fast_body = []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        method = self.parser.get_method().decode("ascii")
        raw = httptools.parse_url(self.url).path
        assert self._respond_now is not None
        answer = self._respond_now(method, raw, self.headers, body)
        if answer is None:
            if self._flights:  # cannot happen for a durable write; never answer out of turn
                logger.error("pipelined write needs the ASGI path; closing the connection")
                self.transport.close()
                return
            self._fast_body = [body]
            self._to_cycle(complete=True)
        elif type(answer) is not Response:
            self._await_answer(method, answer)
        elif self._flights:  # behind durable writes still in flight: answered in its turn
            self._complete(self._add_flight(), method, answer)
        else:
            self._write_answer(method, answer, False)

    def _add_flight(self) -> _InFlight:
        flight = _InFlight(self._queued_req)
        if self._flights is None:
            self._flights = deque()
        self._flights.append(flight)
        self.cycle = flight  # type: ignore[assignment]
        return flight

    def _await_answer(self, method: str, answer: Coroutine[Any, Any, Response]) -> None:
        """A fast-path request that has to wait (a durable write): run it eagerly, and if it
        suspends, finish it from a Task. Until then ``_InFlight`` stands in for uvicorn's
        cycle, so pipelined requests queue behind it (durable writes join it instead), a
        lost connection or a shutdown is noted, and the drain waits for the Task."""
        flight = self._add_flight()
        self._run_request(self._answer_when_ready(flight, method, answer))

    async def _answer_when_ready(
        self, flight: _InFlight, method: str, answer: Coroutine[Any, Any, Response]
    ) -> None:
        # The answer is written by the coroutine's last step, not from a done-callback:
        # one trip through the event loop less per waiting request.
        try:
            resp = await answer
        except BaseException:  # cancelled (a forced shutdown): nothing to answer with
            flight.response_complete = True
            if not self.transport.is_closing():
                self.transport.close()
            raise
        self._complete(flight, method, resp)

    def _complete(self, flight: _InFlight, method: str, resp: Response) -> None:
        flight.response_complete = True
        flights = self._flights
        if flight.disconnected or self.transport.is_closing() or not flights:
            if flights:
                flights.clear()
            return
        if len(flights) == 1:  # alone (the common case): answer now
            flights.clear()
            self._write_answer(method, resp, not flight.keep_alive)
            return
        flight.out, flight.close = self._answer_bytes(method, resp, not flight.keep_alive)
        if flight is flights[0] and not self._flush_scheduled:
            # The writes of one commit finish one after the other in this turn of the loop:
            # answer them together once they all have.
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_answers)

    def _flush_answers(self) -> None:
        """Write the finished answers at the head of the queue, in order, in one write."""
        self._flush_scheduled = False
        flights = self._flights
        if not flights or self.transport.is_closing():
            return
        out: list[bytes] = []
        close = False
        while flights and flights[0].out is not None:
            flight = flights.popleft()
            out.append(flight.out)  # type: ignore[arg-type]
            self.server_state.total_requests += 1
            if flight.close:
                close = True
                break
        if not out:
            return
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if close:
            flights.clear()
            self.transport.close()
            return
        if flights:
            self._last_active = self.loop.time()
        else:
            self.server_state.total_requests -= 1  # on_response_complete counts the last
            self.on_response_complete()  # starts a pipelined request or idles

    @staticmethod
    def _answer_head(resp: Response, close: bool) -> tuple[list[bytes | memoryview], bool]:
        """Status line and headers of an answer, and whether the connection closes after it
        (asked by ``close``, or the app's own "connection: close" on bare refusals)."""
        parts: list[bytes | memoryview] = [STATUS_LINE[resp.status]]
        own = False
        for name, value in resp.headers:
            if name == b"connection":
                own = True
            parts += (name, b": ", value, b"\r\n")
        if close and not own:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        return parts, close or own

    def _answer_bytes(self, method: str, resp: Response, close: bool) -> tuple[bytes, bool]:
        parts, closes = self._answer_head(resp, close)
        if method != "HEAD" and resp.body:
            parts.append(resp.body)
        return b"".join(parts), closes

    def _write_answer(self, method: str, resp: Response, close: bool) -> None:
        parts, closes = self._answer_head(resp, close)
        out = resp.body
        if method == "HEAD" or not out:
            self.transport.write(b"".join(parts))
        elif len(out) <= JOIN_BODY_MAX:
            parts.append(out)
            self.transport.write(b"".join(parts))
        else:
            self.transport.write(b"".join(parts))
            self.transport.write(out)
        if closes:
            self.transport.close()
        self.on_response_complete()  # counts it; starts a pipelined request or idles

    def send_400_response(self, msg: str) -> None:
        self._bare_close(b"400 Bad Request")

    def _bare_close(self, status: bytes) -> None:
        """A protocol-level rejection: no elastik headers, empty body, connection closed."""
        date = formatdate(usegmt=True).encode()
        self.transport.write(
            b"HTTP/1.1 "
            + status
            + b"\r\nconnection: close\r\ncontent-length: 0\r\ndate: "
            + date
            + b"\r\n\r\n"
        )
        self.transport.close()


def os_error_text(code: int) -> str:
    """``<text> (os error <n>)`` as the reference (a musl build) prints it."""
    text = "Address in use" if code == errno.EADDRINUSE else os.strerror(code)
    return f"{text} (os error {code})"


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen, or raise ``FatalError('bind <host>:<port> failed: ...')`` (§1.3)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FatalError(
            f"bind {host}:{port} failed: failed to lookup address information: {reason}"
        ) from None
    family, kind, proto, _canon, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise FatalError(f"bind {host}:{port} failed: {os_error_text(exc.errno or 0)}") from None
    sock.setblocking(False)
    return sock


def display_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class CoreServer(uvicorn.Server):
    """uvicorn's server with our signal handling: one message, drain, exit 0."""

    def __init__(self, config: uvicorn.Config, on_signal: Callable[[], None] | None = None):
        super().__init__(config)
        self._on_signal = on_signal
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        self._loop = asyncio.get_running_loop()
        previous = {
            sig: signal.signal(sig, self._signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _signal(self, sig: int, frame: Any) -> None:
        if self.should_exit:
            self.force_exit = True
            return
        sys.stderr.write("elastik-core: shutdown signal received\n")
        sys.stderr.flush()
        self.should_exit = True
        if self._on_signal is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_signal)


def uvicorn_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=ElastikHttpProtocol,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        lifespan="off",
        access_log=False,
        log_level="error",
        server_header=False,
        date_header=False,
        timeout_keep_alive=KEEPALIVE_TIMEOUT_S,
        proxy_headers=False,
        # In-flight requests get this long to finish after a shutdown signal.
        timeout_graceful_shutdown=10,
    )
