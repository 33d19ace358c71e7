"""elastik_micro under the MicroPython unix port against a CoAP peer that misbehaves on
purpose: drops, duplicates, delays, reorders, separate responses, resets, Block2.

Timing is checked only from the peer's kernel arrival timestamps, relative to each other.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from fw_support import (
    ACK,
    AUTH_OPTION,
    CON,
    NON,
    RST,
    Peer,
    Received,
    coap_message,
    code,
    fw_peer,
    run_mp,
)

ETIMEDOUT = 110
ECONNRESET = 104
CHANGED = code(2, 4)
CONTENT = code(2, 5)


def client_op(peer: Peer, **kw: Any) -> list[Any]:
    # 300 ms: long enough that a loaded CI machine does not cause spurious retransmissions
    # in tests that count requests; tests about retransmission pass their own.
    args = {"host": "127.0.0.1", "port": peer.port, "timeout_ms": 300, "retries": 4}
    args.update(kw)
    return ["client", args]


def answer(peer: Peer, rx: Received, c: int = CHANGED, payload: bytes = b"", **kw: Any) -> None:
    """Piggybacked on an ACK for CON, a NON with a fresh MID for NON."""
    if rx.mtype == CON:
        data = coap_message(ACK, c, rx.mid, rx.token, payload, **kw)
    else:
        data = coap_message(NON, c, (rx.mid + 1000) & 0xFFFF, rx.token, payload, **kw)
    peer.send(data, rx.addr)


def only_requests(handler: Any) -> Any:
    def h(peer: Peer, rx: Received) -> None:
        if rx.msg is not None and 0 < rx.code < 32:
            handler(peer, rx)

    return h


def outcome(line: dict[str, Any]) -> Any:
    return line.get("r", line.get("e"))


def test_requests_decode_with_aiocoap_option_by_option() -> None:
    token = "t" * 300  # option length past the 269 boundary
    with fw_peer(only_requests(lambda p, rx: answer(p, rx))) as peer:
        res = run_mp(
            [
                client_op(peer, token=token),
                ["put", "sensor/temp", "21.5"],
                ["put", "/home/raw", {"hex": "00ff10"}, 42],
                ["put", "nocf", "x", None],
                ["post", "sensor/log", "line"],
                ["delete", "sensor/temp"],
                ["get", "caf\u00e9/" + "s" * 255],
            ]
        ).results()
    assert [outcome(r) for r in res[1:6]] == [204, 204, 204, 204, 204]
    assert res[6]["r"]["len"] == 0
    reqs = peer.requests()
    assert [r.code for r in reqs] == [3, 3, 3, 2, 4, 1]
    assert all(r.mtype == CON for r in reqs)
    assert all(len(r.token) == 4 for r in reqs)
    assert len({r.mid for r in reqs}) == 6 and len({r.token for r in reqs}) == 6
    m = [r.msg for r in reqs]
    assert all(x is not None for x in m)
    assert m[0].opt.uri_path == ("sensor", "temp")
    assert m[0].opt.content_format == 0 and m[0].payload == b"21.5"
    assert [o.value for o in m[0].opt.get_option(AUTH_OPTION)] == [token.encode()]
    assert m[1].opt.uri_path == ("home", "raw") and m[1].opt.content_format == 42
    assert m[1].payload == b"\x00\xff\x10"
    assert m[2].opt.content_format is None
    assert m[3].opt.content_format is None and m[3].payload == b"line"
    assert m[4].payload == b""
    assert m[5].opt.uri_path == ("caf\u00e9", "s" * 255)


def test_datagram_of_exactly_1152_bytes_is_sent_and_1153_refused_before_sending() -> None:
    # header 4 + token 4 + Uri-Path "x" 2 + Content-Format 0 (1) + marker 1 = 12 bytes
    with fw_peer(only_requests(lambda p, rx: answer(p, rx))) as peer:
        res = run_mp(
            [
                client_op(peer),
                ["put", "x", {"rep": ["a", 1140]}],
                ["put", "x", {"rep": ["a", 1141]}],
                ["put", "x" * 14, {"rep": ["a", 1140]}],
            ]
        ).results()
    assert outcome(res[1]) == 204
    assert res[2]["e"] == "ValueError" and "1152" in res[2]["msg"]
    assert res[3]["e"] == "ValueError"
    assert [len(r.raw) for r in peer.received] == [1152]


def test_retransmissions_keep_mid_and_token_and_double_their_interval() -> None:
    def drop_three(peer: Peer, rx: Received) -> None:
        if len(peer.requests()) >= 4:
            answer(peer, rx)

    with fw_peer(only_requests(drop_three)) as peer:
        res = run_mp([client_op(peer, timeout_ms=100, retries=4), ["put", "a", "1"]]).results()
    assert outcome(res[1]) == 204
    reqs = peer.requests()
    assert len(reqs) == 4
    assert len({r.raw for r in reqs}) == 1  # identical datagrams: same MID, token, body
    gaps = [(b.t - a.t) * 1000 for a, b in itertools.pairwise(reqs)]
    slack = 250  # scheduling noise on a loaded CI machine; timers only ever fire late
    for k, gap in enumerate(gaps):
        low = 100 * 2**k  # ACK_TIMEOUT * 2^k
        assert low - 2 <= gap <= 1.5 * low + slack, (k, gaps)
    assert gaps[0] < gaps[1] < gaps[2], gaps


def test_no_answer_raises_etimedout_after_max_retransmit_and_client_stays_usable() -> None:
    def silent_first(peer: Peer, rx: Received) -> None:
        if rx.msg is not None and rx.msg.opt.uri_path == ("second",):
            answer(peer, rx)

    with fw_peer(only_requests(silent_first)) as peer:
        res = run_mp(
            [
                client_op(peer, timeout_ms=30, retries=2),
                ["put", "first", "1"],
                ["put", "second", "2"],
            ]
        ).results()
    assert res[1]["e"] == "OSError" and res[1]["errno"] == ETIMEDOUT
    assert outcome(res[2]) == 204
    first = [r for r in peer.requests() if r.msg.opt.uri_path == ("first",)]
    assert len(first) == 3  # the original and MAX_RETRANSMIT=2 copies


def test_strays_garbage_and_duplicates_are_ignored() -> None:
    def noisy(peer: Peer, rx: Received) -> None:
        a = rx.addr
        peer.send(b"\x40", a)  # shorter than a header
        peer.send(b"\x80\x44" + rx.raw[2:4], a)  # version 2
        peer.send(coap_message(ACK, code(4, 4), (rx.mid + 1) & 0xFFFF, rx.token), a)  # other MID
        peer.send(coap_message(ACK, code(4, 4), rx.mid, b"zzzz"), a)  # our MID, other token
        peer.send(coap_message(NON, code(4, 4), 7, b"yyyy"), a)  # someone else's NON
        bad = bytearray(coap_message(ACK, code(4, 4), rx.mid, rx.token, b"x", content_format=0))
        bad[8] = 0xF0  # option nibble 15: malformed
        peer.send(bytes(bad), a)
        good = coap_message(ACK, CONTENT, rx.mid, rx.token, b"real")
        peer.send(good, a, delay=0.01)
        peer.send(good, a, delay=0.02)  # duplicate

    with fw_peer(only_requests(noisy)) as peer:
        res = run_mp([client_op(peer), ["get", "a"], ["get", "b"]]).results()
    assert outcome(res[1]) == {"len": 4, "text": "real", "sha": res[1]["r"]["sha"]}
    assert res[2]["r"]["text"] == "real"
    assert len(peer.requests()) == 2  # nothing was retransmitted


def test_late_duplicate_of_an_old_response_does_not_answer_the_next_request() -> None:
    def reorder(peer: Peer, rx: Received) -> None:
        n = len(peer.requests())
        reply = coap_message(ACK, CONTENT, rx.mid, rx.token, b"answer%d" % n)
        if n == 1:
            peer.send(reply, rx.addr)
            peer.send(reply, rx.addr, delay=0.03)  # arrives during the next request
        else:
            peer.send(reply, rx.addr, delay=0.06)

    with fw_peer(only_requests(reorder)) as peer:
        res = run_mp([client_op(peer, timeout_ms=200), ["get", "a"], ["get", "a"]]).results()
    assert [r["r"]["text"] for r in res[1:]] == ["answer1", "answer2"]


def test_delayed_answer_to_a_retransmitted_request_is_taken_once() -> None:
    def slow_first(peer: Peer, rx: Received) -> None:
        n = len(peer.requests())
        # the first copy is answered late, after the retransmission; both answers arrive
        peer.send(coap_message(ACK, CHANGED, rx.mid, rx.token), rx.addr, 0.08 if n == 1 else 0)

    with fw_peer(only_requests(slow_first)) as peer:
        res = run_mp([client_op(peer, timeout_ms=50), ["put", "a", "1"], ["put", "a", "2"]])
    lines = res.results()
    assert [outcome(r) for r in lines[1:]] == [204, 204]


def _separate(peer: Peer, rx: Received, *, response_first: bool = False) -> None:
    empty = coap_message(ACK, 0, rx.mid)
    seen = peer.state.setdefault("seen", set())
    if rx.mid in seen:  # a retransmission: acknowledge it again, answer once
        peer.send(empty, rx.addr)
        return
    seen.add(rx.mid)
    resp_mid = (rx.mid + 0x4000) & 0xFFFF
    peer.state.setdefault("resp_mids", []).append(resp_mid)
    resp = coap_message(CON, CHANGED, resp_mid, rx.token)
    if response_first:
        peer.send(resp, rx.addr)
        peer.send(empty, rx.addr, delay=0.01)
    else:
        peer.send(empty, rx.addr)
        peer.send(resp, rx.addr, delay=0.4)  # later than ACK_TIMEOUT: no retransmission


def _acks(peer: Peer, mid: int) -> list[Received]:
    return [r for r in peer.received if r.msg is not None and r.mtype == ACK and r.mid == mid]


def test_separate_response_is_acknowledged_and_stops_retransmission() -> None:
    with fw_peer(only_requests(_separate)) as peer:
        res = run_mp([client_op(peer, timeout_ms=150), ["put", "a", "1"]]).results()
    assert outcome(res[1]) == 204
    assert len(peer.requests()) == 1
    (resp_mid,) = peer.state["resp_mids"]
    acks = _acks(peer, resp_mid)
    assert len(acks) == 1 and acks[0].code == 0 and acks[0].raw == acks[0].raw[:4]


def test_separate_response_arriving_before_its_empty_ack() -> None:
    def h(peer: Peer, rx: Received) -> None:
        _separate(peer, rx, response_first=True)

    with fw_peer(only_requests(h)) as peer:
        res = run_mp([client_op(peer), ["put", "a", "1"], ["put", "a", "2"]]).results()
    assert [outcome(r) for r in res[1:]] == [204, 204]
    for mid in peer.state["resp_mids"]:
        assert len(_acks(peer, mid)) == 1


def test_repeated_separate_response_is_acknowledged_again() -> None:
    def h(peer: Peer, rx: Received) -> None:
        first = peer.state.get("first")
        if first is None or first.mid == rx.mid:
            peer.state["first"] = rx
            _separate(peer, rx)
            return
        # our ACK "was lost": the old CON response comes again before the next answer
        old = coap_message(CON, CHANGED, peer.state["resp_mids"][0], first.token)
        peer.send(old, rx.addr)
        peer.send(coap_message(ACK, CHANGED, rx.mid, rx.token), rx.addr, delay=0.02)

    with fw_peer(only_requests(h)) as peer:
        res = run_mp([client_op(peer), ["put", "a", "1"], ["put", "a", "2"]]).results()
    assert [outcome(r) for r in res[1:]] == [204, 204]
    assert len(_acks(peer, peer.state["resp_mids"][0])) == 2


def test_separate_response_that_never_comes_times_out_without_retransmitting() -> None:
    def ack_only(peer: Peer, rx: Received) -> None:
        peer.send(coap_message(ACK, 0, rx.mid), rx.addr)

    with fw_peer(only_requests(ack_only)) as peer:
        res = run_mp([client_op(peer, wait_ms=400), ["put", "a", "1"]]).results()
    assert res[1]["e"] == "OSError" and res[1]["errno"] == ETIMEDOUT
    assert len(peer.requests()) == 1


def test_unknown_confirmable_message_and_ping_get_a_reset() -> None:
    def h(peer: Peer, rx: Received) -> None:
        peer.send(coap_message(CON, 0, 0x1111), rx.addr)  # ping
        peer.send(coap_message(CON, CHANGED, 0x2222, b"qqqq"), rx.addr)  # not ours
        answer(peer, rx)

    with fw_peer(only_requests(h)) as peer:
        res = run_mp([client_op(peer), ["put", "a", "1"], ["put", "a", "2"]]).results()
    assert [outcome(r) for r in res[1:]] == [204, 204]
    resets = {r.mid for r in peer.received if r.msg is not None and r.mtype == RST}
    assert resets == {0x1111, 0x2222}


def test_non_mode_puts_are_fire_and_forget_and_gets_take_a_non_answer() -> None:
    def h(peer: Peer, rx: Received) -> None:
        if rx.code == 1:
            answer(peer, rx, CONTENT, b"non-body")

    with fw_peer(only_requests(h)) as peer:
        res = run_mp(
            [client_op(peer, confirmable=False), ["put", "a", "1"], ["get", "a"]]
        ).results()
    assert res[1]["r"] is None
    assert res[2]["r"]["text"] == "non-body"
    assert [r.mtype for r in peer.requests()] == [NON, NON]


def test_reset_raises_econnreset() -> None:
    with fw_peer(
        only_requests(lambda p, rx: p.send(coap_message(RST, 0, rx.mid), rx.addr))
    ) as peer:
        res = run_mp([client_op(peer), ["put", "a", "1"]]).results()
    assert res[1]["e"] == "OSError" and res[1]["errno"] == ECONNRESET


@pytest.mark.parametrize(
    ("c", "payload", "max_age", "want_code"),
    [
        (code(4, 4), b"not found\n", None, 404),
        (code(4, 1), b"error\n", None, 401),
        (code(5, 3), b"core unavailable\n", 7, 503),
        (code(4, 13), b"", None, 413),
    ],
)
def test_error_codes_raise_coap_error_with_message(
    c: int, payload: bytes, max_age: int | None, want_code: int
) -> None:
    def h(peer: Peer, rx: Received) -> None:
        answer(peer, rx, c, payload, content_format=0, max_age=max_age)

    with fw_peer(only_requests(h)) as peer:
        res = run_mp([client_op(peer), ["put", "a", "1"], ["get", "a"]]).results()
    for line in res[1:]:
        assert line["e"] == "CoapError"
        assert line["code"] == want_code
        assert line["msg"] == payload.decode()
        assert line["max_age"] == max_age


BODY = bytes((i * 7 + i // 251) % 256 for i in range(3000))


def block_server(body: bytes, szx: int, *, wrong_num: bool = False, etags: bool = False) -> Any:
    size = 16 << szx

    def h(peer: Peer, rx: Received) -> None:
        assert rx.msg is not None
        b2 = rx.msg.opt.block2
        num = b2.block_number if b2 else 0
        if b2 is not None:
            size_here = b2.size
            assert size_here == size, (size_here, size)
        chunk = body[num * size : (num + 1) * size]
        more = (num + 1) * size < len(body)
        reply_num = num + 1 if wrong_num and num == 1 else num
        etag = (b"v%d" % num if num >= 2 else b"v0") if etags else None
        peer.send(
            coap_message(
                ACK, CONTENT, rx.mid, rx.token, chunk, block2=(reply_num, more, szx), etag=etag
            ),
            rx.addr,
        )

    return only_requests(h)


@pytest.mark.parametrize("szx", [6, 2])
def test_block2_get_assembles_the_whole_body(szx: int) -> None:
    with fw_peer(block_server(BODY, szx)) as peer:
        res = run_mp([client_op(peer), ["get", "big", 4096]]).results()
    import hashlib

    assert res[1]["r"]["len"] == len(BODY)
    assert res[1]["r"]["sha"] == hashlib.sha256(BODY).hexdigest()
    nums = [r.msg.opt.block2.block_number if r.msg.opt.block2 else 0 for r in peer.requests()]
    assert nums == list(range(-(-len(BODY) // (16 << szx))))


def test_block2_body_over_max_bytes_raises_value_error() -> None:
    with fw_peer(block_server(BODY, 6)) as peer:
        res = run_mp([client_op(peer), ["get", "big"], ["get", "big", 2999]]).results()
    assert res[1]["r"]["len"] == 3000  # default maximum is 4096
    assert res[2]["e"] == "ValueError" and "max_bytes" in res[2]["msg"]


def test_block2_wrong_block_number_and_changed_etag_raise_value_error() -> None:
    with fw_peer(block_server(BODY, 4, wrong_num=True)) as peer:
        res = run_mp([client_op(peer), ["get", "big"]]).results()
    assert res[1]["e"] == "ValueError"
    with fw_peer(block_server(BODY, 4, etags=True)) as peer:
        res = run_mp([client_op(peer), ["get", "big"]]).results()
    assert res[1]["e"] == "ValueError" and "changed" in res[1]["msg"]


def test_single_datagram_body_over_max_bytes_raises_value_error() -> None:
    with fw_peer(only_requests(lambda p, rx: answer(p, rx, CONTENT, b"z" * 100))) as peer:
        res = run_mp([client_op(peer), ["get", "a", 99], ["get", "a", 100]]).results()
    assert res[1]["e"] == "ValueError"
    assert res[2]["r"]["len"] == 100


@pytest.mark.parametrize(
    ("op", "error"),
    [
        (["put", "", "1"], "ValueError"),
        (["put", "///", "1"], "ValueError"),
        (["put", "a/" + "s" * 256, "1"], "ValueError"),
        (["put", "a", 12], "TypeError"),
        (["put", "a", "1", -1], "ValueError"),
        (["get", ""], "ValueError"),
        (["put", "/".join(["s" * 250] * 5), "1"], "ValueError"),  # Uri-Path past 1152 bytes
        (["get", "/".join(["s" * 250] * 5)], "ValueError"),
        (["delete", "/".join(["s" * 250] * 5)], "ValueError"),
    ],
)
def test_bad_input_raises_and_sends_nothing(op: list[Any], error: str) -> None:
    with fw_peer(only_requests(lambda p, rx: answer(p, rx))) as peer:
        res = run_mp(
            [client_op(peer), op, ["put", "ok", "1"], ["put", "x", {"rep": ["a", 1141]}]]
        ).results()
    assert res[1]["e"] == error
    assert outcome(res[2]) == 204
    assert res[3]["e"] == "ValueError"  # the 1152-byte buffer did not grow
    assert len(peer.requests()) == 1


def test_bad_timing_parameters_are_refused() -> None:
    with fw_peer(only_requests(lambda p, rx: answer(p, rx))) as peer:
        res = run_mp(
            [
                client_op(peer, timeout_ms=0),
                client_op(peer, retries=-1),
                client_op(peer, random_factor=0.5),
            ]
        ).results()
    assert [r["e"] for r in res] == ["ValueError"] * 3


def test_async_client_runs_concurrent_requests_in_turn() -> None:
    def h(peer: Peer, rx: Received) -> None:
        if rx.msg is not None and rx.msg.opt.uri_path == ("sep",):
            _separate(peer, rx)
        elif rx.code == 1:
            answer(peer, rx, CONTENT, b"async-body")
        else:
            answer(peer, rx, CHANGED)

    with fw_peer(only_requests(h)) as peer:
        res = run_mp(
            [
                client_op(peer, **{"async": True}),
                [
                    "gather",
                    [["put", "a", "1"], ["post", "b", "2"], ["get", "c"], ["put", "sep", "3"]],
                ],
                ["delete", "d"],
            ]
        ).results()
    got = res[1]["r"]
    assert got[:2] == [204, 204] and got[2]["text"] == "async-body" and got[3] == 204
    assert outcome(res[2]) == 204
    assert len(peer.requests()) == 5


async def test_async_client_on_cpython_asyncio() -> None:
    from elastik_micro_async import AsyncClient

    def h(peer: Peer, rx: Received) -> None:
        if rx.code == 1:
            answer(peer, rx, CONTENT, b"from-cpython")
        else:
            peer.send(coap_message(ACK, CHANGED, rx.mid, rx.token), rx.addr, delay=0.02)

    with fw_peer(only_requests(h)) as peer:
        c = AsyncClient("127.0.0.1", peer.port, token="w", timeout_ms=300)
        try:
            got = await asyncio.gather(c.put("a", "1"), c.post("b", b"2"), c.get("c"))
        finally:
            c.close()
    assert got == [204, 204, b"from-cpython"]
    assert len(peer.requests()) == 3
