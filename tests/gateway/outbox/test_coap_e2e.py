"""The whole gateway (``python -m gateway run``, real CoAP over UDP via aiocoap) with the
outbox: acknowledged while the core is down, surviving a SIGKILL of the gateway, replayed
exactly once when the core comes back, visible in ``python -m gateway outbox status``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiocoap import Context
from aiocoap.numbers.codes import Code

from tests.gateway.conftest import coap
from tests.gateway.gwproc import GatewayProc
from tests.gateway.outbox.support import check_exactly_once, pick_core
from tests.support.servers import ROOT


def outbox_status(state: Path) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-m", "gateway", "outbox", "status", "--json", "--state-dir", str(state)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


async def test_coap_writes_acked_while_core_down_survive_gateway_sigkill_and_land_once(
    tmp_path, procs
):
    core = pick_core(tmp_path)  # not started: its port refuses connections
    procs.append(core)
    state = tmp_path / "gw"
    config = tmp_path / "gateway.toml"
    config.write_text("[outbox]\nbackoff_min_s = 0.1\nbackoff_max_s = 0.5\n")
    gw = GatewayProc(core.url, state, config=config).start()
    procs.append(gw)
    ctx = await Context.create_client_context()
    try:
        path = "/home/e2e/a"
        for k in range(30):
            method, body = ("PUT", b"0\n") if k == 0 else ("POST", b"%d\n" % k)
            resp = await coap(ctx, method, gw.port, path, body, token="w")
            assert resp.code == Code.CHANGED, (k, resp.code, resp.payload)
        resp = await coap(ctx, "GET", gw.port, path, token="w")
        assert resp.code == Code.SERVICE_UNAVAILABLE  # reads need the core
        status = await asyncio.to_thread(outbox_status, state)
        assert status["running"] is True and status["depth"] == 30
        assert status["paths"] == [
            {
                "path": path,
                "entries": 30,
                "bytes": status["bytes"],
                "oldest_age_s": status["paths"][0]["oldest_age_s"],
            }
        ]
        gw.kill()  # SIGKILL: what was acknowledged must be on disk
        assert (await asyncio.to_thread(outbox_status, state))["depth"] == 30
        gw = GatewayProc(core.url, state, config=config, port=gw.port).start()
        procs.append(gw)
        await asyncio.to_thread(core.start)
        for _ in range(300):
            status = await asyncio.to_thread(outbox_status, state)
            if status["depth"] == 0 and status["counters"]["replayed_total"] >= 30:
                break  # (counters reach the database within a second)
            await asyncio.sleep(0.1)
        assert status["depth"] == 0 and status["counters"]["replayed_total"] >= 30
        assert not check_exactly_once(core.url, {path: 30})
        resp = await coap(ctx, "GET", gw.port, path, token="w")
        assert resp.code == Code.CONTENT and resp.payload.count(b"\n") == 30
    finally:
        await ctx.shutdown()
    assert gw.stop() == 0
