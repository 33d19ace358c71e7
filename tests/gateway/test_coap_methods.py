"""aiocoap client requests through the gateway to our real core: every method, option and
content format the gateway maps, Observe, Block-wise, device scopes and rate limits."""

from __future__ import annotations

import asyncio
import json

import cbor2
import pytest
from aiocoap.numbers.codes import Code

from gateway.config import Device
from tests.gateway.conftest import audit_events, coap, coap_message, core_http


@pytest.fixture
async def gw(make_gateway, our_core):
    return await make_gateway(our_core.url)


def dotted(msg) -> str:
    c = int(msg.code)
    return f"{c >> 5}.{c & 31:02d}"


async def test_put_get_post_delete(gw, client, our_core):
    p = gw.port
    assert dotted(await coap(client, "PUT", p, "m/a", b"one", token="w", cf=0)) == "2.01"
    assert dotted(await coap(client, "PUT", p, "m/a", b"two", token="w", cf=0)) == "2.04"
    assert dotted(await coap(client, "POST", p, "m/a", b"+three", token="w")) == "2.04"
    r = await coap(client, "GET", p, "m/a")
    assert (dotted(r), r.payload, r.opt.content_format) == ("2.05", b"two+three", 0)
    assert dotted(await coap(client, "POST", p, "m/nothere", b"x", token="w")) == "4.04"
    assert dotted(await coap(client, "DELETE", p, "m/a", token="w")) == "4.01"
    assert dotted(await coap(client, "DELETE", p, "m/a", token="a")) == "2.02"
    assert dotted(await coap(client, "GET", p, "m/a")) == "4.04"
    assert dotted(await coap(client, "DELETE", p, "m/a", token="a")) == "4.04"
    assert audit_events(our_core, "var/log/deletes") >= 2


@pytest.mark.parametrize(
    ("cf", "body", "stored"),
    [
        (0, b"plain", "text/plain; charset=utf-8"),
        (42, b"\x00\x01", "application/octet-stream"),
        (50, json.dumps({"t": 21.5}).encode(), "application/json"),
        (60, cbor2.dumps({"t": 21.5}), "application/cbor"),
        (None, b"none", "application/octet-stream"),
        (41, b"xml", "application/octet-stream"),
    ],
)
async def test_content_formats_map_both_ways(gw, client, our_core, cf, body, stored):
    world = f"m/cf{cf}"
    assert dotted(await coap(client, "PUT", gw.port, world, body, token="w", cf=cf)) in (
        "2.01",
        "2.04",
    )
    status, headers, got = core_http(our_core, "GET", f"/home/{world}")
    assert (status, headers["content-type"], got) == (200, stored, body)
    r = await coap(client, "GET", gw.port, world)
    expected_cf = {None: 42, 41: 42}.get(cf, cf)
    assert (r.payload, r.opt.content_format) == (body, expected_cf)


async def test_accept_is_honoured(gw, client):
    await coap(client, "PUT", gw.port, "m/acc", b"{}", token="w", cf=50)
    r = await coap(client, "GET", gw.port, "m/acc", accept=50)
    assert (dotted(r), r.payload) == ("2.05", b"{}")
    r = await coap(client, "GET", gw.port, "m/acc", accept=0)
    assert (dotted(r), r.payload) == ("4.06", b"not acceptable\n")


async def test_get_of_unmapped_media_type_has_no_content_format(gw, client, our_core):
    core_http(
        our_core, "PUT", "/home/m/html", b"<p>", authorization="Bearer w", content_type="text/html"
    )
    r = await coap(client, "GET", gw.port, "m/html")
    assert r.payload == b"<p>" and r.opt.content_format is None


