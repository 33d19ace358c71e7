"""aiocoap plumbing for the CoAP front door: the UDP transport with the datagram
pre-filter in front of aiocoap's parser, and a message manager whose deduplication table
is bounded.

aiocoap's own ``MessageManager`` keeps every (endpoint, MID) for EXCHANGE_LIFETIME
(247 s) with one timer each and no bound, so a flood of distinct datagrams grows it
without limit. ``BoundedMessageManager`` keeps the same semantics (a duplicate CON gets
the stored answer again, or nothing while the first is still being served) in an LRU
table of ``exchange_cache`` entries with lazy expiry.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from typing import Any

from aiocoap.message import Direction, Message
from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import ACK, CON, NON
from aiocoap.pipe import error_to_message, run_driving_pipe
from aiocoap.protocol import Context
from aiocoap.tokenmanager import TokenManager
from aiocoap.transports.udp6 import MessageInterfaceUDP6, UDP6EndpointAddress
from aiocoap.util.asyncio.recvmsg import RecvmsgSelectorDatagramTransport

from ..counters import Counters
from . import datagram

log = logging.getLogger("gateway.coap")


class GatewayTuning(TransportTuning):
    # aiocoap sends an empty ACK and a separate response when an answer takes longer than
    # EMPTY_ACK_DELAY (0.1 s by default). Simple clients (the reference SDK's) read exactly
    # one datagram and expect the piggybacked answer, and the core answers in
    # milliseconds, so wait up to 1 s -- still well before a client's first retransmission
    # (ACK_TIMEOUT 2 s).
    EMPTY_ACK_DELAY = 1.0


TUNING = GatewayTuning()


class BoundedMessageManager(MessageManager):
    def __init__(self, token_manager: Any, *, capacity: int, counters: Counters) -> None:
        super().__init__(token_manager)
        self.capacity = capacity
        self.counters = counters
        # (remote, mid) -> [expires_at, stored response or None]
        self._exchanges: OrderedDict[tuple[Any, int], list[Any]] = OrderedDict()
        counters.gauge("exchange_cache_entries", lambda: len(self._exchanges))

    def __len__(self) -> int:
        return len(self._exchanges)

    def _deduplicate_message(self, message: Message) -> bool:
        key = (message.remote, message.mid)
        now = time.monotonic()
        entry = self._exchanges.get(key)
        if entry is not None and entry[0] >= now:
            self.counters.inc("duplicates")
            if message.mtype is CON and entry[1] is not None:
                self.counters.inc("duplicates_answered_from_cache")
                self._send_initially(entry[1])
            return True
        self._exchanges[key] = [now + message.transport_tuning.EXCHANGE_LIFETIME, None]
        self._exchanges.move_to_end(key)
        # Oldest entries go first: expired ones, then (under a flood) live ones -- a
        # retransmission of an evicted exchange is then still applied only once by the
        # core, thanks to the Idempotency-Key derived from (endpoint, MID, token).
        while self._exchanges:
            first_key, first = next(iter(self._exchanges.items()))
            if first[0] < now:
                del self._exchanges[first_key]
            elif len(self._exchanges) > self.capacity:
                del self._exchanges[first_key]
                self.counters.inc("exchange_cache_evictions")
            else:
                break
        return False

    def _store_response_for_duplicates(self, message: Message) -> None:
        entry = self._exchanges.get((message.remote, message.mid))
        if entry is not None:
            entry[1] = message


_FAST_CODES = frozenset({1, 2, 3, 4})


def _is_simple(message: Message) -> bool:
    if int(message.code) not in _FAST_CODES or message.mtype not in (CON, NON):
        return False
    opt = message.opt
    return (
        opt.observe is None
        and opt.block1 is None
        and opt.block2 is None
        and opt.no_response is None
    )


class _OneAnswer:
    """Stands in for an aiocoap Pipe when the site answers a plain request once."""

    __slots__ = ("request", "response")

    def __init__(self, request: Message) -> None:
        self.request = request
        self.response: Message | None = None

    def add_response(self, response: Message, is_last: bool = False) -> None:
        self.response = response


class GatewayContext(Context):
    """aiocoap Context without the per-request ``repr`` of the whole message that
    ``Context.render_to_pipe`` builds for the task name (an address lookup per request)."""

    def render_to_pipe(self, pipe: Any) -> None:
        run_driving_pipe(
            error_to_message(pipe, self.log), self._render_to_pipe(pipe), name="coap request"
        )


class Remote(UDP6EndpointAddress):
    """A device's address. Requests only ever come from unicast sources to our unicast
    socket (no multicast groups are joined), so skip aiocoap's per-message ipaddress
    parsing behind these two properties."""

    is_multicast = False
    is_multicast_locally = False

    def __init__(self, sockaddr: Any, interface: Any, *, pktinfo: Any = None) -> None:
        super().__init__(sockaddr, interface, pktinfo=pktinfo)
        # Hashed about a dozen times per request (dedup, piggyback and token tables).
        self._hash = hash(sockaddr[:-1])

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


class FilteringUDP6(MessageInterfaceUDP6):
    """udp6 transport with ``datagram.inspect`` in front of aiocoap's parser."""

    counters: Counters  # set right after creation, before any datagram can arrive

    def datagram_msg_received(self, data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        counters = self.counters
        counters.inc("datagrams")
        verdict = datagram.inspect(data)
        if verdict is not None:
            if verdict.reply is not None:
                counters.inc(f"rst.{verdict.reason}")
                try:
                    self.transport.sendmsg(verdict.reply, [], 0, address)
                except OSError:
                    counters.inc("send_errors")
            else:
                counters.inc(f"drop.{verdict.reason}")
            return
        pktinfo = None
        for level, ctype, cdata in ancdata:
            if level == 41 and ctype == 50:  # IPPROTO_IPV6, IPV6_PKTINFO
                pktinfo = cdata
        try:
            message = Message.decode(data, Remote(address, self, pktinfo=pktinfo))
        except Exception:  # UnparsableMessage, ValueError, ...: whatever aiocoap refuses
            counters.inc("drop.unparsable")
            return
        message.direction = Direction.INCOMING
        message.transport_tuning = TUNING
        try:
            if self.site is not None and _is_simple(message):
                self._fast(message)
            else:
                self._ctx.dispatch_message(message)
        except Exception:
            counters.inc("dispatch_errors")
            log.exception("dispatching a CoAP message failed")

    # -- ICMP errors ---------------------------------------------------------------------
    # A device that sleeps or goes away right after sending makes our answer (a separate
    # CON response, a retransmission, an Observe notification) meet "port unreachable".
    # aiocoap hands that to the message layer and re-raises whatever comes back, and an
    # exception out of these callbacks closes the datagram transport: the gateway would go
    # deaf for every device. One device's dead port must never do that, so the error is
    # counted and contained here.

    def datagram_errqueue_received(
        self, data: bytes, ancdata: Any, flags: int, address: Any
    ) -> None:
        self.counters.inc("icmp_errors")
        try:
            super().datagram_errqueue_received(data, ancdata, flags, address)
        except Exception:
            self.counters.inc("icmp_error_dispatch_failures")

    def error_received(self, exc: Exception) -> None:
        self.counters.inc("socket_errors")
        try:
            super().error_received(exc)
        except Exception:
            self.counters.inc("icmp_error_dispatch_failures")

    # -- fast path ----------------------------------------------------------------------
    # A plain request (no Observe, no Block1/Block2, no No-Response) is answered with one
    # datagram and needs none of aiocoap's token and pipe bookkeeping. For those the
    # transport does what aiocoap's message layer would -- deduplicate, then answer a CON
    # with a piggybacked ACK on its Message ID, or a NON with a NON under a new Message
    # ID -- and calls the same CoapSite code. That halves the per-request work of the
    # message layer, the gateway's largest cost after the core request itself.
    site: Any = None
    _tasks: set[asyncio.Task[None]]

    def _fast(self, message: Message) -> None:
        mman = self._ctx
        if mman._deduplicate_message(message):
            return
        task = asyncio.get_running_loop().create_task(self._answer(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: Message) -> None:
        mman = self._ctx
        acked = False
        timer = None
        if request.mtype is CON:
            # Like aiocoap: an answer not ready after EMPTY_ACK_DELAY gets an empty ACK
            # now (stopping the device's retransmissions and letting it send its next
            # request) and comes later as a separate confirmable response.
            def empty_ack() -> None:
                nonlocal acked
                acked = True
                self.counters.inc("separate_responses")
                mman._send_empty_ack(request.remote, request.mid, "answer not ready")

            timer = asyncio.get_running_loop().call_later(TUNING.EMPTY_ACK_DELAY, empty_ack)
        pipe = _OneAnswer(request)
        try:
            await self.site.render_to_pipe(pipe)
        finally:
            if timer is not None:
                timer.cancel()
        response = pipe.response
        if response is None or mman.message_interface is None:
            return
        response.token = request.token
        response.remote = request.remote
        try:
            if request.mtype is CON and acked:
                response.mtype = CON
                mman.send_message(response, lambda: None)
                return
            if request.mtype is CON:
                response.mtype = ACK
                response.mid = request.mid
            else:
                response.mtype = NON
                response.mid = mman._next_message_id()
            mman._store_response_for_duplicates(response)
            self.send(response)
        except Exception:  # socket closed under us while shutting down
            self.counters.inc("send_errors")


# Datagrams read per readiness event: a burst is drained in one callback (fewer trips
# through the event loop), bounded so one busy socket cannot starve everything else.
READS_PER_WAKEUP = 32


class ServerDatagramTransport(RecvmsgSelectorDatagramTransport):
    """aiocoap's recvmsg transport for the server socket, reading without the error queue.

    aiocoap's ``_read_ready`` first asks the socket's error queue (one more recvmsg, which
    fails with EAGAIN and a Python exception almost always), then reads one datagram. On
    our server socket IP(V6)_RECVERR is off (``_ignore_icmp_errors``), so the error queue is
    always empty: skip it, and drain up to READS_PER_WAKEUP datagrams per wakeup.
    """

    def _read_ready(self) -> None:
        sock = self._RecvmsgSelectorDatagramTransport__sock
        protocol = self._protocol
        for _ in range(READS_PER_WAKEUP):
            if sock is None or protocol is None:  # closed by a callback
                return
            try:
                data, ancdata, flags, addr = sock.recvmsg(self.max_size, 1024)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                protocol.error_received(exc)
                return
            protocol.datagram_msg_received(data, ancdata, flags, addr)
            sock = self._RecvmsgSelectorDatagramTransport__sock
            protocol = self._protocol


def _bound_socket(host: str, port: int) -> socket.socket:
    """An IPv6 UDP socket (IPv4 as v4-mapped) bound to HOST:PORT *without* SO_REUSEPORT.

    aiocoap's own server endpoint sets SO_REUSEPORT, which lets a second gateway bind the
    same port and silently take half of the devices' datagrams; we want "address in use".
    """
    infos = socket.getaddrinfo(
        host, port, socket.AF_INET6, socket.SOCK_DGRAM, 0, socket.AI_V4MAPPED
    )
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(infos[0][4])
    except BaseException:
        sock.close()
        raise
    return sock


def _ignore_icmp_errors(sock: Any) -> bool:
    """Turn off IP(V6)_RECVERR, which aiocoap turns on for its sockets.

    With it on, an ICMP "port unreachable" from a device that went to sleep right after
    sending is queued on our *server* socket; under uvloop the resulting error events made
    the transport stop reading altogether (seen: datagrams piling up in the socket's
    receive queue, the gateway deaf to every device). Without it Linux reports no ICMP
    errors on an unconnected UDP socket: an answer to a vanished device is retransmitted
    until its exchange gives up, which costs a few datagrams and nothing else.
    """
    quiet = True
    for level, option in ((socket.IPPROTO_IPV6, 25), (socket.IPPROTO_IP, 11)):
        # IPV6_RECVERR = 25, IP_RECVERR = 11 (linux/in6.h, linux/in.h)
        try:
            sock.setsockopt(level, option, 0)
        except OSError:
            quiet = False
    return quiet  # True: nothing can arrive on the socket's error queue


async def create_context(
    site: Any, host: str, port: int, *, counters: Counters, exchange_cache: int
) -> tuple[Context, BoundedMessageManager, int]:
    """An aiocoap server Context on HOST:PORT using our transport and message manager.

    Returns the context, the message manager and the bound port (for port 0).
    """
    loop = asyncio.get_running_loop()
    ctx = GatewayContext(loop=loop, serversite=site, loggername="gateway.coap.aiocoap")
    tman = TokenManager(ctx)
    mman = BoundedMessageManager(tman, capacity=exchange_cache, counters=counters)
    transport = await FilteringUDP6._create_transport_endpoint(
        _bound_socket(host, port), mman, ctx.log, loop, []
    )
    transport.counters = counters
    transport.site = site
    quiet = _ignore_icmp_errors(transport.transport.get_extra_info("socket"))
    if quiet and type(transport.transport) is RecvmsgSelectorDatagramTransport:
        transport.transport.__class__ = ServerDatagramTransport
    transport._tasks = set()
    mman.message_interface = transport
    tman.token_interface = mman
    ctx.request_interfaces.append(tman)
    sockname = transport.transport.get_extra_info("socket").getsockname()
    return ctx, mman, int(sockname[1])
