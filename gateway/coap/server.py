"""The CoAP front door: turns aiocoap requests into calls of the request flow.

One object (``CoapSite``) serves every path: aiocoap's message layer (below it) does
piggybacked ACKs, NON-for-NON and deduplication; this module does methods, options,
authorization tokens (option 65001), conditionals, Block1/Block2, Observe and the
mapping of core answers to CoAP codes (``mapping.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.numbers.types import CON

from ..auth import Forbidden, Grant, RateLimited, Unauthorized
from ..counters import Counters
from ..flow import GatewayError, Method, OutboxFull, Response, UpstreamUnavailable
from ..observe import ObserveHub
from ..pipeline import RequestFlow
from . import mapping
from .blockwise import Block1Spool, Block2Cache, BlockError, block_slice
from .datagram import MAX_DATAGRAM
from .idemkeys import ExchangeKeys

log = logging.getLogger("gateway.coap")

AUTH_OPTION = 65001
# Critical options (odd numbers) the gateway understands; any other critical option gets
# 4.02 Bad Option (RFC 7252 §5.4.1). aiocoap itself passes unknown options through.
KNOWN_CRITICAL = frozenset({1, 3, 5, 7, 11, 15, 17, 23, 27, 35, 39, AUTH_OPTION})
PROXY_OPTIONS = frozenset({35, 39})
METHODS: dict[int, Method] = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}


_CODES: dict[str, Code] = {}  # "2.04" -> Code, filled as answers are made


def make_message(
    code: str,
    payload: bytes = b"",
    *,
    content_format: int | None = None,
    etag: bytes | None = None,
    max_age: int | None = None,
) -> Message:
    numeric = _CODES.get(code)
    if numeric is None:
        numeric = _CODES[code] = Code(mapping.parse_code(code))
    msg = Message(code=numeric, payload=payload)
    if content_format is not None:
        msg.opt.content_format = content_format
    if etag is not None:
        msg.opt.etag = etag
    if max_age is not None:
        msg.opt.max_age = max_age
    return msg


def error_message(code: str, payload: bytes, max_age: int | None = None) -> Message:
    # §18.4: every error answer carries Content-Format 0 (empty value) and a text payload.
    return make_message(code, payload, content_format=0, max_age=max_age)


def datagram_size(msg: Message, token: bytes) -> int:
    n = 4 + len(token) + len(msg.opt.encode())
    return n + (1 + len(msg.payload) if msg.payload else 0)


def _host_port(remote: Any) -> tuple[str, int]:
    addr = getattr(remote, "sockaddr", None)
    if addr is None:
        return repr(remote), 0
    return str(addr[0]), int(addr[1])


class CoapSite:
    """aiocoap server site: ``render_to_pipe`` is the only entry point aiocoap calls."""

    def __init__(
        self,
        flow: RequestFlow,
        hub: ObserveHub | None,
        counters: Counters,
        *,
        max_in_flight: int = 1024,
        max_observations: int = 256,
        max_block1_bytes: int = 1 << 20,
        max_block_transfers: int = 64,
        retry_after: int = 5,
        exchange_keys: ExchangeKeys | None = None,
    ) -> None:
        self.flow = flow
        self.hub = hub
        self.counters = counters
        self.max_in_flight = max_in_flight
        self.max_observations = max_observations
        self.retry_after = retry_after
        self.in_flight = 0
        self.closing = False
        self.observations: set[int] = set()
        self.block1 = Block1Spool(max_block_transfers, max_block1_bytes)
        self.block2 = Block2Cache(max_block_transfers)
        self._obs_seq = 0
        self.exchange_keys = exchange_keys if exchange_keys is not None else ExchangeKeys()
        self._idle = asyncio.Event()
        self._idle.set()
        counters.gauge("in_flight", lambda: self.in_flight)
        counters.gauge("observations", lambda: len(self.observations))
        counters.gauge("block1_transfers", lambda: len(self.block1))
        counters.gauge("block2_cached", lambda: len(self.block2))
        counters.gauge("idempotency_exchanges", lambda: len(self.exchange_keys))

    # -- aiocoap entry point ---------------------------------------------------------
    async def render_to_pipe(self, pipe: Any) -> None:
        req: Message = pipe.request
        self.counters.inc("requests")
        if self.closing or self.in_flight >= self.max_in_flight:
            self.counters.inc("refused.busy")
            payload = b"shutting down\n" if self.closing else b"too many coap requests\n"
            pipe.add_response(error_message("5.03", payload, max_age=1), is_last=True)
            return
        self.in_flight += 1
        self._idle.clear()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1
                if self.in_flight == 0:
                    self._idle.set()

        try:
            await self._serve(pipe, req, release)
        except GatewayError as exc:
            pipe.add_response(self._gateway_error(exc, req), is_last=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.counters.inc("internal_errors")
            log.exception("CoAP request failed")
            pipe.add_response(error_message("5.00", b"internal error\n"), is_last=True)
        finally:
            release()

    async def drain(self, timeout: float) -> bool:
        self.closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    # -- request handling --------------------------------------------------------------
    async def _serve(self, pipe: Any, req: Message, release: Any) -> None:
        method = METHODS.get(int(req.code))
        if method is None:
            self.counters.inc("refused.method")
            pipe.add_response(error_message("4.05", b"method not allowed\n"), is_last=True)
            return
        bad = self._bad_option(req)
        if bad is not None:
            pipe.add_response(bad, is_last=True)
            return
        path = tuple(req.opt.uri_path)
        if path and path[0] == ".well-known":
            pipe.add_response(self._well_known(method, path), is_last=True)
            return
        try:
            world = mapping.world_from_uri_path(path)
        except mapping.BadWorldName:
            self.counters.inc("refused.bad_world_name")
            pipe.add_response(error_message("4.00", b"bad world name\n"), is_last=True)
            return
        auth = req.opt.get_option(AUTH_OPTION)
        token = bytes(auth[-1].value) if auth else None  # §18.3: the last one counts
        if method == "GET":
            await self._get(pipe, req, world, token, release)
        else:
            pipe.add_response(await self._write(req, method, world, token), is_last=True)

    def _bad_option(self, req: Message) -> Message | None:
        for opt in req.opt.option_list():
            number = int(opt.number)
            if number & 1 and number not in KNOWN_CRITICAL:
                self.counters.inc("refused.bad_option")
                return error_message("4.02", b"bad option\n")
            if number in PROXY_OPTIONS:
                self.counters.inc("refused.proxy")
                return error_message("5.05", b"proxying not supported\n")
        return None

    def _well_known(self, method: str, path: tuple[str, ...]) -> Message:
        if method != "GET":
            return error_message("4.05", b"method not allowed\n")
        if path == (".well-known", "core"):
            links = ",".join(
                f'</{ns}>;rt="elastik.namespace";ct="0 42 50 60";obs'
                for ns in ("home", "var", "tmp", "dev", "sys", "etc", "lib", "boot", "usr")
            )
            links += ',</.well-known/gateway/stats>;ct=0;title="gateway counters"'
            return make_message("2.05", links.encode(), content_format=40)
        if path == (".well-known", "gateway", "stats"):
            return make_message("2.05", self.counters.render().encode(), content_format=0)
        return error_message("4.04", b"not found\n")

    def _gateway_error(self, exc: GatewayError, req: Message) -> Message:
        is_get = int(req.code) == 1
        if isinstance(exc, Unauthorized):
            payload = b"unauthorized\n"
        elif isinstance(exc, Forbidden):
            payload = b"forbidden\n"
        elif isinstance(exc, RateLimited):
            payload = b"too many requests\n"
        elif isinstance(exc, OutboxFull):
            payload = b"outbox full\n"
        elif isinstance(exc, UpstreamUnavailable):
            payload = b"core unavailable\n"
        else:
            payload = b"storage error\n" if is_get else b"error\n"
        self.counters.inc(f"answered.{exc.coap_code}")
        max_age = self.retry_after if type(exc) is UpstreamUnavailable else exc.max_age
        return error_message(exc.coap_code, payload, max_age=max_age)

    def _from_status(self, resp: Response, method: str) -> Message:
        code, payload, is_error = mapping.code_for_status(resp.status, method)
        if is_error:
            max_age = None
            if code == "5.03":
                ra = resp.headers.get("retry-after", "")
                max_age = int(ra) if ra.isdigit() else self.retry_after
            self.counters.inc(f"answered.{code}")
            return error_message(code, payload, max_age=max_age)
        etag = resp.headers.get("etag")
        return make_message(code, etag=mapping.short_etag(etag) if etag else None)

    # -- writes ------------------------------------------------------------------------
    async def _write(
        self, req: Message, method: Method, world: str, token: bytes | None
    ) -> Message:
        body = bytes(req.payload)
        block1 = req.opt.block1
        if block1 is not None:
            if block1.block_number == 0:
                # Refuse before buffering: an unauthorized device cannot fill the spool.
                self.flow.authorize(method, world, token)
            key = (self._endpoint(req), method, world)
            szx = min(block1.size_exponent, 6)
            try:
                whole = self.block1.feed(
                    key, block1.block_number, block1.more, 1 << (szx + 4), body
                )
            except BlockError as exc:
                self.counters.inc(f"block1.{exc.code}")
                msg = error_message(exc.code, (str(exc) + "\n").encode())
                if exc.code == "4.13":
                    msg.opt.size1 = self.block1.max_bytes
                return msg
            if whole is None:
                msg = make_message("2.31")
                msg.opt.block1 = (block1.block_number, True, szx)
                return msg
            body = whole
        grant = self.flow.authorize(method, world, token)
        headers: dict[str, str] = {}
        if method == "PUT":
            headers["content-type"] = mapping.content_type_for_format(req.opt.content_format)
        cond = await self._conditionals(req, world, grant)
        if isinstance(cond, Message):
            return cond
        headers.update(cond)
        host, port = _host_port(req.remote)
        headers["idempotency-key"] = self.exchange_keys.key(
            host, port, req.mid, bytes(req.token), time.time()
        )
        resp = await self.flow.forward(
            method, world, grant, body=body if method != "DELETE" else b"", headers=headers
        )
        msg = self._from_status(resp, method)
        if block1 is not None:
            msg.opt.block1 = (block1.block_number, False, min(block1.size_exponent, 6))
        return msg

    async def _conditionals(
        self, req: Message, world: str, grant: Grant
    ) -> dict[str, str] | Message:
        """If-Match / If-None-Match options -> HTTP conditional headers (4.12 if they
        cannot hold). CoAP ETags are 8-byte digests of the core's ETags, so a short
        If-Match is resolved with a HEAD and sent on as the full ETag: the core still
        makes the final, atomic check."""
        out: dict[str, str] = {}
        if req.opt.if_none_match:
            out["if-none-match"] = "*"
        values = [bytes(o.value) for o in req.opt.get_option(OptionNumber.IF_MATCH)]
        if not values:
            return out
        if any(len(v) == 0 for v in values):
            out["if-match"] = "*"
            return out
        longs = [t for t in (mapping.http_etag_from_option(v) for v in values) if t]
        if longs:
            out["if-match"] = ", ".join(longs)
            return out
        head = await self.flow.forward("HEAD", world, grant)
        current = head.headers.get("etag") if head.status == 200 else None
        if head.status not in (200, 404):
            return self._from_status(head, "GET")
        if current is None or mapping.short_etag(current) not in values:
            self.counters.inc("answered.4.12")
            return error_message("4.12", b"precondition failed\n")
        out["if-match"] = current
        return out

    # -- reads -------------------------------------------------------------------------
    async def _fetch(self, world: str, grant: Grant) -> Response:
        return await self.flow.forward("GET", world, grant)

    def _render_get(
        self, req: Message, resp: Response, world: str, *, observe: int | None = None
    ) -> Message:
        if resp.status != 200:
            return self._from_status(resp, "GET")
        etag_hdr = resp.headers.get("etag")
        etag = mapping.short_etag(etag_hdr) if etag_hdr else None
        cf = mapping.format_for_content_type(resp.headers.get("content-type"))
        accept = req.opt.accept
        if accept is not None and accept != cf:
            # RFC 7252 §5.10.4: Accept is critical; we cannot convert representations.
            self.counters.inc("answered.4.06")
            return error_message("4.06", b"not acceptable\n")
        if etag is not None and etag in [bytes(o.value) for o in req.opt.get_option(4)]:
            msg = make_message("2.03", etag=etag)  # RFC 7252 §5.10.6.2 validation
            if observe is not None:
                msg.opt.observe = observe
            return msg
        body = resp.body
        requested = req.opt.block2
        token = bytes(req.token)
        if requested is None or (requested.block_number == 0 and requested.size_exponent >= 6):
            msg = make_message("2.05", body, content_format=cf, etag=etag)
            if observe is not None:
                msg.opt.observe = observe
            if datagram_size(msg, token) <= MAX_DATAGRAM:
                return msg
            # Keep the reference's largest single-datagram answer (§18.4): drop the ETag
            # before going block-wise.
            msg.opt.etag = None
            if datagram_size(msg, token) <= MAX_DATAGRAM:
                return msg
        num = requested.block_number if requested is not None else 0
        szx = min(requested.size_exponent, 6) if requested is not None else 6
        try:
            chunk, more = block_slice(body, num, szx)
        except ValueError:
            return error_message("4.02", b"block out of range\n")
        if more:
            self.block2.put((self._endpoint(req), world), resp)
        msg = make_message("2.05", chunk, content_format=cf, etag=etag)
        msg.opt.block2 = (num, more, szx)
        if num == 0:
            msg.opt.size2 = len(body)
        if observe is not None:
            msg.opt.observe = observe
        return msg

    async def _get(
        self, pipe: Any, req: Message, world: str, token: bytes | None, release: Any
    ) -> None:
        grant = self.flow.authorize("GET", world, token)
        block2 = req.opt.block2
        if block2 is not None and block2.block_number > 0:
            cached = self.block2.get((self._endpoint(req), world))
            if isinstance(cached, Response):
                self.counters.inc("block2_cache_hits")
                pipe.add_response(self._render_get(req, cached, world), is_last=True)
                return
        wants_observe = req.opt.observe == 0 and self.hub is not None
        if wants_observe and len(self.observations) >= self.max_observations:
            self.counters.inc("refused.observe_table_full")
            wants_observe = False  # RFC 7641 §4.1: answer without Observe
        if not wants_observe:
            resp = await self._fetch(world, grant)
            pipe.add_response(self._render_get(req, resp, world), is_last=True)
            return
        assert self.hub is not None
        obs_id = id(pipe)
        self.observations.add(obs_id)
        try:
            async with self.hub.watch(world, grant.headers) as watch:
                resp = await self._fetch(world, grant)
                first = self._render_get(req, resp, world, observe=self._next_seq())
                if resp.status != 200:
                    first.opt.observe = None
                    pipe.add_response(first, is_last=True)
                    return
                self.counters.inc("observe_registrations")
                pipe.add_response(first, is_last=False)
                release()  # a registered observation is not an in-flight request
                last_etag = resp.headers.get("etag")
                while True:
                    await watch.wait()
                    if watch.failed_status is not None:
                        pipe.add_response(
                            self._from_status(Response(watch.failed_status), "GET"), is_last=True
                        )
                        return
                    try:
                        resp = await self._fetch(world, grant)
                    except UpstreamUnavailable:
                        continue  # the stream reconnects and wakes us again
                    if resp.status == 200 and resp.headers.get("etag") == last_etag:
                        continue
                    self.counters.inc("observe_notifications")
                    if resp.status != 200:
                        # RFC 7641 §3.2: a non-2.xx notification ends the observation.
                        pipe.add_response(self._render_get(req, resp, world), is_last=True)
                        return
                    last_etag = resp.headers.get("etag")
                    note = self._render_get(req, resp, world, observe=self._next_seq())
                    # Notifications are confirmable (RFC 7641 §4.5): a device that has
                    # gone or forgotten the token answers RST or nothing, which ends the
                    # observation instead of leaving it in the table forever.
                    note.mtype = CON
                    pipe.add_response(note, is_last=False)
        finally:
            self.observations.discard(obs_id)

    def _next_seq(self) -> int:
        self._obs_seq = (self._obs_seq + 1) & 0xFFFFFF
        return self._obs_seq

    @staticmethod
    def _endpoint(req: Message) -> Any:
        return getattr(req.remote, "blockwise_key", None) or repr(req.remote)