async def test_if_match_and_if_none_match(gw, client, our_core):
    p = gw.port
    created = await coap(client, "PUT", p, "m/cond", b"v1", token="w")
    etag = created.opt.etag
    assert dotted(created) == "2.01" and len(etag) == 8
    # If-None-Match: only create.
    r = await coap(client, "PUT", p, "m/cond", b"x", token="w", if_none_match=True)
    assert (dotted(r), r.payload) == ("4.12", b"precondition failed\n")
    r = await coap(client, "PUT", p, "m/cond-new", b"x", token="w", if_none_match=True)
    assert dotted(r) == "2.01"
    # If-Match with the current ETag succeeds once; the stale one then fails.
    r = await coap(client, "PUT", p, "m/cond", b"v2", token="w", if_match=[etag])
    assert dotted(r) == "2.04"
    r = await coap(client, "PUT", p, "m/cond", b"v3", token="w", if_match=[etag])
    assert dotted(r) == "4.12"
    assert core_http(our_core, "GET", "/home/m/cond")[2] == b"v2"
    # The full core ETag works too, and an empty If-Match means "exists".
    full = core_http(our_core, "GET", "/home/m/cond")[1]["etag"]
    r = await coap(
        client, "POST", p, "m/cond", b"+", token="w", if_match=[full.strip('"').encode()]
    )
    assert dotted(r) == "2.04"
    assert (
        dotted(await coap(client, "PUT", p, "m/cond", b"v4", token="w", if_match=[b""])) == "2.04"
    )
    assert dotted(await coap(client, "PUT", p, "m/none", b"v", token="w", if_match=[b""])) == "4.12"
    assert (
        dotted(await coap(client, "PUT", p, "m/none", b"v", token="w", if_match=[etag])) == "4.12"
    )
    # Conditional DELETE.
    cur = (await coap(client, "GET", p, "m/cond")).opt.etag
    assert dotted(await coap(client, "DELETE", p, "m/cond", token="a", if_match=[etag])) == "4.12"
    assert dotted(await coap(client, "DELETE", p, "m/cond", token="a", if_match=[cur])) == "2.02"


async def test_get_with_current_etag_is_valid(gw, client):
    r = await coap(client, "PUT", gw.port, "m/valid", b"body", token="w")
    r = await coap(client, "GET", gw.port, "m/valid", etag=r.opt.etag)
    assert (dotted(r), r.payload) == ("2.03", b"")


async def test_block2_and_block1_transfer_a_20kb_world_both_ways(gw, client, our_core):
    body = bytes(range(256)) * 80  # 20480 bytes
    r = await coap(client, "PUT", gw.port, "m/big", body, token="w", cf=42)
    assert dotted(r) == "2.01"
    assert core_http(our_core, "GET", "/home/m/big")[2] == body
    assert audit_events(our_core, "home/m/big") == 1  # one write, not one per block
    r = await coap(client, "GET", gw.port, "m/big")
    assert (dotted(r), len(r.payload), r.payload == body) == ("2.05", 20480, True)
    assert gw.counters.get("block2_cache_hits") >= 19
    # Block1 POST appends the whole reassembled body once.
    r = await coap(client, "POST", gw.port, "m/big", body, token="w")
    assert dotted(r) == "2.04"
    assert core_http(our_core, "GET", "/home/m/big")[2] == body + body


async def test_block1_over_the_limit_is_413(make_gateway, our_core, client):
    gw = await make_gateway(our_core.url, max_block1_bytes=4096)
    r = await coap(client, "PUT", gw.port, "m/toolarge", b"x" * 8192, token="w")
    assert dotted(r) == "4.13"
    assert core_http(our_core, "GET", "/home/m/toolarge")[0] == 404


async def test_well_known_core_lists_namespaces(gw, client):
    r = await coap(client, "GET", gw.port, ".well-known/core")
    assert dotted(r) == "2.05" and r.opt.content_format == 40
    assert b"</home>" in r.payload and b"obs" in r.payload
    r = await coap(client, "GET", gw.port, ".well-known/gateway/stats")
    assert dotted(r) == "2.05" and b"requests " in r.payload


