"""HTTP transports: one-shot (default) and keep-alive (opt-in, thread-safe).

Both speak plain ``http.client`` from the stdlib and return the same ``Response``. The
one-shot transport opens a connection per request and closes it, like the reference SDK:
no state survives a call, nothing can leak. The keep-alive transport keeps a small pool
of idle connections for callers that make many small requests (see bench/sdk_transport.py).
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from elastik.sdk.errors import Unreachable

DEFAULT_TIMEOUT = 30.0
# Idle connections kept by the keep-alive transport. A caller rarely runs more threads
# than get_many/put_many's default of 4 workers; 8 covers that twice without holding
# many sockets (and server-side connection slots) open for nothing.
MAX_IDLE_CONNECTIONS = 8
# A /listen stream with no byte for this long is dead: the core sends a keepalive comment
# every 15 s, so 60 s is four missed keepalives. The reader then reconnects.
STREAM_IDLE_TIMEOUT = 60.0
# Size of one read from an SSE stream: events are a few hundred bytes; 4 KiB reads keep
# latency low without a syscall per byte.
STREAM_CHUNK = 4096


@dataclass(frozen=True)
class Response:
    """A complete HTTP answer. Header names are lowercased; repeated headers are joined."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def etag(self) -> str:
        return self.headers.get("etag", "")

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def created(self) -> bool:
        return self.status == 201


class Stream(Protocol):
    """A response whose body is read incrementally (``/listen`` SSE)."""

    status: int
    headers: dict[str, str]

    def chunks(self) -> Iterator[bytes]: ...

    def read_all(self) -> bytes: ...

    def close(self) -> None: ...


class Transport(Protocol):
    def request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response: ...

    def stream(self, method: str, target: str, headers: Mapping[str, str]) -> Stream: ...

    def close(self) -> None: ...


def lowered_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Lowercase names; join repeated headers with ", " (RFC 9110 §5.3), e.g. both Links."""
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    base: str  # path prefix of the URL, "" or "/prefix"

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"elastik URL must be http://host:port or https://...; got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.base}"

    def connect(self, timeout: float | None) -> http.client.HTTPConnection:
        kind = _NoDelayHTTPSConnection if self.scheme == "https" else _NoDelayHTTPConnection
        return kind(self.host, self.port, timeout=timeout)


def _no_delay(sock: socket.socket | None) -> None:
    # Requests are small and each is written in one send(); Nagle would only add latency
    # when a response ACK is delayed on a reused connection.
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _NoDelayHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _no_delay(self.sock)


class _NoDelayHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _no_delay(self.sock)


# What a dead or unreachable server looks like from http.client.
_CONNECT_ERRORS = (OSError, http.client.HTTPException)


class _StreamResponse:
    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse):
        self._conn = conn
        self._resp = resp
        self.status = resp.status
        self.headers = lowered_headers(resp.getheaders())

    def chunks(self) -> Iterator[bytes]:
        while True:
            data = self._resp.read1(STREAM_CHUNK)
            if not data:
                return
            yield data

    def read_all(self) -> bytes:
        try:
            return self._resp.read()
        finally:
            self.close()

    def close(self) -> None:
        try:
            self._resp.close()
        finally:
            self._conn.close()


class OneShotTransport:
    """One connection per request, closed afterwards (``Connection: close``)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint = Endpoint.parse(url)
        self.timeout = timeout

    def request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        conn = self.endpoint.connect(self.timeout)
        try:
            sent = dict(headers)
            sent["Connection"] = "close"
            conn.request(method, self.endpoint.base + target, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, lowered_headers(resp.getheaders()), data)
        except _CONNECT_ERRORS as exc:
            raise Unreachable(self.endpoint.url, exc, method=method, path=target) from exc
        finally:
            conn.close()

    def stream(self, method: str, target: str, headers: Mapping[str, str]) -> Stream:
        conn = self.endpoint.connect(STREAM_IDLE_TIMEOUT)
        try:
            conn.request(method, self.endpoint.base + target, headers=dict(headers))
            resp = conn.getresponse()
        except _CONNECT_ERRORS as exc:
            conn.close()
            raise Unreachable(self.endpoint.url, exc, method=method, path=target) from exc
        return _StreamResponse(conn, resp)

    def close(self) -> None:
        return None


def _check_header(name: str, value: str) -> None:
    if not name or any(c in name for c in "\r\n:\t ") or "\r" in value or "\n" in value:
        raise ValueError(f"invalid HTTP header {name!r}: {value!r}")


# Bounds for reading a response head: the core sends about a dozen short headers plus the
# persisted ones; 100 lines of 64 KiB each is far above that and still bounded.
MAX_HEADER_LINES = 100
MAX_LINE = 65536


