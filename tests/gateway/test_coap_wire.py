"""Hand-built datagrams over real UDP to the gateway in front of our real core, checked
byte by byte against PROTOCOL.md §18 (and our documented departures from it)."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.coapwire import ACK, NON, RST, UdpClient, build, parse, path_options, uint
from tests.gateway.conftest import audit_events, core_http

GET, POST, PUT, DELETE = 1, 2, 3, 4
AUTH = 65001


def opts(
    path: str, *extra: tuple[int, bytes], token: bytes | None = b"w"
) -> list[tuple[int, bytes]]:
    out = path_options(path) + list(extra)
    if token is not None:
        out.append((AUTH, token))
    return out


@pytest.fixture
async def gw(make_gateway, our_core):
    return await make_gateway(our_core.url)


@pytest.fixture
async def udp(gw):
    c = await UdpClient.open(gw.port)
    yield c
    c.close()


async def test_put_con_gets_piggybacked_ack_with_mid_and_token(gw, udp, our_core):
    raw = await udp.request(
        build(
            PUT, mid=0xBEEF, token=b"\xaa\xbb", options=opts("wire/put1", (12, b"")), payload=b"hi"
        )
    )
    assert raw is not None
    r = parse(raw)
    assert (r.mtype, r.dotted, r.mid, r.token) == (ACK, "2.01", 0xBEEF, b"\xaa\xbb")
    assert r.payload == b""
    # Beyond §18: the new ETag as an 8-byte CoAP ETag.
    assert [n for n, _ in r.options] == [4] and len(r.opt(4)[0]) == 8
    status, headers, body = core_http(our_core, "GET", "/home/wire/put1")
    assert (status, body, headers["content-type"]) == (200, b"hi", "text/plain; charset=utf-8")
    raw = await udp.request(build(PUT, mid=0xBEF0, options=opts("wire/put1"), payload=b"again"))
    assert parse(raw).dotted == "2.04"
    assert (
        core_http(our_core, "GET", "/home/wire/put1")[1]["content-type"]
        == "application/octet-stream"
    )


async def test_get_answers_body_with_content_format(gw, udp, our_core):
    core_http(
        our_core,
        "PUT",
        "/home/wire/get1",
        b"hello",
        authorization="Bearer w",
        content_type="text/plain",
    )
    r = parse(await udp.request(build(GET, mid=7, options=opts("wire/get1", token=None))))
    assert (r.mtype, r.dotted, r.mid, r.token, r.payload) == (ACK, "2.05", 7, b"\x01", b"hello")
    assert r.opt(12) == [b""]  # text/plain -> 0, sent as an empty uint
    assert len(r.opt(4)[0]) == 8


async def test_error_answers_carry_empty_content_format_and_text(gw, udp):
    cases = [
        (build(GET, options=opts("wire/missing", token=None)), "4.04", b"not found\n"),
        (build(GET, options=[(11, b"home")]), "4.00", b"bad world name\n"),
        (build(GET, options=[(11, b"proc"), (11, b"worlds")]), "4.00", b"bad world name\n"),
        (build(GET, options=[(11, b"a"), (11, b".."), (11, b"b")]), "4.00", b"bad world name\n"),
        (build(GET, options=[(11, b"a\\b")]), "4.00", b"bad world name\n"),
        (build(GET, options=[(11, b"a\x01b")]), "4.00", b"bad world name\n"),
        (build(GET, options=[]), "4.00", b"bad world name\n"),
        (build(PUT, options=opts("wire/e", token=b"wrong"), payload=b"x"), "4.01", b"error\n"),
        (build(PUT, options=opts("wire/e", token=b"w ")), "4.01", b"error\n"),
        (build(PUT, options=opts("wire/e", token=None)), "4.01", b"error\n"),
        (build(5, options=opts("wire/e")), "4.05", b"method not allowed\n"),  # FETCH
        (build(7, options=opts("wire/e")), "4.05", b"method not allowed\n"),  # iPATCH
    ]
    for i, (dgram, code, payload) in enumerate(cases):
        dgram = dgram[:2] + (100 + i).to_bytes(2, "big") + dgram[4:]
        raw = await udp.request(dgram)
        assert raw is not None, (i, code)
        r = parse(raw)
        assert (r.dotted, r.payload, r.mid) == (code, payload, 100 + i), i
        assert r.options == [(12, b"")], i


async def test_token_option_last_occurrence_counts(gw, udp):
    dgram = build(
        PUT, options=[*path_options("wire/tok"), (AUTH, b"nope"), (AUTH, b"w")], payload=b"1"
    )
    assert parse(await udp.request(dgram)).dotted == "2.01"
    dgram = build(PUT, mid=2, options=[*path_options("wire/tok"), (AUTH, b"w"), (AUTH, b"nope")])
    assert parse(await udp.request(dgram)).dotted == "4.01"


async def test_uri_path_is_not_percent_decoded_and_slash_splits(gw, udp, our_core):
    assert (
        parse(await udp.request(build(PUT, options=opts("wire/u%2Fv"), payload=b"p"))).dotted
        == "2.01"
    )
    assert core_http(our_core, "GET", "/home/wire/u%252Fv")[2] == b"p"
    dgram = build(PUT, mid=9, options=[(11, b"wire/split"), (AUTH, b"w")], payload=b"s")
    assert parse(await udp.request(dgram)).dotted == "2.01"
    assert core_http(our_core, "GET", "/home/wire/split")[2] == b"s"
    # listen/... is just a world under home/
    dgram = build(PUT, mid=10, options=opts("listen/x"), payload=b"l")
    assert parse(await udp.request(dgram)).dotted == "2.01"
    assert core_http(our_core, "GET", "/home/listen/x")[2] == b"l"


async def test_non_request_gets_non_answer(gw, udp):
    # RFC 7252 §4.3: a NON answer has its own Message ID and echoes the token (the
    # reference echoes the MID too; clients match answers by token).
    dgram = build(PUT, mtype=NON, mid=0x4242, token=b"\x33", options=opts("wire/non"), payload=b"n")
    r = parse(await udp.request(dgram))
    assert (r.mtype, r.dotted, r.token) == (NON, "2.01", b"\x33")
    dgram = build(GET, mtype=NON, mid=0x4243, token=b"\x34", options=opts("wire/non", token=None))
    r = parse(await udp.request(dgram))
    assert (r.mtype, r.dotted, r.token, r.payload) == (NON, "2.05", b"\x34", b"n")


async def test_oversize_datagram_gets_bare_rst_and_1152_is_accepted(gw, udp, our_core):
    base = build(PUT, mid=0xCAFE, options=opts("wire/big"), payload=b"")
    big = base + b"\xff" + b"x" * (1153 - len(base) - 1)
    assert len(big) == 1153
    assert await udp.request(big) == b"\x70\x00\xca\xfe"
    exact = base[:2] + b"\xca\xff" + base[4:] + b"\xff" + b"y" * (1152 - len(base) - 1)
    assert len(exact) == 1152
    r = parse(await udp.request(exact))
    assert r.dotted == "2.01"
    assert len(core_http(our_core, "GET", "/home/wire/big")[2]) == 1152 - len(base) - 1
    assert gw.counters.get("rst.oversize") == 1


async def test_largest_single_datagram_get_and_one_more_byte_goes_blockwise(gw, udp, our_core):
    # §18.4: with a 1-byte token and CF 42 the largest body in one datagram is 1144 bytes.
    for size in (1144, 1145):
        core_http(our_core, "PUT", f"/home/wire/l{size}", b"z" * size, authorization="Bearer w")
    r = parse(await udp.request(build(GET, mid=1, options=opts("wire/l1144", token=None))))
    assert r.dotted == "2.05" and r.payload == b"z" * 1144
    assert r.options == [(12, bytes([42]))]  # the ETag left off so the body still fits
    assert 4 + 1 + 2 + 1 + 1144 == 1152
    r = parse(await udp.request(build(GET, mid=2, options=opts("wire/l1145", token=None))))
    assert r.dotted == "2.05" and len(r.payload) == 1024
    block2 = r.opt(23)[0]
    assert block2 == bytes([0x0E])  # num 0, more, szx 6 (1024)
    assert r.opt(28) == [uint(1145)]  # Size2
    dgram = build(GET, mid=3, options=opts("wire/l1145", (23, bytes([0x16])), token=None))
    r2 = parse(await udp.request(dgram))
    assert r2.dotted == "2.05" and r2.payload == b"z" * 121 and r2.opt(23) == [bytes([0x16])]


@pytest.mark.parametrize(
    ("name", "dgram", "counter"),
    [
        ("short", b"\x40\x01\x00", "drop.short"),
        ("version 2", b"\x81\x01\x00\x01\x01", "drop.bad_version"),
        ("version 0", b"\x01\x01\x00\x01\x01", "drop.bad_version"),
        ("tkl 9", b"\x49\x01\x00\x01" + b"t" * 9, "drop.bad_token_length"),
        ("tkl 15", b"\x4f\x01\x00\x01" + b"t" * 15, "drop.bad_token_length"),
        ("truncated token", b"\x48\x01\x00\x01abc", "drop.truncated_token"),
        ("truncated option", b"\x41\x01\x00\x01\x01\xb5home", "drop.truncated_option"),
        ("truncated ext delta", b"\x41\x01\x00\x01\x01\xd1", "drop.truncated_option"),
        ("nibble 15 delta", b"\x41\x01\x00\x01\x01\xf1a", "drop.option_nibble_15"),
        ("nibble 15 length", b"\x41\x01\x00\x01\x01\xbfa", "drop.option_nibble_15"),
        (
            "content format 3 bytes",
            build(PUT, options=[(11, b"a"), (12, b"\x00\x00\x2a")]),
            "drop.content_format_too_long",
        ),
        ("non-utf8 path", build(GET, options=[(11, b"\xff\xfe")]), "drop.uri_path_not_utf8"),
        (
            "marker without payload",
            build(GET, options=[(11, b"a")]) + b"\xff",
            "drop.empty_payload_after_marker",
        ),
        (
            "request in ACK",
            build(GET, mtype=ACK, options=[(11, b"a")]),
            "drop.request_in_ack_or_rst",
        ),
        (
            "request in RST",
            build(GET, mtype=RST, options=[(11, b"a")]),
            "drop.request_in_ack_or_rst",
        ),
        ("reserved class 1", build(0x21, options=[(11, b"a")]), "drop.reserved_code"),
        ("empty with token", b"\x41\x00\x00\x01\x01", "drop.empty_with_content"),
    ],
)
async def test_malformed_datagrams_are_dropped_and_counted(gw, udp, name, dgram, counter):
    assert await udp.request(dgram, timeout=0.4) is None, name
    assert gw.counters.get(counter) == 1, (name, gw.counters.snapshot())
    # still responsive
    r = await udp.request(build(GET, mid=0x7777, options=opts("wire/alive", token=None)))
    assert r is not None and parse(r).dotted == "4.04"


async def test_unknown_critical_option_is_402_and_elective_ignored(gw, udp):
    r = parse(await udp.request(build(GET, options=opts("wire/x", (2049, b"v"), token=None))))
    assert (r.dotted, r.payload) == ("4.02", b"bad option\n")
    r = parse(
        await udp.request(build(GET, mid=2, options=opts("wire/x", (2048, b"v"), token=None)))
    )
    assert r.dotted == "4.04"
    # Uri-Host (3), Uri-Query (15) and Accept (17) are critical but understood.
    extra = [(3, b"example"), (15, b"a=1"), (17, b"")]
    r = parse(await udp.request(build(GET, mid=3, options=opts("wire/x", *extra, token=None))))
    assert r.dotted == "4.04"


async def test_coap_ping_gets_rst(gw, udp):
    # RFC 7252 §4.3 (a departure from the reference, which answers 4.05).
    assert await udp.request(b"\x40\x00\x12\x34") == b"\x70\x00\x12\x34"


async def test_retransmitted_con_put_is_applied_once_and_answered_again(gw, udp, our_core):
    dgram = build(PUT, mid=0x5151, token=b"\x09\x08", options=opts("wire/dedup"), payload=b"once")
    first = await udp.request(dgram)
    second = await udp.request(dgram)
    assert first is not None and first == second
    assert parse(first).dotted == "2.01"
    assert audit_events(our_core, "home/wire/dedup") == 1
    assert gw.counters.get("duplicates") == 1


async def test_racing_retransmission_is_applied_once(gw, udp, our_core):
    # Both copies arrive before the first is answered: the message layer drops the second,
    # and the Idempotency-Key would catch it even if the exchange had been evicted.
    dgram = build(POST, mid=0x6161, token=b"\x07", options=opts("wire/race"), payload=b"+")
    core_http(our_core, "PUT", "/home/wire/race", b"", authorization="Bearer w")
    udp.send(dgram)
    udp.send(dgram)
    answers = [await udp.recv(), await udp.recv(timeout=1.0)]
    assert parse(answers[0]).dotted == "2.04"
    assert core_http(our_core, "GET", "/home/wire/race")[2] == b"+"
    assert audit_events(our_core, "home/wire/race") == 2  # the PUT and one append


async def test_idempotency_key_covers_an_evicted_exchange(make_gateway, our_core):
    gw = await make_gateway(our_core.url, exchange_cache=1)
    udp = await UdpClient.open(gw.port)
    try:
        core_http(our_core, "PUT", "/home/wire/evict", b"", authorization="Bearer w")
        dgram = build(POST, mid=0x7171, token=b"\x05", options=opts("wire/evict"), payload=b"+")
        assert parse(await udp.request(dgram)).dotted == "2.04"
        # Push the exchange out of the 1-entry cache, then retransmit.
        await udp.request(build(GET, mid=1, options=opts("wire/other", token=None)))
        assert parse(await udp.request(dgram)).dotted == "2.04"
        assert core_http(our_core, "GET", "/home/wire/evict")[2] == b"+"
        assert gw.counters.get("exchange_cache_evictions") >= 1
    finally:
        udp.close()


async def test_flood_of_10000_datagrams_is_counted_and_gateway_stays_responsive(gw, our_core):
    udp = await UdpClient.open(gw.port)
    try:
        for i in range(10_000):
            kind = i % 4
            if kind == 0:
                udp.send(b"\x81\x01" + i.to_bytes(2, "big"))  # bad version
            elif kind == 1:
                udp.send(b"\x4f\x01" + i.to_bytes(2, "big"))  # TKL 15
            elif kind == 2:
                udp.send(b"\x40\x01" + i.to_bytes(2, "big") + b"\xf0")  # nibble 15
            else:
                udp.send(build(GET, mid=i, mtype=NON, options=[(11, b"a"), (11, b"")]))
            if i % 2 == 0:
                await asyncio.sleep(0)  # the gateway shares this event loop: let it read
        await asyncio.sleep(0.5)
        probe = await UdpClient.open(gw.port)
        try:
            dgram = build(GET, mid=0xFFFF, options=opts("wire/alive2", token=None))
            r = parse(await probe.request(dgram, timeout=5))
            assert r.dotted == "4.04"
        finally:
            probe.close()
        snap = gw.counters.snapshot()
        dropped = sum(v for k, v in snap.items() if k.startswith("drop."))
        # The kernel may lose some of the burst; every datagram that arrived is accounted
        # for: dropped with a counter, or a request that was answered.
        assert snap["datagrams"] > 5000
        assert snap["datagrams"] == dropped + snap["requests"], snap
        assert snap.get("drop.bad_version", 0) > 0 and snap.get("drop.option_nibble_15", 0) > 0
        assert snap.get("answered.4.00", 0) + snap.get("refused.bad_world_name", 0) > 0
        assert snap["exchange_cache_entries"] <= gw.cfg.exchange_cache
        assert gw.site.in_flight == 0
    finally:
        udp.close()
