"""The server socket's transport: no error-queue reads, bursts drained per wakeup."""

from __future__ import annotations

import asyncio
import socket

from gateway.coap.transport import ServerDatagramTransport, create_context
from gateway.counters import Counters


async def test_server_transport_reads_a_burst_without_the_error_queue() -> None:
    counters = Counters()
    ctx, mman, port = await create_context(
        None, "127.0.0.1", 0, counters=counters, exchange_cache=64
    )
    try:
        transport = mman.message_interface.transport
        assert type(transport) is ServerDatagramTransport
        sock = transport.get_extra_info("socket")
        # RECVERR is off, which is what makes skipping the error queue safe.
        assert sock.getsockopt(socket.IPPROTO_IPV6, 25) == 0
        assert sock.getsockopt(socket.IPPROTO_IP, 11) == 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dev:
            for mid in range(100):  # NON GETs of /.well-known/core, sent before we read
                dev.sendto(bytes([0x50, 0x01]) + mid.to_bytes(2, "big"), ("127.0.0.1", port))
            for _ in range(200):
                if counters.get("datagrams") >= 100:
                    break
                await asyncio.sleep(0.01)
        assert counters.get("datagrams") == 100
        await asyncio.sleep(0.2)  # let aiocoap answer them before it shuts down
    finally:
        await ctx.shutdown()
