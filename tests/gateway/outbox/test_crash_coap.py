"""The crash tests over the whole gateway: ``python -m gateway run`` with real CoAP.

50 devices (one aiocoap context, i.e. one UDP endpoint, each) write to one path each, the
next write only after the previous was acknowledged (NSTART=1). A CON retransmission
carries the same message id, from which the front door derives the Idempotency-Key, so a
write that reached the outbox or the core before a crash is not applied twice when its
retransmission reaches the restarted gateway. The check: support.check_exactly_once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.gwproc import GatewayProc
from tests.gateway.outbox.support import (
    CoapClient,
    Load,
    check_exactly_once,
    outbox_counter,
    outbox_depth,
)

PATHS = [f"/home/oc/p{i:02d}" for i in range(50)]


def gateway(
    core_url: str, tmp_path: Path, procs: list[Any], port: int | None = None, **outbox: Any
) -> GatewayProc:
    cfg = {"backoff_min_s": 0.1, "backoff_max_s": 1.0, "replay_rate": 3000, **outbox}
    config = tmp_path / "gateway.toml"
    config.write_text("[outbox]\n" + "".join(f"{k} = {v!r}\n" for k, v in cfg.items()))
    gw = GatewayProc(core_url, tmp_path / "gw", config=config, port=port).start()
    procs.append(gw)
    return gw


async def devices(port: int) -> dict[str, CoapClient]:
    return {p: await CoapClient(port).connect() for p in PATHS}


async def drained(state: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(outbox_depth, state) == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"outbox not drained in {timeout}s")


async def close_all(clients: dict[str, CoapClient]) -> None:
    await asyncio.gather(*(c.close() for c in clients.values()))


@pytest.mark.slow
@pytest.mark.timeout(200)
async def test_coap_core_down_30s_under_load_every_ack_lands_once_in_order(core, tmp_path, procs):
    gw = gateway(core.url, tmp_path, procs)
    clients = await devices(gw.port)
    try:
        # ~50 devices x 6/s = about 300 writes/s, PUTs and POSTs.
        load = Load(None, PATHS, "outage", pace_s=0.15, per_path=clients)
        load.start()
        await asyncio.sleep(2)
        await asyncio.to_thread(core.kill)
        await asyncio.sleep(30)  # the 30 s outage
        queued = await asyncio.to_thread(outbox_depth, tmp_path / "gw")
        await asyncio.to_thread(core.start)
        await asyncio.sleep(3)
        await load.finish()
        await drained(tmp_path / "gw", 90)
    finally:
        await close_all(clients)
    assert queued > 1000, queued  # the outage was real, and under load
    assert load.total > queued
    problems = check_exactly_once(core.url, load.acked)
    assert not problems, problems[:10]
    assert gw.stop() == 0


@pytest.mark.timeout(150)
async def test_coap_gateway_sigkill_mid_replay_then_restart_loses_and_duplicates_nothing(
    core, tmp_path, procs
):
    gw = gateway(core.url, tmp_path, procs, replay_rate=400, replay_concurrency=4)
    clients = await devices(gw.port)
    try:
        load = Load(None, PATHS, "gwkill", pace_s=0.1, per_path=clients)
        load.start()
        await asyncio.sleep(1)
        await asyncio.to_thread(core.kill)
        await asyncio.sleep(3)
        backlog = await asyncio.to_thread(outbox_depth, tmp_path / "gw")
        await asyncio.to_thread(core.start)
        for _ in range(300):  # wait until the replay is under way (counters: 1 s late)
            replayed = await asyncio.to_thread(outbox_counter, tmp_path / "gw", "replayed_total")
            if replayed >= 200:
                break
            await asyncio.sleep(0.05)
        depth = await asyncio.to_thread(outbox_depth, tmp_path / "gw")
        gw.kill()  # SIGKILL in the middle of the replay
        assert replayed >= 200 and depth > 0, (replayed, depth)
        gw = gateway(core.url, tmp_path, procs, port=gw.port)
        await asyncio.sleep(2)
        await load.finish()
        await drained(tmp_path / "gw", 60)
    finally:
        await close_all(clients)
    assert backlog > 200, backlog
    problems = check_exactly_once(core.url, load.acked)
    assert not problems, problems[:10]


@pytest.mark.timeout(150)
async def test_coap_core_sigkill_mid_load_then_restart_loses_and_duplicates_nothing(
    core, tmp_path, procs
):
    gw = gateway(core.url, tmp_path, procs)
    clients = await devices(gw.port)
    try:
        load = Load(None, PATHS, "corekill", pace_s=0.02, per_path=clients)
        load.start()
        await asyncio.sleep(2)
        before = load.total
        await asyncio.to_thread(core.kill)  # SIGKILL with writes in flight
        await asyncio.sleep(2)
        await asyncio.to_thread(core.start)
        await asyncio.sleep(2)
        await load.finish()
        await drained(tmp_path / "gw", 60)
    finally:
        await close_all(clients)
    assert before > 0 and not load.errors
    problems = check_exactly_once(core.url, load.acked)
    assert not problems, problems[:10]
