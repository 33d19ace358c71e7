"""The core's HTTP layer: a raw ASGI application (PROTOCOL §4-§17, D2-D4, D7).

It routes, validates paths, authenticates, translates conditionals/ranges/headers, calls
the storage engine (``model.EngineAPI``) and renders every ``ElastikError`` as its
status, body and headers. It never opens a database.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from elastik import __version__

from . import auth, paths, sse
from .conditionals import BODY_IF_MATCH_MISSING, Conditions
from .config import CoreConfig
from .errors import (
    BadRequest,
    ElastikError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    StorageFailure,
    Unauthorized,
)
from .headerpolicy import HeaderPolicy, content_type_value
from .model import EngineAPI, Idempotency, Precondition, World, WriteResult
from .ranges import content_range, parse_range

log = logging.getLogger("elastik.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

VERSION_LINE = f"elastik-core {__version__} (python)\n".encode()
ROOT_BODY = VERSION_LINE + b"try: curl /proc/worlds\n"

TEXT = (b"content-type", b"text/plain; charset=utf-8")
ALLOW_READ = b"GET, HEAD, OPTIONS"
ALLOW_LISTEN = b"GET, OPTIONS"
ALLOW_WORLD = b"GET, HEAD, PUT, POST, DELETE, OPTIONS"
VARY = (b"vary", b"Authorization")
NOSNIFF = (b"x-content-type-options", b"nosniff")
CL0 = (b"content-length", b"0")
LINK_COLLECTION = (b"link", b'</proc/worlds>; rel="collection"')
ACCEPT_RANGES = (b"accept-ranges", b"bytes")
REPLAYED = (b"idempotency-replayed", b"true")

# Routes
R_ROOT, R_VERSION, R_PROC, R_AUDIT, R_OTHER_PROC, R_LISTEN, R_WORLD = range(7)
_PROC_FILES = {b"worlds", b"du", b"df", b"pool"}
_ALLOW = {
    R_ROOT: ALLOW_READ,
    R_VERSION: ALLOW_READ,
    R_PROC: ALLOW_READ,
    R_AUDIT: ALLOW_READ,
    R_OTHER_PROC: ALLOW_READ,
    R_LISTEN: ALLOW_LISTEN,
    R_WORLD: ALLOW_WORLD,
}
# Routes whose path is captured (and so must be valid UTF-8 once percent-decoded, else 400
# before any method check): raw prefix length to skip and the parameter name in the body.
_CAPTURED = {R_WORLD: (1, "world"), R_LISTEN: (8, "pattern"), R_AUDIT: (12, "audit_path")}
_METHODS = {
    ALLOW_READ: frozenset({"GET", "HEAD", "OPTIONS"}),
    ALLOW_LISTEN: frozenset({"GET", "OPTIONS"}),
    ALLOW_WORLD: frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"}),
}

# Request headers the handlers look at; only the first occurrence of each is kept.
_WANTED = frozenset(
    {
        b"authorization",
        b"content-length",
        b"range",
        b"if-match",
        b"if-none-match",
        b"if-range",
        b"idempotency-key",
        b"last-event-id",
        b"content-type",
    }
)
_CONDITIONAL = (b"if-match", b"if-none-match", b"if-range")
IDEMPOTENCY_KEY_MAX = 255
BODY_BAD_IDEMPOTENCY_KEY = b"bad request: invalid idempotency key\n"
# GET header blocks remembered per representation; bounded because world names come from
# clients. 4096 entries of ~300 bytes is ~1 MiB; a miss only costs rebuilding one block.
_HEADER_CACHE_MAX = 4096


# Bytes that must never reach a header value (uvicorn's check, which ElastikCycle skips).
_UNSAFE_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _safe(value: str) -> bytes:
    """Header value from engine data (audit details): unsafe bytes become ``?``."""
    raw = value.encode("utf-8", "replace")
    return _UNSAFE_VALUE.sub(b"?", raw) if _UNSAFE_VALUE.search(raw) else raw


# Canonical world paths remembered per raw request path (valid ones only); bounded because
# paths come from clients. Canonicalization is pure, so a hit is always correct.
_PATH_CACHE_MAX = 4096


_STATUSES = frozenset(s.value for s in HTTPStatus)


class _Date:
    """The IMF-fixdate ``date`` header value, formatted at most once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