async def test_observe_notifies_on_every_change_and_ends_on_delete(gw, client, our_core):
    core_http(
        our_core, "PUT", "/home/m/obs", b"0", authorization="Bearer w", content_type="text/plain"
    )
    msg = coap_message("GET", gw.port, "m/obs", observe=0)
    req = client.request(msg)
    first = await asyncio.wait_for(req.response, 10)
    assert (dotted(first), first.payload, first.opt.observe is not None) == ("2.05", b"0", True)
    seen = []
    it = req.observation.__aiter__()
    for i in range(1, 4):
        core_http(our_core, "PUT", "/home/m/obs", str(i).encode(), authorization="Bearer w")
        note = await asyncio.wait_for(it.__anext__(), 10)
        seen.append(note.payload)
    assert seen == [b"1", b"2", b"3"]
    # A CoAP POST through the gateway notifies too.
    await coap(client, "POST", gw.port, "m/obs", b"+", token="w")
    assert (await asyncio.wait_for(it.__anext__(), 10)).payload == b"3+"
    assert gw.counters.get("observations") == 1 and len(gw.hub) == 1
    core_http(our_core, "DELETE", "/home/m/obs", authorization="Bearer a")
    last = await asyncio.wait_for(it.__anext__(), 10)
    assert (dotted(last), last.payload) == ("4.04", b"not found\n")  # final notification
    for _ in range(50):
        if gw.counters.get("observations") == 0 and len(gw.hub) == 0:
            break
        await asyncio.sleep(0.1)
    assert gw.counters.get("observations") == 0 and len(gw.hub) == 0


async def _wait_no_observations(gw) -> None:
    for _ in range(50):
        if gw.counters.get("observations") == 0 and len(gw.hub) == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(gw.counters.snapshot())


async def test_observe_deregistration_by_rst_and_by_observe_1(gw, our_core):
    from tests.gateway.coapwire import ACK, CON, RST, UdpClient, build, parse

    core_http(our_core, "PUT", "/home/m/obs2", b"a", authorization="Bearer w")
    udp = await UdpClient.open(gw.port)
    try:
        register = build(1, mid=1, token=b"\x0b", options=[(6, b""), (11, b"m"), (11, b"obs2")])
        r = parse(await udp.request(register))
        assert (r.mtype, r.dotted, r.payload, len(r.opt(6))) == (ACK, "2.05", b"a", 1)
        assert gw.counters.get("observations") == 1
        # Reactive deregistration: the device answers the CON notification with RST.
        core_http(our_core, "PUT", "/home/m/obs2", b"b", authorization="Bearer w")
        note = parse(await udp.recv(10))
        assert (note.mtype, note.token, note.payload) == (CON, b"\x0b", b"b")
        udp.send(bytes([0x70, 0x00]) + note.mid.to_bytes(2, "big"))
        assert RST == 3
        await _wait_no_observations(gw)
        # Explicit deregistration: GET with Observe=1 on the same token.
        r = parse(
            await udp.request(
                build(1, mid=2, token=b"\x0c", options=[(6, b""), (11, b"m"), (11, b"obs2")])
            )
        )
        assert r.opt(6) and gw.counters.get("observations") == 1
        r = parse(
            await udp.request(
                build(1, mid=3, token=b"\x0c", options=[(6, b"\x01"), (11, b"m"), (11, b"obs2")])
            )
        )
        assert (r.dotted, r.opt(6), r.payload) == ("2.05", [], b"b")
        await _wait_no_observations(gw)
    finally:
        udp.close()


async def test_observe_table_is_bounded(make_gateway, our_core, client):
    gw = await make_gateway(our_core.url, max_observations=1)
    core_http(our_core, "PUT", "/home/m/obs3", b"a", authorization="Bearer w")
    first = client.request(coap_message("GET", gw.port, "m/obs3", observe=0))
    r1 = await asyncio.wait_for(first.response, 10)
    second = client.request(coap_message("GET", gw.port, "m/obs3", observe=0))
    r2 = await asyncio.wait_for(second.response, 10)
    assert r1.opt.observe is not None and r2.opt.observe is None  # answered, not registered
    assert gw.counters.get("observations") == 1
    first.observation.cancel()


