"""A CON write's retransmission that reaches a gateway killed and started again in between is
applied once: the restarted gateway reads the exchange's first sighting back from its
journal and sends the first attempt's Idempotency-Key (real processes, SIGKILL)."""

from __future__ import annotations

import http.client
import socket
import sqlite3
import urllib.parse
from pathlib import Path

from tests.gateway.gwproc import GatewayProc
from tests.gateway.test_vanished_devices import con_put
from tests.support import servers


def send(port: int, datagram: bytes, sock: socket.socket) -> bytes:
    sock.sendto(datagram, ("127.0.0.1", port))
    return sock.recvfrom(2048)[0]


def call(url: str, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request(method, path, body, {"authorization": "Bearer w"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def events(data: Path, world: str) -> int:
    with sqlite3.connect(data / "elastik.db") as c:
        return int(c.execute("SELECT COUNT(*) FROM events WHERE world=?", (world,)).fetchone()[0])


def test_retransmission_after_a_gateway_sigkill_is_applied_once(tmp_path: Path) -> None:
    data = tmp_path / "core-data"
    state = tmp_path / "gw"
    post = bytearray(con_put(0x4242, [b"home", b"restart", b"log"], b"reading\n", b"\x07\x08"))
    post[1] = 2  # POST: an append, so applying it twice would show
    with servers.running(servers.ours(tmp_path, data=data)) as core:
        assert call(core.url, "PUT", "/home/restart/log")[0] == 201
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            gw = GatewayProc(core.url, state).start()
            try:
                first = send(gw.port, bytes(post), sock)
                assert first[1] == 0x44  # 2.04
            finally:
                gw.kill()  # SIGKILL: the exchange cache is gone with the process
            gw = GatewayProc(core.url, state, port=gw.port).start()
            try:
                again = send(gw.port, bytes(post), sock)  # the device's retransmission
                assert again[1] == 0x44
                fresh = bytearray(post)
                fresh[2:4] = (0x4243).to_bytes(2, "big")  # a new message: applied
                assert send(gw.port, bytes(fresh), sock)[1] == 0x44
            finally:
                gw.stop()
        body = call(core.url, "GET", "/home/restart/log")[1]
    assert body == b"reading\nreading\n"  # the original and the new message, once each
    assert events(data, "home/restart/log") == 3  # put + two appends