class ClientGone(Exception):
    """The client disconnected while we were reading its body."""


def route(raw: bytes) -> int:
    if raw == b"/":
        return R_ROOT
    if raw.startswith(b"/proc"):
        if raw == b"/proc":
            return R_OTHER_PROC
        if raw[5:6] == b"/":
            rest = raw[6:]
            if not rest:
                return R_WORLD  # "/proc/" is a reserved root through the world route
            if rest == b"version":
                return R_VERSION
            if rest in _PROC_FILES:
                return R_PROC
            if rest.startswith(b"audit/") and len(rest) > 6:
                return R_AUDIT
            return R_OTHER_PROC
    if raw.startswith(b"/listen/") and len(raw) > 8:
        return R_LISTEN
    return R_WORLD


def fingerprint(
    method: str,
    world: str,
    body: bytes,
    ctype: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> str:
    """sha256 over method, world, body and (PUT) representation metadata, length-framed."""
    h = hashlib.sha256()
    for part in (method, world, ctype if ctype is not None else "\x00none"):
        raw = part.encode()
        h.update(b"%d:" % len(raw))
        h.update(raw)
    h.update(b"%d:" % len(headers))
    for name, value in headers:
        for raw in (name.encode(), value.encode()):
            h.update(b"%d:" % len(raw))
            h.update(raw)
    h.update(b"%d:" % len(body))
    h.update(body)
    return h.hexdigest()


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes | memoryview = b""):
        self.status = status
        self.headers = headers
        self.body = body


def _first(headers: Headers) -> dict[bytes, bytes]:
    """The request headers the handlers look at, first occurrence of each."""
    first: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _WANTED and name not in first:
            first[name] = value
    return first


def _missing(cond: Conditions | None) -> ElastikError:
    """§8: If-Match against a missing world is 412, whatever the engine checks first."""
    if cond is not None and cond.if_match is not None:
        return PreconditionFailed(BODY_IF_MATCH_MISSING)
    return NotFound()


def _write_response(world: str, result: WriteResult) -> Response:
    out: Headers = [TEXT]
    if result.etag is not None:
        out.append((b"etag", b'"' + result.etag.encode() + b'"'))
    if result.status == 201:
        out.append((b"location", paths.encode_location(world)))
    if result.replayed:
        out.append(REPLAYED)
    return Response(result.status, out)


