"""``FakeElastik``: the SDK's full API over an in-memory store, for unit tests without a core.

It is the real ``Elastik`` client with its transport swapped for a small in-process model
of the core: the same path mapping, status codes (201/200/204/304/404/412/416),
conditional requests, ranges, ``/proc/worlds``, ``/proc/du``, the persisted-header policy
and ``/listen`` events. Tokens are accepted as given and nothing is audited (``verify()``
is False, ETags are ``sha256-`` like memory worlds). It is not a protocol test: use a real
core (``elastik.start()``) for wire-level behaviour.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from elastik.sdk import paths
from elastik.sdk.client import Elastik
from elastik.sdk.headers import HeaderAllowlist, coerce_allowlist, should_persist
from elastik.sdk.transport import Response

__all__ = ["FakeElastik", "HeaderAllowlist"]

_TEXT = {"content-type": "text/plain; charset=utf-8"}
# Events the fake keeps for Last-Event-ID replay; the core's default ring is 1024 too.
REPLAY_MAX = 1024


@dataclass
class _World:
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def etag(self) -> str:
        return '"sha256-' + hashlib.sha256(self.body).hexdigest() + '"'


def _etag_list(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def _text(status: int, body: str) -> Response:
    return Response(status, dict(_TEXT), body.encode())


class _FakeStream:
    def __init__(self, core: _FakeCore, pattern: str, after: int) -> None:
        self.status = 200
        self.headers = {"content-type": "text/event-stream"}
        self._core, self._pattern, self._after = core, pattern, after
        self._closed = False

    def chunks(self) -> Iterator[bytes]:
        while not self._closed:
            for ev_id, kind, path, etag in self._core.events_after(self._after):
                self._after = ev_id
                p = self._pattern
                if p == "*" or (p.endswith("*") and path.startswith(p[:-1])) or path == p:
                    lines = [f"event: {kind}", f"id: {ev_id}", f"data: path: /{path}"]
                    lines.append(f"data: method: {kind.upper()}")
                    if etag:
                        lines.append(f"data: etag: {etag.strip(chr(34))}")
                    yield ("\n".join(lines) + "\n\n").encode()

    def read_all(self) -> bytes:
        return b""

    def close(self) -> None:
        self._closed = True


class _FakeCore:
    """The in-memory model of the core behind ``FakeElastik``'s transport."""

    def __init__(self, allow: HeaderAllowlist, deny: HeaderAllowlist) -> None:
        self.worlds: dict[str, _World] = {}
        self.allow, self.deny = allow, deny
        self._events: list[tuple[int, str, str, str]] = []
        self._next_id = 1
        self._cond = threading.Condition()

    # -- events -------------------------------------------------------------------------

    def emit(self, kind: str, world: str, etag: str) -> None:
        with self._cond:
            self._events.append((self._next_id, kind, world, etag))
            self._next_id += 1
            del self._events[:-REPLAY_MAX]
            self._cond.notify_all()

    def events_after(self, after: int, wait: float = 0.5) -> list[tuple[int, str, str, str]]:
        with self._cond:
            fresh = [e for e in self._events if e[0] > after]
            if not fresh:
                self._cond.wait(wait)
                fresh = [e for e in self._events if e[0] > after]
            return fresh

    # -- transport ----------------------------------------------------------------------

    def request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        with self._cond:  # one request at a time, like the core's single writer
            return self._request(method, target, body, headers)

    def _request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        h = {k.lower(): v for k, v in headers.items()}
        raw = urllib.parse.unquote(target.split("?", 1)[0]).lstrip("/")
        if raw in ("proc/version", "proc/worlds", "proc/du") and method in ("GET", "HEAD"):
            return self._proc(raw, method)
        if raw.startswith("proc/audit/") and raw.endswith("/verify"):
            world = raw[len("proc/audit/") : -len("/verify")]
            if world not in self.worlds:
                return _text(404, "world not found\n")
            return Response(204, {"x-audit-valid": "n/a"}, b"")
        try:
            world = paths.world_name(raw)
        except ValueError as exc:
            return _text(400, f"bad request: {exc}\n")
        handler = {
            "GET": self._get,
            "HEAD": self._get,
            "PUT": self._put,
            "POST": self._post,
            "DELETE": self._delete,
        }.get(method)
        if handler is None:
            return Response(405, {"allow": "GET, HEAD, PUT, POST, DELETE, OPTIONS"}, b"")
        resp = handler(method, world, body or b"", h)
        if method == "HEAD":
            return Response(resp.status, resp.headers, b"")
        return resp

    def stream(self, method: str, target: str, headers: Mapping[str, str]) -> _FakeStream:
        pattern = urllib.parse.unquote(target[len("/listen/") :])
        last = {k.lower(): v for k, v in headers.items()}.get("last-event-id", "")
        after = int(last) if last.isdigit() else self._next_id - 1
        return _FakeStream(self, pattern, after)

    def close(self) -> None:
        return None

    def _proc(self, name: str, method: str) -> Response:
        if name == "proc/version":
            text = "elastik-core fake (in-memory)\n"
        elif name == "proc/worlds":
            text = "".join(f"{w}\n" for w in sorted(self.worlds, key=str.encode))
        else:
            text = "".join(
                f"{w}\t{len(self.worlds[w].body)}\n" for w in sorted(self.worlds, key=str.encode)
            )
        return _text(200, text)

    def _precondition(self, w: _World | None, h: dict[str, str]) -> Response | None:
        if_match, if_none = h.get("if-match", "").strip(), h.get("if-none-match", "").strip()
        if if_match:
            if w is None:
                return _text(412, "precondition failed: If-Match requires an existing world\n")
            if if_match != "*" and w.etag not in _etag_list(if_match):
                return _text(412, "precondition failed: If-Match did not match current ETag\n")
        if if_none and w is not None:
            tags = [t.removeprefix("W/") for t in _etag_list(if_none)]
            if if_none == "*" or w.etag in tags:
                return _text(412, "precondition failed: If-None-Match matched current ETag\n")
        return None

    def _get(self, method: str, world: str, body: bytes, h: dict[str, str]) -> Response:
        w = self.worlds.get(world)
        if w is None:
            return _text(404, "world not found\n")
        headers = {"content-type": w.content_type, "accept-ranges": "bytes", "etag": w.etag}
        headers.update(sorted(w.headers.items()))
        if_none = h.get("if-none-match", "").strip()
        if if_none and (
            if_none == "*" or w.etag in [t.removeprefix("W/") for t in _etag_list(if_none)]
        ):
            return Response(304, headers, b"")
        rng, if_range = h.get("range", ""), h.get("if-range", "")
        if rng and "," not in rng and (not if_range or if_range == w.etag):
            size = len(w.body)
            first, _, last = rng.removeprefix("bytes=").partition("-")
            try:
                if first == "":
                    start, end = max(0, size - int(last)), size - 1
                    if int(last) <= 0:
                        raise ValueError
                else:
                    start = int(first)
                    end = min(int(last), size - 1) if last else size - 1
                if not rng.startswith("bytes=") or start >= size or end < start:
                    raise ValueError
            except ValueError:
                return Response(
                    416, {**_TEXT, "content-range": f"bytes */{size}"}, b"range not satisfiable\n"
                )
            headers["content-range"] = f"bytes {start}-{end}/{size}"
            headers["content-length"] = str(end - start + 1)
            return Response(206, headers, w.body[start : end + 1])
        headers["content-length"] = str(len(w.body))
        return Response(200, headers, w.body)

    def _put(self, method: str, world: str, body: bytes, h: dict[str, str]) -> Response:
        old = self.worlds.get(world)
        failed = self._precondition(old, h)
        if failed is not None:
            return failed
        kept = {k: v for k, v in h.items() if should_persist(k, self.allow, self.deny)}
        w = _World(body, h.get("content-type", "").strip() or "application/octet-stream", kept)
        self.worlds[world] = w
        self.emit("put", world, w.etag)
        status = 200 if old is not None else 201
        extra = {} if old is not None else {"location": "/" + urllib.parse.quote(world)}
        return Response(status, {**_TEXT, "etag": w.etag, **extra}, b"")

    def _post(self, method: str, world: str, body: bytes, h: dict[str, str]) -> Response:
        w = self.worlds.get(world)
        failed = self._precondition(w, h)
        if failed is not None:
            return failed
        if w is None:
            return _text(404, "world not found\n")
        w.body += body
        self.emit("post", world, w.etag)
        return Response(200, {**_TEXT, "etag": w.etag}, b"")

    def _delete(self, method: str, world: str, body: bytes, h: dict[str, str]) -> Response:
        w = self.worlds.get(world)
        failed = self._precondition(w, h)
        if failed is not None:
            return failed
        if w is None:
            return _text(404, "world not found\n")
        del self.worlds[world]
        self.emit("delete", world, "")
        return Response(204, dict(_TEXT), b"")


class FakeElastik(Elastik):
    """``Elastik`` over an in-memory store. ``persist_allow``/``persist_deny`` take a
    ``HeaderAllowlist`` or a comma list (``"x-meta-*"``); by default they come from
    ``ELASTIK_PERSIST_HEADERS`` / ``ELASTIK_DENY_HEADERS`` like the core's."""

    def __init__(
        self,
        *,
        persist_allow: HeaderAllowlist | str | None = None,
        persist_deny: HeaderAllowlist | str | None = None,
    ) -> None:
        allow = coerce_allowlist(persist_allow, "ELASTIK_PERSIST_HEADERS")
        deny = coerce_allowlist(persist_deny, "ELASTIK_DENY_HEADERS")
        self._core = _FakeCore(allow, deny)
        super().__init__("http://fake.invalid", bearer_token="fake", transport=self._core)

    def __repr__(self) -> str:
        return f"<FakeElastik {len(self._core.worlds)} paths>"
