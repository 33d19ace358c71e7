"""A raw HTTP/1.1 client for black-box tests: every byte of the request is ours.

``http.client`` refuses malformed targets and adds headers of its own, so requests are
written to a plain socket and only the *response* is parsed with ``http.client``'s parser
(which handles content-length, chunked and HEAD/204/304 framing).
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HeaderList = Sequence[tuple[str, str | bytes]]

# Headers that differ between any two runs, so never compared.
VOLATILE = frozenset({"date", "x-request-id", "x-elapsed-us"})


@dataclass
class Resp:
    status: int
    headers: list[tuple[str, str]]  # lowercase names, wire order
    body: bytes
    raw_head: bytes = b""
    closed: bool = False

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def has(self, name: str) -> bool:
        return self.header(name) is not None

    @property
    def etag(self) -> str | None:
        return self.header("etag")

    def stable(self) -> list[tuple[str, str]]:
        """Headers without the per-request ones, sorted (for comparing two servers)."""
        return sorted((k, v) for k, v in self.headers if k not in VOLATILE)

    def __repr__(self) -> str:
        return f"Resp({self.status}, {self.headers!r}, {self.body[:200]!r})"


def _encode_headers(headers: HeaderList | None) -> bytes:
    out = b""
    for k, v in headers or ():
        vb = v if isinstance(v, bytes) else v.encode("latin-1")
        out += k.encode("latin-1") + b": " + vb + b"\r\n"
    return out


@dataclass
class Server:
    """Where a core listens, plus what the tests need to know about how it was started."""

    host: str
    port: int
    impl: str = "?"
    key: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url: str, impl: str = "?", key: str = "") -> Server:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, impl, key)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def raw(self, data: bytes, method: str = "GET", timeout: float = 10.0) -> Resp:
        """Send raw bytes on a fresh connection and parse one response."""
        with self.connect(timeout) as s:
            s.sendall(data)
            return read_response(s, method)

    def request(
        self,
        method: str,
        target: str | bytes,
        body: bytes | None = None,
        headers: HeaderList | None = None,
        *,
        token: str | None = None,
        content_length: bool = True,
        timeout: float = 10.0,
    ) -> Resp:
        """One request on a fresh connection. ``target`` is sent verbatim."""
        tb = target if isinstance(target, bytes) else target.encode("utf-8")
        hs: list[tuple[str, str | bytes]] = [("Host", f"{self.host}:{self.port}")]
        if token is not None:
            hs.append(("Authorization", f"Bearer {token}"))
        hs.extend(headers or ())
        if body is not None and content_length:
            hs.append(("Content-Length", str(len(body))))
        elif body is None and method in ("PUT", "POST") and content_length:
            hs.append(("Content-Length", "0"))
        head = method.encode() + b" " + tb + b" HTTP/1.1\r\n" + _encode_headers(hs) + b"\r\n"
        return self.raw(head + (body or b""), method, timeout)

    # Convenience wrappers ------------------------------------------------------------
    def get(self, target: str | bytes, headers: HeaderList | None = None, **kw: object) -> Resp:
        return self.request("GET", target, None, headers, **kw)  # type: ignore[arg-type]

    def head(self, target: str | bytes, headers: HeaderList | None = None, **kw: object) -> Resp:
        return self.request("HEAD", target, None, headers, **kw)  # type: ignore[arg-type]

    def put(
        self,
        target: str | bytes,
        body: bytes = b"",
        headers: HeaderList | None = None,
        token: str | None = "w",
        **kw: object,
    ) -> Resp:
        return self.request("PUT", target, body, headers, token=token, **kw)  # type: ignore[arg-type]

    def post(
        self,
        target: str | bytes,
        body: bytes = b"",
        headers: HeaderList | None = None,
        token: str | None = "w",
        **kw: object,
    ) -> Resp:
        return self.request("POST", target, body, headers, token=token, **kw)  # type: ignore[arg-type]

    def delete(
        self,
        target: str | bytes,
        headers: HeaderList | None = None,
        token: str | None = "a",
        **kw: object,
    ) -> Resp:
        return self.request("DELETE", target, None, headers, token=token, **kw)  # type: ignore[arg-type]

    def worlds(self, token: str | None = None) -> bytes:
        r = self.get("/proc/worlds", token=token)
        assert r.status == 200, r
        return r.body

    def verify(self, world: str, token: str | None = None) -> Resp:
        return self.get(f"/proc/audit/{world}/verify", token=token)

    def snapshot(self, token: str | None = None) -> tuple[bytes, bytes, bytes]:
        """(/proc/worlds, /proc/du, /proc/df) - to assert a bad request changed nothing."""
        return tuple(
            self.get(p, token=token).body for p in ("/proc/worlds", "/proc/du", "/proc/df")
        )  # type: ignore[return-value]


class Pipe:
    """One buffered reader over a socket, so several responses can be read in a row."""

    def __init__(self, sock: socket.socket):
        self.file = sock.makefile("rb")

    def makefile(self, mode: str, *args: object) -> object:
        return self

    # http.client closes its file after each response; the socket must stay readable.
    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        return getattr(self.file, name)


def read_response(sock: socket.socket | Pipe, method: str = "GET") -> Resp:
    resp = http.client.HTTPResponse(sock, method=method)  # type: ignore[arg-type]
    resp.begin()
    body = resp.read()
    headers = [(k.lower(), v) for k, v in resp.getheaders()]
    closed = resp.will_close
    resp.close()
    return Resp(resp.status, headers, body, closed=closed)


class Stream:
    """An open SSE (or other streaming) response read incrementally."""

    def __init__(self, sock: socket.socket, resp: http.client.HTTPResponse):
        self.sock = sock
        self.resp = resp
        self.status = resp.status
        self.headers = [(k.lower(), v) for k, v in resp.getheaders()]
        self.buf = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def read_events(self, count: int, timeout: float = 5.0) -> list[dict[str, list[str]]]:
        """Read ``count`` SSE event blocks (comments are kept under the key ':')."""
        events: list[dict[str, list[str]]] = []
        deadline = time.monotonic() + timeout
        while len(events) < count:
            while b"\n\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"got {events!r}, buffer {self.buf!r}")
                self.sock.settimeout(left)
                chunk = self.resp.read1(65536)
                if not chunk:
                    raise EOFError(f"stream ended after {events!r}")
                self.buf += chunk
            block, self.buf = self.buf.split(b"\n\n", 1)
            events.append(parse_event(block))
        return events

    def expect_silence(self, seconds: float) -> bytes:
        """Return whatever arrives within ``seconds`` (b"" when nothing does)."""
        if self.buf:
            return self.buf
        self.sock.settimeout(seconds)
        try:
            return self.resp.read1(65536)
        except (TimeoutError, socket.timeout):
            return b""

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self.resp.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_event(block: bytes) -> dict[str, list[str]]:
    ev: dict[str, list[str]] = {}
    for line in block.decode("utf-8").split("\n"):
        if line.startswith(":"):
            ev.setdefault(":", []).append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        ev.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
    return ev


def open_stream(
    server: Server, target: str, headers: Iterable[tuple[str, str]] = (), timeout: float = 10.0
) -> Stream:
    sock = server.connect(timeout)
    head = f"GET {target} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n".encode()
    head += _encode_headers(list(headers)) + b"\r\n"
    sock.sendall(head)
    resp = http.client.HTTPResponse(sock, method="GET")
    resp.begin()
    return Stream(sock, resp)
