"""Nothing acknowledged is lost or applied twice when the core or the gateway dies.

Real processes only: our core (``python -m elastik run``, it honours Idempotency-Key) and
the harness (StoreAndForward over the real core client, tests/gateway/outbox/harness.py),
whose requests carry front-door Idempotency-Keys (a device resends an unacknowledged
write with the same key). test_crash_coap.py runs the same over the whole CoAP gateway,
including the 30 s outage.
Every write is acknowledged only after the core or the outbox committed it; the check
reads the core's bodies and audit event counts (support.check_exactly_once).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.gateway.outbox.support import (
    Client,
    Load,
    check_exactly_once,
    reconnecting,
    wait_drained,
)

# Fast recovery for tests: probe the core at most every second, replay quickly.
FAST = {"backoff_min_s": 0.1, "backoff_max_s": 1.0, "replay_rate": 3000, "replay_concurrency": 16}
PATHS = [f"/home/ob/p{i:02d}" for i in range(50)]


async def _stats(client: Client) -> dict[str, Any]:
    return await client.stats()


@pytest.mark.timeout(120)
async def test_gateway_sigkill_mid_replay_then_restart_loses_and_duplicates_nothing(
    core, make_harness
):
    slow_replay = {**FAST, "replay_rate": 500, "replay_concurrency": 4}
    harness = make_harness(core.url, slow_replay)
    client = Client()
    await client.connect(harness.port)
    stop = asyncio.Event()
    keeper = asyncio.create_task(reconnecting(client, lambda: harness.port, stop))
    load = Load(client, PATHS, "gwkill", pace_s=0.05)
    load.start()
    await asyncio.sleep(1)
    await asyncio.to_thread(core.kill)
    await asyncio.sleep(3)
    await asyncio.to_thread(core.start)
    # Wait until the replay is under way, then SIGKILL the gateway in the middle of it.
    for _ in range(200):
        stats = await _stats(client)
        if stats["replayed_total"] >= 200:
            break
        await asyncio.sleep(0.05)
    assert stats["depth"] > 200, stats  # still mid-replay
    harness.kill()
    await asyncio.sleep(0.5)
    await asyncio.to_thread(harness.start)
    await asyncio.sleep(2)
    await load.finish()
    await client.up.wait()
    after = await wait_drained(client, 60)
    stop.set()
    await keeper
    await client.close()
    assert after["replayed_total"] > 0  # the restarted gateway replayed what was left
    problems = check_exactly_once(core.url, load.acked)
    assert not problems, problems[:10]


@pytest.mark.timeout(120)
async def test_core_sigkill_mid_load_then_restart_loses_and_duplicates_nothing(core, make_harness):
    harness = make_harness(core.url, FAST)
    client = Client()
    await client.connect(harness.port)
    load = Load(client, PATHS, "corekill", pace_s=0.02)
    load.start()
    await asyncio.sleep(2)
    await asyncio.to_thread(core.kill)  # SIGKILL with writes in flight
    await asyncio.sleep(2)
    await asyncio.to_thread(core.start)
    await asyncio.sleep(2)
    await load.finish()
    after = await wait_drained(client, 60)
    await client.close()
    assert after["passthrough_total"] > 0 and after["queued_total"] > 0
    assert not load.errors
    problems = check_exactly_once(core.url, load.acked)
    assert not problems, problems[:10]