class App:
    """``App(engine, config)`` is the ASGI callable ``python -m elastik run`` serves."""

    def __init__(self, engine: EngineAPI, config: CoreConfig, hub: sse.ListenHub | None = None):
        self.engine = engine
        self.config = config
        self.tokens = auth.Tokens(
            read=config.read_token.encode() if config.read_token else None,
            write=config.write_token.encode() if config.write_token else None,
            approve=config.approve_token.encode() if config.approve_token else None,
        )
        self.policy = HeaderPolicy(config.persist_headers, config.deny_headers)
        self.max_body = config.max_world_bytes
        self.hub = hub or sse.ListenHub(config.listen_replay_max, config.max_listen_connections)
        engine.hooks.on_change.append(self.hub.on_change)
        self.request_id = 0
        self.date = _Date()
        self._get_headers: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], Headers] = {}
        self._paths: dict[bytes, str] = {}
        self.trace = config.trace_pipeline

    # ------------------------------------------------------------------ ASGI entry
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        start = time.perf_counter_ns()
        ext = scope.get("extensions") or {}
        bare = ext.get("elastik.bare")
        if bare:  # protocol-level rejections (414/431) carry no elastik headers
            await self._send(
                send, bare["status"], [(b"connection", b"close"), CL0], b"", None, start
            )
            return
        self.request_id += 1
        rid = self.request_id
        method: str = scope["method"]
        raw: bytes = scope["raw_path"]
        if self.trace:
            send = self._traced(send, rid, start, method, raw, scope["headers"])
        try:
            handled = self._handle(method, raw, scope["headers"], None, receive)
            if handled is None:  # /listen: a stream, not a response
                await self._listen(raw, _first(scope["headers"]), receive, send, rid, start)
                return
            resp = handled if type(handled) is Response else await handled  # type: ignore[misc]
        except ElastikError as exc:
            resp = self._error(exc)
        except ClientGone:
            return
        except Exception:
            log.exception("internal error on %s %r", method, raw[:200])
            resp = self._error(StorageFailure())
        if resp.body or resp.status not in (204, 304):
            resp.headers.append((b"content-length", b"%d" % len(resp.body)))
        await self._send(send, resp.status, resp.headers, resp.body, rid, start)

    def respond_now(
        self, method: str, raw: bytes, headers: Headers, body: bytes
    ) -> Response | Coroutine[Any, Any, Response] | None:
        """The answer to a request whose body is already here, without an ASGI cycle.

        The HTTP protocol (serve.py) calls this before it would set up an ASGI cycle. Most
        requests (reads, memory writes, every refusal) are answered right here: a
        ``Response`` with exactly the headers ``__call__`` would send. A request that has
        to wait (a durable write, an audit) gets a coroutine that produces that Response
        and never raises. ``None`` means the ASGI path must serve it (/listen, tracing
        on); then nothing has happened yet.
        """
        if self.trace:
            return None
        start = time.perf_counter_ns()
        try:
            handled = self._handle(method, raw, headers, body, None)
            if handled is None:
                return None
        except ElastikError as exc:
            handled = self._error(exc)
        except Exception:
            log.exception("internal error on %s %r", method, raw[:200])
            handled = self._error(StorageFailure())
        self.request_id += 1
        if type(handled) is Response:
            return self._finish(handled, self.request_id, start)
        return self._finish_later(handled, method, raw, self.request_id, start)  # type: ignore[arg-type]

    async def _finish_later(
        self,
        pending: Coroutine[Any, Any, Response],
        method: str,
        raw: bytes,
        rid: int,
        start: int,
    ) -> Response:
        try:
            resp = await pending
        except ElastikError as exc:
            resp = self._error(exc)
        except Exception:
            log.exception("internal error on %s %r", method, raw[:200])
            resp = self._error(StorageFailure())
        return self._finish(resp, rid, start)

    def _finish(self, resp: Response, rid: int, start: int) -> Response:
        """The headers every answer carries (as ``__call__`` and ``_send`` add them)."""
        h = resp.headers
        if resp.body or resp.status not in (204, 304):
            h.append((b"content-length", b"%d" % len(resp.body)))
        h.append((b"x-request-id", b"%d" % rid))
        h.append((b"x-elapsed-us", b"%d" % ((time.perf_counter_ns() - start) // 1000)))
        h.append(VARY)
        h.append(NOSNIFF)
        h.append((b"date", self.date.get()))
        return resp

    def _handle(
        self, method: str, raw: bytes, headers: Headers, body: bytes | None, receive: Receive | None
    ) -> Response | Coroutine[Any, Any, Response] | None:
        """Route and answer one request: a ``Response`` when it is known without waiting, a
        coroutine that produces it otherwise, ``None`` for /listen. Raises ``ElastikError``.

        ``body`` is the whole request body when the caller already has it; ``None`` means
        it is still to be read from ``receive``. Nothing is changed before a coroutine is
        returned, so a caller may drop one unstarted.
        """
        if raw == b"*":
            return Response(404, [])
        rt = route(raw)
        if b"%" in raw and rt in _CAPTURED:
            # The captured path is decoded before method routing (even for OPTIONS).
            skip, param = _CAPTURED[rt]
            paths.decode_utf8(raw[skip:], param)
        allow = _ALLOW[rt]
        if method not in _METHODS[allow]:
            raise MethodNotAllowed(headers=[(b"allow", allow)])
        if method == "OPTIONS":
            return Response(204, [TEXT, (b"allow", allow)])
        if rt == R_WORLD:
            return self._world(method, raw, _first(headers), headers, body, receive)
        if rt == R_LISTEN:
            return None
        if rt == R_ROOT:
            return Response(200, [TEXT], ROOT_BODY)
        if rt == R_VERSION:
            return Response(200, [TEXT], VERSION_LINE)
        if rt == R_PROC:
            auth.require_read(self.tokens, auth.credential(_first(headers).get(b"authorization")))
            return Response(200, [TEXT], self._proc(raw[6:]))
        if rt == R_AUDIT:
            return self._audit(raw, _first(headers))
        raise NotFound()

    async def _send(
        self,
        send: Send,
        status: int,
        headers: Headers,
        body: bytes | memoryview,
        rid: int | None,
        start: int,
    ) -> None:
        if rid is not None:
            headers.append((b"x-request-id", b"%d" % rid))
            headers.append((b"x-elapsed-us", b"%d" % ((time.perf_counter_ns() - start) // 1000)))
            headers.append(VARY)
            headers.append(NOSNIFF)
        headers.append((b"date", self.date.get()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _traced(
        send: Send, rid: int, start: int, method: str, raw: bytes, headers: Headers
    ) -> Send:
        """ELASTIK_TRACE_PIPELINE: a Received line now and a Done line with the status."""

        def line(stage: str, detail: str) -> None:
            ms = (time.perf_counter_ns() - start) / 1e6
            sys.stderr.write(f"[req-{rid:<3} +{ms:7.3f}ms] {stage:<14} {detail}\n")

        size = next((v.decode("latin-1") for n, v in headers if n == b"content-length"), "0")
        line("Received", f"{method} {raw.decode('latin-1')[1:]} {size}B")

        async def traced(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                phrase = HTTPStatus(status).phrase if status in _STATUSES else ""
                ms = (time.perf_counter_ns() - start) / 1e6
                line("Done", f"status={status} {phrase} total={ms:.3f}ms")
            await send(message)

        return traced

    @staticmethod
    def _error(exc: ElastikError) -> Response:
        if exc.status == 404 and not exc.headers:
            return Response(404, [TEXT], exc.body)
        return Response(exc.status, [TEXT, *exc.headers], exc.body)

    # ------------------------------------------------------------------ worlds
    def _world(
        self,
        method: str,
        raw: bytes,
        first: dict[bytes, bytes],
        headers_in: Headers,
        body: bytes | None,
        receive: Receive | None,
    ) -> Response | Coroutine[Any, Any, Response]:
        world = self._paths.get(raw)
        if world is None:
            world = paths.world_path(raw)
            if len(self._paths) >= _PATH_CACHE_MAX:
                self._paths.clear()
            self._paths[raw] = world
        if method == "GET" or method == "HEAD":
            auth.require_read(self.tokens, auth.credential(first.get(b"authorization")))
            return self._get(method, world, first, headers_in)
        # Writes: body limit (413) before authentication (401), as the reference does.
        if method == "DELETE":
            body = b""
        elif body is None:
            assert receive is not None
            return self._read_then_write(method, world, first, headers_in, receive)
        elif len(body) > self.max_body:
            raise PayloadTooLarge()
        return self._world_write(method, world, first, headers_in, body)

    async def _read_then_write(
        self,
        method: str,
        world: str,
        first: dict[bytes, bytes],
        headers_in: Headers,
        receive: Receive,
    ) -> Response:
        body = await self._read_body(first, receive)
        resp = self._world_write(method, world, first, headers_in, body)
        return resp if type(resp) is Response else await resp  # type: ignore[misc]

    def _world_write(
        self, method: str, world: str, first: dict[bytes, bytes], headers_in: Headers, body: bytes
    ) -> Response | Coroutine[Any, Any, Response]:
        cred = auth.credential(first.get(b"authorization"))
        if method == "DELETE":
            auth.require(self.tokens, cred, auth.APPROVE, auth.BODY_DELETE)
        else:
            tier = auth.APPROVE if paths.needs_approve(world) else auth.WRITE
            auth.require(self.tokens, cred, tier, auth.BODY_WRITE)
        if world == paths.LEDGER:
            raise Unauthorized(auth.BODY_LEDGER)  # D4: the delete ledger is append-only
        key = first.get(b"idempotency-key")
        if key is not None and not (0 < len(key) <= IDEMPOTENCY_KEY_MAX):
            raise BadRequest(BODY_BAD_IDEMPOTENCY_KEY)
        precondition = None
        cond: Conditions | None = None
        if b"if-match" in first or b"if-none-match" in first:
            cond = Conditions.from_headers(headers_in)
            precondition = cond.precondition()
        ctype = ""
        persisted: tuple[tuple[str, str], ...] = ()
        if method == "PUT":
            ctype = content_type_value(first.get(b"content-type"))
            persisted = self.policy.persisted(headers_in)
        if key is None and method != "DELETE":
            try:
                now = self.engine.write_now(
                    "put" if method == "PUT" else "append", world, body, ctype, persisted,
                    precondition,
                )  # fmt: skip
            except NotFound:
                raise _missing(cond) from None
            if now is not None:
                return _write_response(world, now)
        return self._write(method, world, body, ctype, persisted, key, precondition, cond)

    async def _write(
        self,
        method: str,
        world: str,
        body: bytes,
        ctype: str,
        persisted: tuple[tuple[str, str], ...],
        key: bytes | None,
        precondition: Precondition | None,
        cond: Conditions | None,
    ) -> Response:
        idem: Idempotency | None = None
        try:
            if method == "PUT":
                if key is not None:
                    fp = fingerprint(method, world, body, ctype, persisted)
                    idem = Idempotency(key.decode("latin-1"), fp)
                result = await self.engine.put(
                    world, body, ctype, persisted, precondition=precondition, idempotency=idem
                )
            else:
                if key is not None:
                    idem = Idempotency(key.decode("latin-1"), fingerprint(method, world, body))
                if method == "POST":
                    result = await self.engine.append(
                        world, body, precondition=precondition, idempotency=idem
                    )
                else:
                    result = await self.engine.delete(
                        world, precondition=precondition, idempotency=idem
                    )
        except NotFound:
            raise _missing(cond) from None
        return _write_response(world, result)

    async def _read_body(self, first: dict[bytes, bytes], receive: Receive) -> bytes:
        limit = self.max_body
        declared = first.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge()
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                total += len(chunk)
                if total > limit:
                    raise PayloadTooLarge()
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def _world_headers(self, w: World) -> Headers:
        # Memory ETags hash the body only, so the metadata is part of the key.
        key = (w.name, w.etag, w.content_type, w.headers)
        cached = self._get_headers.get(key)
        if cached is None:
            cached = [
                (b"content-type", w.content_type.encode()),
                ACCEPT_RANGES,
                (b"etag", b'"' + w.etag.encode() + b'"'),
                (b"link", b"</listen" + paths.encode_location(w.name) + b'>; rel="monitor"'),
                LINK_COLLECTION,
                *((n.encode(), v.encode()) for n, v in w.headers),
            ]
            if any(_UNSAFE_VALUE.search(v) for _n, v in cached) or any(
                _UNSAFE_VALUE.search(n) or not n for n, _v in cached
            ):
                log.error("stored representation of %r has unsafe header bytes", w.name)
                raise StorageFailure()
            if len(self._get_headers) >= _HEADER_CACHE_MAX:
                self._get_headers.clear()
            self._get_headers[key] = cached
        return cached

    def _get(
        self, method: str, world: str, first: dict[bytes, bytes], headers_in: Headers
    ) -> Response:
        w = self.engine.read(world)
        if w is None:
            raise NotFound()
        headers = list(self._world_headers(w))
        body = w.body
        if first.keys().isdisjoint(_CONDITIONAL) and b"range" not in first:
            return Response(200, headers, body)
        cond = Conditions.from_headers(headers_in)
        if cond.not_modified(w.etag):
            if method == "HEAD":
                headers.append(CL0)
            return Response(304, headers)
        range_value = first.get(b"range")
        if range_value is not None and cond.range_applies(w.etag):
            span = parse_range(range_value, len(body))
            if span is not None:
                lo, hi = span
                headers.append((b"content-range", content_range(lo, hi, len(body))))
                return Response(206, headers, memoryview(body)[lo : hi + 1])  # no copy
        return Response(200, headers, body)

    # ------------------------------------------------------------------ /proc
    def _proc(self, name: bytes) -> bytes:
        if name == b"worlds":
            return b"".join(w.encode() + b"\n" for w, _size in self.engine.list_worlds())
        if name == b"du":
            return b"".join(b"%s\t%d\n" % (w.encode(), n) for w, n in self.engine.list_worlds())
        if name == b"df":
            u = self.engine.usage()
            if u.storage_quota:
                quota = b"%d" % u.storage_quota
                avail = b"%d" % max(0, u.storage_quota - u.storage_used)
            else:
                quota = avail = b"unlimited"
            return (
                b"storage\t%d\t%s\t%s\n" % (u.storage_used, quota, avail)
                + b"memory\t%d\t%d\t%d\n"
                % (u.memory_used, u.memory_limit, max(0, u.memory_limit - u.memory_used))
                + b"worlds\t%d\tunlimited\tunlimited\n" % u.worlds
            )
        return b"".join(
            b"%s %d %s\n" % (s.name.encode(), s.value, s.kind.encode())
            for s in self.engine.pool_stats()
        )

    async def _audit(self, raw: bytes, first: dict[bytes, bytes]) -> Response:
        world = paths.audit_world(raw[len(b"/proc/audit/") :])
        auth.require_read(self.tokens, auth.credential(first.get(b"authorization")))
        r = await self.engine.verify(world)
        if r.outcome == "valid":
            return Response(
                200,
                [
                    TEXT,
                    (b"x-audit-valid", b"true"),
                    (b"x-audit-events", b"%d" % r.events),
                    (b"x-audit-genesis", b"hmac-" + _safe(r.genesis)),
                    (b"x-audit-latest", b"hmac-" + _safe(r.latest)),
                ],
            )
        if r.outcome == "memory":
            return Response(204, [TEXT, (b"x-audit-valid", b"n/a")])
        if r.outcome == "missing":
            raise NotFound()
        return Response(
            409,
            [
                TEXT,
                (b"x-audit-valid", b"false"),
                (b"x-audit-break-at", _safe(r.break_at)),
                (b"x-audit-expected", _safe(r.expected)),
                (b"x-audit-actual", _safe(r.actual)),
            ],
        )

    # ------------------------------------------------------------------ /listen
    async def _listen(
        self,
        raw: bytes,
        first: dict[bytes, bytes],
        receive: Receive,
        send: Send,
        rid: int,
        start: int,
    ) -> None:
        pattern = paths.listen_pattern(raw[len(b"/listen/") :])
        auth.require_read(
            self.tokens, auth.credential(first.get(b"authorization")), auth.BODY_LISTEN
        )
        last = sse.parse_last_event_id(first.get(b"last-event-id"))
        listener = self.hub.subscribe(pattern, last)
        headers: Headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", b"%d" % rid),
            (b"x-elapsed-us", b"%d" % ((time.perf_counter_ns() - start) // 1000)),
            VARY,
            NOSNIFF,
            (b"date", self.date.get()),
        ]
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": headers,
                    "elastik.stream": True,
                }
            )
        except BaseException:
            self.hub.unsubscribe(listener)
            raise
        await sse.stream(listener, self.hub, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