class _Answer:
    """A parsed response: status, header pairs, body, and whether the server will close."""

    __slots__ = ("body", "headers", "status", "will_close")

    def __init__(
        self, status: int, headers: list[tuple[str, str]], body: bytes, will_close: bool
    ) -> None:
        self.status, self.headers, self.body, self.will_close = status, headers, body, will_close


def _line(rfile: Any) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise http.client.LineTooLong("response line")
    return bytes(line)


def _exactly(rfile: Any, n: int) -> bytes:
    data = rfile.read(n)
    if len(data) != n:
        raise http.client.IncompleteRead(data, n - len(data))
    return bytes(data)


def read_answer(rfile: Any, method: str) -> _Answer:
    """Read one HTTP/1.x response from a buffered binary file (Content-Length, chunked, or
    close-delimited bodies; no body for HEAD, 1xx, 204 and 304)."""
    while True:
        first = _line(rfile)
        if not first:
            raise http.client.RemoteDisconnected("server closed the connection")
        parts = first.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise http.client.BadStatusLine(first.decode("latin-1", "replace"))
        status = int(parts[1])
        headers: list[tuple[str, str]] = []
        while True:
            raw = _line(rfile)
            if raw in (b"\r\n", b"\n", b""):
                break
            if len(headers) >= MAX_HEADER_LINES:
                raise http.client.HTTPException("too many response headers")
            name, _, value = raw.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        if status >= 200 or status == 101:
            break  # 1xx interim answers (100 Continue) are skipped
    fields = {k.lower(): v for k, v in headers}
    tokens = {t.strip().lower() for t in fields.get("connection", "").split(",")}
    will_close = "close" in tokens or (parts[0] == "HTTP/1.0" and "keep-alive" not in tokens)
    if method == "HEAD" or status in (204, 304) or status < 200:
        return _Answer(status, headers, b"", will_close)
    if "chunked" in fields.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int(_line(rfile).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while _line(rfile) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            chunks.append(_exactly(rfile, size))
            _line(rfile)
        return _Answer(status, headers, b"".join(chunks), will_close)
    if "content-length" in fields:
        return _Answer(status, headers, _exactly(rfile, int(fields["content-length"])), will_close)
    return _Answer(status, headers, bytes(rfile.read()), True)


class _Conn:
    """One persistent HTTP/1.1 connection. A request goes out in a single ``sendall``
    (request line, headers and body together: a PUT is one packet, not two) and the
    answer is read by ``read_answer`` from one buffered reader kept for the connection."""

    def __init__(self, endpoint: Endpoint, timeout: float | None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.rfile: Any = None
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        default = 443 if endpoint.scheme == "https" else 80
        self._host_header = host if endpoint.port == default else f"{host}:{endpoint.port}"

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.endpoint.host, self.endpoint.port), self.timeout)
        _no_delay(sock)
        if self.endpoint.scheme == "https":
            import ssl

            ctx = ssl.create_default_context()
            sock = ctx.wrap_socket(sock, server_hostname=self.endpoint.host)
        return sock

    def exchange(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> _Answer:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}"]
        for name, value in headers.items():
            _check_header(name, str(value))
            lines.append(f"{name}: {value}")
        if body is not None or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {len(body or b'')}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        if self.sock is None:
            self.sock = self._open()
            self.rfile = self.sock.makefile("rb")
        self.sock.sendall(raw)
        return read_answer(self.rfile, method)

    def close(self) -> None:
        if self.rfile is not None:
            self.rfile.close()
            self.rfile = None
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None


class KeepAliveTransport(OneShotTransport):
    """Persistent connections from a bounded idle pool; safe to share between threads.

    Each request takes an idle connection (or opens one), uses it alone, and puts it back
    when the server did not ask to close. A request that fails on a *reused* connection
    before any response byte arrived (the server closed it while idle) is retried once
    on a fresh connection; a failure on a fresh connection is reported as it is.
    """

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(url, timeout=timeout)
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self._closed = False

    def _take(self) -> tuple[_Conn, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return _Conn(self.endpoint, self.timeout), False

    def _give_back(self, conn: _Conn) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        for attempt in range(2):
            if attempt == 0:
                conn, reused = self._take()
            else:
                conn, reused = _Conn(self.endpoint, self.timeout), False
            try:
                resp = conn.exchange(method, self.endpoint.base + target, body, headers)
            except (
                http.client.RemoteDisconnected,
                ConnectionResetError,
                BrokenPipeError,
            ) as exc:
                conn.close()
                if reused:
                    continue
                raise Unreachable(self.endpoint.url, exc, method=method, path=target) from exc
            except (TimeoutError, *_CONNECT_ERRORS) as exc:
                conn.close()
                raise Unreachable(self.endpoint.url, exc, method=method, path=target) from exc
            if resp.will_close:
                conn.close()
            else:
                self._give_back(conn)
            return Response(resp.status, lowered_headers(resp.headers), resp.body)
        raise AssertionError("unreachable: the second attempt always returns or raises")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
