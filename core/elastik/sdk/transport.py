"""HTTP transports: one-shot (default) and keep-alive (opt-in, thread-safe).

Both speak plain ``http.client`` from the stdlib and return the same ``Response``. The
one-shot transport opens a connection per request and closes it, like the reference SDK:
no state survives a call, nothing can leak. The keep-alive transport keeps a small pool
of idle connections for callers that make many small requests (see bench/sdk_transport.py).
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from elastik.sdk.errors import Unreachable

DEFAULT_TIMEOUT = 30.0
# Idle connections kept by the keep-alive transport. A caller rarely runs more threads
# than get_many/put_many's default of 4 workers; 8 covers that twice without holding
# many sockets (and server-side connection slots) open for nothing.
MAX_IDLE_CONNECTIONS = 8
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
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


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
        conn = self.endpoint.connect(None)
        try:
            conn.request(method, self.endpoint.base + target, headers=dict(headers))
            resp = conn.getresponse()
        except _CONNECT_ERRORS as exc:
            conn.close()
            raise Unreachable(self.endpoint.url, exc, method=method, path=target) from exc
        return _StreamResponse(conn, resp)

    def close(self) -> None:
        return None


class KeepAliveTransport(OneShotTransport):
    """Persistent connections from a bounded idle pool; safe to share between threads.

    Each request takes an idle connection (or opens one), uses it alone, and puts it back
    when the server did not ask to close. A request that fails on a *reused* connection
    before any response byte arrived (the server closed it while idle) is retried once
    on a fresh connection; a failure on a fresh connection is reported as it is.
    """

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(url, timeout=timeout)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self.endpoint.connect(self.timeout), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
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
                conn, reused = self.endpoint.connect(self.timeout), False
            try:
                conn.request(method, self.endpoint.base + target, body=body, headers=dict(headers))
                resp = conn.getresponse()
                data = resp.read()
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
            return Response(resp.status, lowered_headers(resp.getheaders()), data)
        raise AssertionError("unreachable: the second attempt always returns or raises")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
