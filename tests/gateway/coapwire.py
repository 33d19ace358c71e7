"""Hand-built CoAP datagrams and a raw asyncio UDP client, for byte-exact tests.

Deliberately independent of aiocoap and of the gateway's own code: what these build is
what a device sends, written from RFC 7252 §3.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

CON, NON, ACK, RST = 0, 1, 2, 3


def _ext(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, (value - 269).to_bytes(2, "big")


def encode_options(options: list[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    prev = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        dn, dx = _ext(number - prev)
        ln, lx = _ext(len(value))
        out.append((dn << 4) | ln)
        out += dx + lx + value
        prev = number
    return bytes(out)


def build(
    code: int,
    *,
    mtype: int = CON,
    mid: int = 0x1234,
    token: bytes = b"\x01",
    options: list[tuple[int, bytes]] | None = None,
    payload: bytes = b"",
) -> bytes:
    head = bytes([0x40 | (mtype << 4) | len(token), code]) + mid.to_bytes(2, "big") + token
    body = encode_options(options or [])
    if payload:
        body += b"\xff" + payload
    return head + body


def path_options(path: str) -> list[tuple[int, bytes]]:
    return [(11, seg.encode()) for seg in path.split("/") if seg]


def uint(value: int) -> bytes:
    return b"" if value == 0 else value.to_bytes((value.bit_length() + 7) // 8, "big")


@dataclass
class Parsed:
    mtype: int
    code: int
    mid: int
    token: bytes
    options: list[tuple[int, bytes]] = field(default_factory=list)
    payload: bytes = b""

    def opt(self, number: int) -> list[bytes]:
        return [v for n, v in self.options if n == number]

    @property
    def dotted(self) -> str:
        return f"{self.code >> 5}.{self.code & 31:02d}"


def parse(data: bytes) -> Parsed:
    tkl = data[0] & 0x0F
    p = Parsed((data[0] >> 4) & 3, data[1], int.from_bytes(data[2:4], "big"), data[4 : 4 + tkl])
    i = 4 + tkl
    number = 0
    while i < len(data):
        if data[i] == 0xFF:
            p.payload = data[i + 1 :]
            break
        d, ln = data[i] >> 4, data[i] & 15
        i += 1
        vals = []
        for nib in (d, ln):
            if nib == 13:
                vals.append(data[i] + 13)
                i += 1
            elif nib == 14:
                vals.append(int.from_bytes(data[i : i + 2], "big") + 269)
                i += 2
            else:
                vals.append(nib)
        number += vals[0]
        p.options.append((number, data[i : i + vals[1]]))
        i += vals[1]
    return p


class _Proto(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)


class UdpClient:
    """One UDP socket connected to the gateway."""

    def __init__(self, transport: asyncio.DatagramTransport, proto: _Proto) -> None:
        self.transport = transport
        self.proto = proto

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> UdpClient:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(_Proto, remote_addr=(host, port))
        return cls(transport, proto)

    def send(self, data: bytes) -> None:
        self.transport.sendto(data)

    async def recv(self, timeout: float = 3.0) -> bytes | None:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.proto.queue.get(), timeout)
        return None

    async def request(self, data: bytes, timeout: float = 3.0) -> bytes | None:
        self.send(data)
        return await self.recv(timeout)

    def close(self) -> None:
        self.transport.close()
