"""A device that vanishes before its answer arrives must not make the gateway deaf.

Regression: a device sends a CON write and closes its socket (deep sleep, reboot) while the
core is slow; the gateway's separate response then meets ICMP "port unreachable". With
aiocoap's IP(V6)_RECVERR on the server socket the transport stopped reading under uvloop and
every later datagram piled up unread in the socket's receive queue.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from tests.gateway.gwproc import GatewayProc
from tests.support import servers


def con_put(mid: int, path: list[bytes], payload: bytes, token: bytes = b"\x01") -> bytes:
    out = bytearray([0x40 | len(token), 3]) + mid.to_bytes(2, "big") + token
    prev = 0
    for seg in path:
        out += bytes([((11 - prev) << 4) | len(seg)]) + seg
        prev = 11
    out += bytes([(14 << 4) | 1]) + (65001 - 11 - 269).to_bytes(2, "big") + b"w"  # token "w"
    return bytes(out) + b"\xff" + payload


def ask(port: int, mid: int, world: bytes, timeout: float = 10.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(con_put(mid, [b"vanish", world], b"v"), ("127.0.0.1", port))
        try:
            return s.recvfrom(2048)[0]
        except TimeoutError:
            return None


def test_gateway_keeps_answering_after_answers_to_vanished_devices(tmp_path: Path) -> None:
    core = servers.ours(tmp_path).start()
    try:
        with GatewayProc(core.url, tmp_path / "gw") as gw:
            first = ask(gw.port, 1, b"a")
            assert first is not None and first[1] == 0x41  # 2.01 Created
            assert core.proc is not None
            os.kill(core.proc.pid, signal.SIGSTOP)  # slow core: answers go out as separate CONs
            try:
                for mid in range(10, 20):
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                        s.sendto(
                            con_put(mid, [b"vanish", b"b%d" % mid], b"v"), ("127.0.0.1", gw.port)
                        )
                    # the socket closes here: the device is gone before its answer
                time.sleep(2.5)  # past the 1 s empty-ACK delay: separate responses are due
            finally:
                os.kill(core.proc.pid, signal.SIGCONT)
            for mid in (2, 3):
                answer = ask(gw.port, mid, b"c%d" % mid)
                assert answer is not None, "gateway stopped answering:\n" + gw.output()
                assert answer[1] in (0x41, 0x44), answer.hex()  # 2.01 / 2.04
    finally:
        core.stop()
