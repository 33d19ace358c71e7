"""D6 hook: ``start_coap_frontdoor`` starts the gateway's CoAP front door when offered."""

from __future__ import annotations

import http.client
import socket
import struct
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from elastik.server import cli
from elastik.server.config import CoreConfig

from tests.support import servers


def cfg(port: int = 5683) -> CoreConfig:
    return CoreConfig(key="k" * 32, coap_port=port, coap_host="127.0.0.1")


async def test_frontdoor_started_with_core_url_and_scoap_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []
    closed: list[bool] = []

    class Handle:
        async def close(self) -> None:
            closed.append(True)

    async def start_frontdoor(**kw: Any) -> Handle:
        calls.append(kw)
        return Handle()

    module = types.ModuleType("gateway.coap.server")
    module.start_frontdoor = start_frontdoor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gateway.coap.server", module)
    handle = await cli.start_coap_frontdoor(cfg(5999), "http://127.0.0.1:3105")
    assert calls == [{"core_url": "http://127.0.0.1:3105", "host": "127.0.0.1", "port": 5999}]
    assert capsys.readouterr().err.splitlines() == [
        "scoap: listening on coap://127.0.0.1:5999/",
        "scoap: UDP curl surface; auth option 65001 maps to token tier",
    ]
    await cli._close(handle)
    assert closed == [True]


async def test_bind_failure_is_not_fatal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def start_frontdoor(**kw: Any) -> None:
        raise OSError(98, "Address already in use")

    module = types.ModuleType("gateway.coap.server")
    module.start_frontdoor = start_frontdoor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gateway.coap.server", module)
    assert await cli.start_coap_frontdoor(cfg(5998), "http://x") is None
    assert capsys.readouterr().err == (
        "scoap: failed to bind coap://127.0.0.1:5998/: Address in use (os error 98)\n"
    )


async def test_missing_gateway_keeps_http_running(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "gateway.coap.server", None)  # import fails
    assert await cli.start_coap_frontdoor(cfg(), "http://x") is None
    assert "CoAP front door unavailable" in capsys.readouterr().err


@pytest.mark.xdist_group("core-cli")
def test_coap_port_serves_the_gateway_front_door_in_process(tmp_path: Path) -> None:
    udp = servers.free_udp_port()
    proc = servers.ours(tmp_path, extra={"ELASTIK_COAP_PORT": str(udp)})

    def coap(code: int, payload: bytes = b"", options: bytes = b"", mid: int = 1) -> bytes:
        msg = bytes([0x41, code]) + struct.pack("!H", mid) + b"\xaa"
        msg += b"\xb4home" + b"\x04coap" + options  # Uri-Path home / coap
        if payload:
            msg += b"\xff" + payload
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(10)
            s.sendto(msg, ("127.0.0.1", udp))
            return s.recv(2048)

    auth = bytes([0xE1]) + struct.pack("!H", 65001 - 11 - 269) + b"w"  # option 65001 = "w"
    with servers.running(proc):
        deadline = time.monotonic() + 20  # the front door starts once HTTP is serving
        while "scoap: listening" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert coap(0x03, b"via udp", mid=7)[1] == 0x81  # 4.01 without a token
        assert coap(0x03, b"via udp", auth, mid=8)[1] == 0x41  # 2.01 Created
        reply = coap(0x01, mid=9)
        assert reply[1] == 0x45 and reply.endswith(b"\xffvia udp")  # 2.05 Content
    lines = proc.output().splitlines()
    assert lines[5:7] == [
        f"scoap: listening on coap://127.0.0.1:{udp}/",
        "scoap: UDP curl surface; auth option 65001 maps to token tier",
    ]
    assert lines[-2:] == [
        "elastik-core: shutdown signal received",
        "scoap: shutdown signal received",
    ]


@pytest.mark.xdist_group("core-cli")
def test_coap_bind_failure_keeps_http_running(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        udp = busy.getsockname()[1]
        proc = servers.ours(tmp_path, extra={"ELASTIK_COAP_PORT": str(udp)})
        with servers.running(proc):
            deadline = time.monotonic() + 20
            while "scoap:" not in proc.output() and time.monotonic() < deadline:
                time.sleep(0.05)
            line = next(x for x in proc.output().splitlines() if x.startswith("scoap:"))
            assert (
                line
                == f"scoap: failed to bind coap://127.0.0.1:{udp}/: Address in use (os error 98)"
            )
            conn = http.client.HTTPConnection(proc.host, proc.port, timeout=10)
            conn.request("GET", "/proc/version")
            assert conn.getresponse().status == 200
            conn.close()
        assert proc.proc is not None and proc.proc.returncode == 0
