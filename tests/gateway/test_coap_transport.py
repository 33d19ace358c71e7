"""The server socket's transport: no error-queue reads, bursts drained per wakeup."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiocoap.message import Message
from aiocoap.numbers.codes import Code

from gateway.coap.transport import ServerDatagramTransport, create_context
from gateway.counters import Counters


class Answer:
    """The smallest site: every request gets 2.05 "ok"."""

    async def render_to_pipe(self, pipe: Any) -> None:
        pipe.add_response(Message(code=Code.CONTENT, payload=b"ok"), is_last=True)


async def test_server_transport_reads_a_burst_without_the_error_queue() -> None:
    counters = Counters()
    ctx, mman, port = await create_context(
        Answer(), "127.0.0.1", 0, counters=counters, exchange_cache=256
    )
    try:
        transport = mman.message_interface.transport
        assert type(transport) is ServerDatagramTransport
        sock = transport.get_extra_info("socket")
        # RECVERR is off, which is what makes skipping the error queue safe.
        assert sock.getsockopt(socket.IPPROTO_IPV6, 25) == 0
        assert sock.getsockopt(socket.IPPROTO_IP, 11) == 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dev:
            dev.setblocking(False)
            for mid in range(100):  # NON GETs, all sent before the gateway reads any
                dev.sendto(bytes([0x50, 0x01]) + mid.to_bytes(2, "big"), ("127.0.0.1", port))
            answers = 0
            for _ in range(300):
                await asyncio.sleep(0.01)
                while True:
                    try:
                        reply = dev.recv(2048)
                    except BlockingIOError:
                        break
                    assert reply[1] == 0x45 and reply.endswith(b"\xffok")  # 2.05 "ok"
                    answers += 1
                if answers == 100:
                    break
        assert counters.get("datagrams") == 100
        assert answers == 100
    finally:
        await ctx.shutdown()
