"""D6 hook: ``start_coap_frontdoor`` starts the gateway's CoAP front door when offered."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from elastik.server import cli
from elastik.server.config import CoreConfig


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
        "scoap: failed to bind coap://127.0.0.1:5998/: Address already in use (os error 98)\n"
    )


async def test_missing_entry_point_keeps_http_running(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "gateway.coap.server", types.ModuleType("gateway.coap.server"))
    assert await cli.start_coap_frontdoor(cfg(), "http://x") is None
    assert "CoAP front door unavailable" in capsys.readouterr().err
