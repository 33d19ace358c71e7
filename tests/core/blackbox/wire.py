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
    """An open SSE response read incrementally from the raw socket (chunked decoding here,
    because a buffered file object becomes unusable after its first read timeout)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.raw = b""  # undecoded bytes from the socket
        self.buf = b""  # decoded body bytes not yet consumed
        self.chunked = False
        self.eof = False
        head = self._read_head()
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = []
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                self.headers.append((k.strip().lower(), v.strip()))
        self.chunked = (self.header("transfer-encoding") or "").lower() == "chunked"
        length = self.header("content-length")
        if length is not None and not self.chunked:
            while len(self.raw) < int(length):
                self._recv(10.0)
            self.buf, self.raw = self.raw[: int(length)], b""
            self.eof = True

    def _recv(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            raise EOFError("connection closed")
        self.raw += data

    def _read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.raw:
            self._recv(10.0)
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        return head

    def _decode(self) -> None:
        while self.chunked and b"\r\n" in self.raw:
            size_line, rest = self.raw.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return
            self.buf += rest[:size]
            self.raw = rest[size + 2 :]
            if size == 0:
                self.eof = True
                return

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
            self._decode()
            while b"\n\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"got {events!r}, buffer {self.buf!r}")
                try:
                    self._recv(left)
                except TimeoutError:
                    continue
                self._decode()
            block, self.buf = self.buf.split(b"\n\n", 1)
            events.append(parse_event(block))
        return events

    def expect_silence(self, seconds: float) -> bytes:
        """Whatever body bytes arrive within ``seconds`` (b"" when nothing does)."""
        self._decode()
        if self.buf:
            return self.buf
        try:
            self._recv(seconds)
        except TimeoutError:
            return b""
        self._decode()
        return self.buf or self.raw

    def close(self) -> None:
        self.sock.close()

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
    return Stream(sock)


class Session:
    """A keep-alive connection for well-formed requests (many writes, quickly)."""

    def __init__(self, server: Server, timeout: float = 10.0):
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)

    def request(
        self, method: str, target: str, body: bytes | None = None, headers: HeaderList = ()
    ) -> Resp:
        hs = {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in headers}
        if body is None and method in ("PUT", "POST"):
            body = b""
        self.conn.request(method, target, body=body, headers=hs)
        r = self.conn.getresponse()
        data = r.read()
        return Resp(r.status, [(k.lower(), v) for k, v in r.getheaders()], data)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