DEVICES = (
    Device(
        id="dev-0",
        token="t0",
        paths=("home/sensors/dev-0/",),
        methods=("GET", "PUT"),
        rate=2,
        burst=3,
    ),
    Device(id="reader", token="tr", paths=("home/",), methods=("GET",)),
)


async def test_device_table_scopes_and_rate_limits(make_gateway, our_core, client):
    gw = await make_gateway(our_core.url, devices=DEVICES, upstream_token="w")
    p = gw.port
    r = await coap(client, "PUT", p, "sensors/dev-0/t", b"1", token="t0")
    assert dotted(r) == "2.01"  # the core saw the gateway's own token
    r = await coap(client, "PUT", p, "sensors/dev-1/t", b"1", token="t0")
    assert (dotted(r), r.payload) == ("4.03", b"forbidden\n")
    r = await coap(client, "POST", p, "sensors/dev-0/t", b"1", token="t0")
    assert dotted(r) == "4.03"
    r = await coap(client, "PUT", p, "sensors/dev-0/t", b"1", token="tr")
    assert dotted(r) == "4.03"
    r = await coap(client, "GET", p, "sensors/dev-0/t", token="nobody")
    assert (dotted(r), r.payload) == ("4.01", b"unauthorized\n")
    r = await coap(client, "GET", p, "sensors/dev-0/t")
    assert dotted(r) == "4.01"
    # dev-0 has used its burst of 3 (its two refusals count too); the next is over rate.
    r = await coap(client, "GET", p, "sensors/dev-0/t", token="t0")
    assert dotted(r) == "4.29"
    assert r.opt.max_age is not None and r.opt.max_age >= 1
    await asyncio.sleep(0.6)
    r = await coap(client, "GET", p, "sensors/dev-0/t", token="t0")
    assert (dotted(r), r.payload) == ("2.05", b"1")


async def test_core_down_is_503_with_max_age(make_gateway, client):
    from tests.support.servers import free_port

    gw = await make_gateway(f"http://127.0.0.1:{free_port()}", retry_after=7)
    r = await coap(client, "GET", gw.port, "m/x")
    assert (dotted(r), r.payload, r.opt.max_age) == ("5.03", b"core unavailable\n", 7)
    r = await coap(client, "PUT", gw.port, "m/x", b"v", token="w")
    assert (dotted(r), r.opt.max_age) == ("5.03", 7)


async def test_queued_writes_map_to_204_and_202(make_gateway, client):
    pytest.importorskip("gateway.forwarder")
    from tests.support.servers import free_port

    gw = await make_gateway(f"http://127.0.0.1:{free_port()}", outbox=True)
    r = await coap(client, "PUT", gw.port, "m/q", b"v", token="w")
    assert dotted(r) == "2.04"
    r = await coap(client, "DELETE", gw.port, "m/q", token="a")
    assert dotted(r) == "2.02"
    r = await coap(client, "GET", gw.port, "m/q")
    assert dotted(r) == "5.03"


async def test_code_of_requests_that_are_not_methods(gw, client):
    r = await coap(client, "GET", gw.port, "m/x")
    assert r.code == Code.NOT_FOUND


