"""Exactly-once under loss: the MicroPython client talks to the gateway through a UDP
proxy that drops a seeded 20% of the datagrams in each direction. Retransmission (client)
plus deduplication (gateway) must apply every write at most once, and every write the
client saw succeed exactly once, as the core's audit chain records it."""

from __future__ import annotations

from typing import Any

import pytest
from fw_support import LossyProxy, Target, run_mp

pytestmark = pytest.mark.xdist_group("fw_lossy")

LOSS = 0.2
N = 100


@pytest.fixture
def proxy(target: Target) -> Any:
    if target.kind == "reference":
        pytest.skip("the reference has no deduplication: it applies retransmissions twice")
    p = LossyProxy((target.host, target.coap_port), loss=LOSS, seed=20261122)
    yield p
    p.close()


def client_via(proxy: LossyProxy, token: str) -> list[Any]:
    # Short ACK_TIMEOUT keeps the run quick; a reply slower than it is only a spurious
    # retransmission, which the gateway must absorb too.
    args = {"host": "127.0.0.1", "port": proxy.port, "token": token, "timeout_ms": 60}
    return ["client", args]


def test_puts_through_20_percent_loss_apply_once(target: Target, proxy: LossyProxy) -> None:
    res = run_mp([client_via(proxy, target.write_token), ["puts", "fw/lossy-put", N, "v"]])
    outcomes = res.results()[1]["r"]
    ok = [i for i, o in enumerate(outcomes) if o in (201, 204)]
    assert len(ok) >= 95, outcomes
    assert proxy.stats.up_dropped > 0 and proxy.stats.down_dropped > 0, proxy.stats
    # one audit event per applied put: at least the successes, never more than were sent
    events = target.audit_events("home/fw/lossy-put")
    assert len(ok) <= events <= N, (events, len(ok))
    status, _, body = target.http_request("GET", "/home/fw/lossy-put")
    if ok[-1] == N - 1:
        assert (status, body) == (200, b"v%d" % (N - 1))


def test_appends_through_20_percent_loss_land_exactly_once(
    target: Target, proxy: LossyProxy
) -> None:
    status, _, _ = target.http_request("PUT", "/home/fw/lossy-log", b"", token=target.write_token)
    assert status in (200, 201)
    res = run_mp([client_via(proxy, target.write_token), ["posts", "fw/lossy-log", N, "p"]])
    outcomes = res.results()[1]["r"]
    ok = {i for i, o in enumerate(outcomes) if o == 204}
    assert len(ok) >= 95, outcomes
    status, _, body = target.http_request("GET", "/home/fw/lossy-log")
    assert status == 200
    applied = [int(x[1:]) for x in body.decode().split(";") if x]
    assert len(applied) == len(set(applied)), "an append was applied twice"
    assert applied == sorted(applied), "appends were applied out of order"
    assert ok <= set(applied), "a post that succeeded is missing"
    # the audit chain holds the creating put plus one append event per applied value
    assert target.audit_events("home/fw/lossy-log") == 1 + len(applied)
