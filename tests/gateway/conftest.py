"""Fixtures for the gateway tests: real cores (ours and the reference binary) as
subprocesses, the gateway in-process on a free UDP port, an aiocoap client context."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiocoap import Context, Message
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import OpaqueOption

from gateway.config import GatewayConfig, validate
from gateway.runner import Gateway
from tests.support.servers import Proc, ours, reference, running


@pytest.fixture(scope="module")
def our_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    with running(ours(tmp_path_factory.mktemp("ourcore"))) as proc:
        yield proc


@pytest.fixture(scope="module")
def ref_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    with running(reference(tmp_path_factory.mktemp("refcore"))) as proc:
        yield proc


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[Any]:
    started: list[Gateway] = []

    async def make(core_url: str, *, outbox: bool = False, **kw: Any) -> Gateway:
        cfg = validate(
            GatewayConfig(
                core_url=core_url,
                coap_bind="127.0.0.1:0",
                state_dir=str(tmp_path / f"gw{len(started)}"),
                **kw,
            )
        )
        gw = Gateway(cfg, use_outbox=outbox)
        await gw.start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        await gw.shutdown(drain=1)


@pytest.fixture
async def client() -> AsyncIterator[Context]:
    ctx = await Context.create_client_context()
    yield ctx
    await ctx.shutdown()


METHOD = {"GET": Code.GET, "PUT": Code.PUT, "POST": Code.POST, "DELETE": Code.DELETE}


def coap_message(
    method: str,
    port: int,
    path: str,
    payload: bytes = b"",
    *,
    token: str | None = None,
    cf: int | None = None,
    **opts: Any,
) -> Message:
    msg = Message(code=METHOD[method], payload=payload, **opts)
    msg.set_request_uri(f"coap://127.0.0.1:{port}/")
    msg.opt.uri_path = [s for s in path.split("/") if s]
    if cf is not None:
        msg.opt.content_format = cf
    if token is not None:
        msg.opt.add_option(OpaqueOption(65001, token.encode()))
    return msg


async def coap(
    ctx: Context, method: str, port: int, path: str, payload: bytes = b"", **kw: Any
) -> Message:
    msg = coap_message(method, port, path, payload, **kw)
    return await asyncio.wait_for(ctx.request(msg).response, 15)


def core_http(
    core: Proc, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(core.host, core.port, timeout=10)
    try:
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        conn.request(method, path, body=body or None, headers=hdrs)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def audit_events(core: Proc, world: str) -> int:
    status, headers, _ = core_http(core, "GET", f"/proc/audit/{world}/verify")
    assert status == 200, status
    return int(headers["x-audit-events"])