async def test_in_flight_limit_and_drain_answer_503(make_gateway, client):
    from tests.gateway.test_core_client import RawServer

    rs = RawServer("hang")
    srv = await asyncio.start_server(rs.handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    try:
        gw = await make_gateway(url, max_in_flight=1, request_timeout=3.0)
        slow = asyncio.ensure_future(coap(client, "GET", gw.port, "m/slow"))
        for _ in range(50):
            if gw.site.in_flight == 1:
                break
            await asyncio.sleep(0.05)
        r = await coap(client, "GET", gw.port, "m/other")
        assert (dotted(r), r.payload, r.opt.max_age) == ("5.03", b"too many coap requests\n", 1)
        # SIGTERM's drain: new requests are refused while the slow one finishes.
        drained = asyncio.ensure_future(gw.site.drain(10))
        r = await coap(client, "GET", gw.port, "m/third")
        assert (dotted(r), r.payload) == ("5.03", b"shutting down\n")
        r = await slow
        assert dotted(r) == "5.03" and r.payload == b"core unavailable\n"  # the core hung
        assert await drained is True
        assert gw.counters.get("separate_responses") >= 1  # empty ACK first, then the answer
    finally:
        srv.close()


async def test_slow_answer_is_empty_ack_then_separate_con_response(make_gateway):
    from tests.gateway.coapwire import ACK, CON, UdpClient, build, parse
    from tests.gateway.test_core_client import RawServer

    rs = RawServer("hang")
    srv = await asyncio.start_server(rs.handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    udp = None
    try:
        gw = await make_gateway(url, request_timeout=1.5, retry_after=9)
        udp = await UdpClient.open(gw.port)
        dgram = build(1, mid=0x0A0B, token=b"\x77", options=[(11, b"slow")])
        first = await udp.request(dgram, timeout=5)
        assert first == bytes([0x60, 0x00, 0x0A, 0x0B])  # empty ACK on the request's MID
        assert await udp.request(dgram, timeout=0.3) == first  # a retransmission: same ACK
        second = parse(await udp.recv(5))
        assert (second.mtype, second.token, second.dotted) == (CON, b"\x77", "5.03")
        assert second.opt(14) == [bytes([9])]
        udp.send(bytes([0x60, 0x00]) + second.mid.to_bytes(2, "big"))  # ACK it
        assert ACK == 2
    finally:
        if udp is not None:
            udp.close()
        srv.close()


async def test_observe_when_the_core_refuses_the_listen_stream(make_gateway, client, tmp_path):
    from tests.support.servers import ours, running

    core = ours(tmp_path, extra={"ELASTIK_MAX_LISTEN_CONNECTIONS": "1"})
    with running(core):
        gw = await make_gateway(core.url)
        for w in ("a", "b"):
            core_http(core, "PUT", f"/home/m/lim{w}", w.encode(), authorization="Bearer w")
        first = client.request(coap_message("GET", gw.port, "m/lima", observe=0))
        r1 = await asyncio.wait_for(first.response, 10)
        assert r1.opt.observe is not None
        # The core's only /listen slot is taken: the second observation is answered,
        # then ended with the core's refusal instead of silently never notifying.
        second = client.request(coap_message("GET", gw.port, "m/limb", observe=0))
        r2 = await asyncio.wait_for(second.response, 10)
        assert (dotted(r2), r2.payload) == ("2.05", b"b")
        try:
            end = await asyncio.wait_for(second.observation.__aiter__().__anext__(), 10)
        except (StopAsyncIteration, Exception) as exc:  # aiocoap may report it as ended
            assert "Timeout" not in type(exc).__name__, exc
        else:
            assert dotted(end) == "5.03"
        assert gw.counters.get("observe_stream_refused") >= 1
        assert gw.counters.get("answered.5.03") >= 1
        for _ in range(50):
            if len(gw.hub) == 1:
                break
            await asyncio.sleep(0.1)
        assert len(gw.hub) == 1 and gw.counters.get("observations") == 1
        first.observation.cancel()


async def test_observe_of_a_world_larger_than_one_datagram(gw, client, our_core):
    big0, big1 = b"a" * 3000, b"b" * 5000
    core_http(our_core, "PUT", "/home/m/obsbig", big0, authorization="Bearer w")
    req = client.request(coap_message("GET", gw.port, "m/obsbig", observe=0))
    first = await asyncio.wait_for(req.response, 10)
    assert first.payload == big0  # block-wise, reassembled by the client
    it = req.observation.__aiter__()
    core_http(our_core, "PUT", "/home/m/obsbig", big1, authorization="Bearer w")
    note = await asyncio.wait_for(it.__anext__(), 10)
    assert note.payload == big1
    req.observation.cancel()
