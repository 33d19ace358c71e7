"""elastik_micro under the MicroPython unix port against the real gateway in front of the
real core (started by the ``target`` fixture): round trips, error codes, payloads at the
datagram limit, Block2, and a board-sized heap running the mpy-cross compiled client."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from fw_support import Target, fw_target, run_board, run_mp

pytestmark = pytest.mark.xdist_group("fw_gateway")

# Footprint limits (sizes, not times): docs/benchmarks.md reports the measured figures.
HEAP = "24k"
MAX_ALLOC_PER_PUT = 256


def client(t: Target, token: str | None = None, **kw: Any) -> list[Any]:
    args: dict[str, Any] = {"host": t.host, "port": t.coap_port, "timeout_ms": 500}
    if token:
        args["token"] = token
    args.update(kw)
    return ["client", args]


def outcome(line: dict[str, Any]) -> Any:
    if "e" in line:
        return (line["e"], line.get("code", line.get("msg")))
    r = line["r"]
    return r["text"] if isinstance(r, dict) and "text" in r else r


def test_put_get_post_delete_round_trip(gateway_only: Target) -> None:
    t = gateway_only
    res = run_mp(
        [
            client(t, t.write_token),
            ["put", "fw/rt", "a"],
            ["put", "fw/rt", "b"],
            ["get", "fw/rt"],
            ["post", "fw/rt", "c"],
            ["get", "home/fw/rt"],
            client(t, t.approve_token),
            ["delete", "fw/rt"],
            ["get", "fw/rt"],
        ]
    ).results()
    got = [outcome(r) for r in res]
    assert got == [None, 201, 204, "b", 204, "bc", None, 202, ("CoapError", 404)]
    status, _, _ = t.http_request("GET", "/home/fw/rt")
    assert status == 404


def test_error_codes_carry_code_and_message(gateway_only: Target) -> None:
    t = gateway_only
    res = run_mp(
        [
            client(t, "wrong-token"),
            ["put", "fw/err", "1"],
            client(t, t.write_token),
            ["get", "fw/missing"],
            ["put", "fw//empty-segment", "1"],
            ["post", "fw/missing", "1"],
            ["delete", "fw/err"],
        ]
    ).results()
    errors = [(r.get("code"), r.get("msg")) for r in res if r.get("e") == "CoapError"]
    assert [c for c, _ in errors] == [401, 404, 400, 404, 401]
    assert all(isinstance(m, str) and m.endswith("\n") for _, m in errors)
    status, _, _ = t.http_request("GET", "/home/fw/err")
    assert status == 404  # the refused put changed nothing


def test_content_format_decides_the_stored_media_type(target: Target) -> None:
    t = target
    run_mp(
        [
            client(t, t.write_token),
            ["put", "fw/cf-text", "hello"],
            ["put", "fw/cf-bin", {"hex": "00ff"}, 42],
            ["put", "fw/cf-none", "x", None],
        ]
    ).results()
    types = {
        p: t.http_request("GET", f"/home/{p}")[1]["content-type"]
        for p in ("fw/cf-text", "fw/cf-bin", "fw/cf-none")
    }
    assert types["fw/cf-text"].startswith("text/plain")
    assert types["fw/cf-bin"] == "application/octet-stream"
    assert types["fw/cf-none"] == "application/octet-stream"


def test_largest_datagram_payload_round_trips(target: Target) -> None:
    t = target
    # header 4 + token 4 + Uri-Path fw,max (3+4) + CF 1 + token option (3 + 1) + marker 1 = 21
    body = {"rep": ["m", 1152 - 21]}
    res = run_mp(
        [
            client(t, t.write_token),
            ["put", "fw/max", body],
            ["get", "fw/max"],
            ["put", "fw/max", {"rep": ["m", 1152 - 20]}],
        ]
    ).results()
    assert res[1]["r"] == 201
    assert res[2]["r"]["len"] == 1131
    assert res[2]["r"]["sha"] == hashlib.sha256(b"m" * 1131).hexdigest()
    assert res[3]["e"] == "ValueError"


def test_world_larger_than_a_datagram_is_fetched_with_block2(gateway_only: Target) -> None:
    t = gateway_only
    body = bytes((i * 31) % 251 for i in range(3000))
    status, _, _ = t.http_request("PUT", "/home/fw/block", body, token=t.write_token)
    assert status in (200, 201)
    res = run_mp(
        [client(t), ["get", "fw/block"], ["get", "fw/block", 2999], ["get", "fw/block", 3000]]
    ).results()
    assert res[1]["r"]["len"] == 3000
    assert res[1]["r"]["sha"] == hashlib.sha256(body).hexdigest()
    assert res[2]["e"] == "ValueError"
    assert res[3]["r"]["len"] == 3000


def test_non_confirmable_put_reaches_the_core(target: Target) -> None:
    t = target
    res = run_mp([client(t, t.write_token, confirmable=False), ["put", "fw/non", "fire"]])
    assert res.results()[1]["r"] is None
    for _ in range(100):  # fire-and-forget: the world appears when the gateway got to it
        status, _, data = t.http_request("GET", "/home/fw/non")
        if status == 200:
            break
        time.sleep(0.05)
    assert (status, data) == (200, b"fire")


def test_async_client_against_the_gateway(target: Target) -> None:
    t = target
    res = run_mp(
        [
            client(t, t.write_token, **{"async": True}),
            ["gather", [["put", f"fw/async{i}", f"v{i}"] for i in range(4)]],
            ["get", "fw/async3"],
        ]
    ).results()
    assert res[1]["r"] == [201, 201, 201, 201]
    assert res[2]["r"]["text"] == "v3"


def test_compiled_client_does_100_round_trips_in_a_24k_heap(target: Target, mpy_dir: Path) -> None:
    t = target
    out = run_board(mpy_dir, HEAP, t.host, t.coap_port, t.write_token, "roundtrips", 100)
    assert out["ok"] == [100]
    status, _, data = t.http_request("GET", "/home/fw/board")
    assert (status, data) == (200, b"r99")


def test_heap_allocated_per_put_is_bounded(target: Target, mpy_dir: Path) -> None:
    t = target
    out = run_board(mpy_dir, HEAP, t.host, t.coap_port, t.write_token, "alloc", 50)
    allocs = out["alloc"]
    assert len(allocs) == 50
    assert 0 < max(allocs) <= MAX_ALLOC_PER_PUT, allocs


def test_core_down_reads_get_503_with_max_age_and_writes_are_queued(tmp_path: Path) -> None:
    with fw_target(tmp_path) as t:
        if t.kind == "reference":
            pytest.skip("the reference has no gateway in front of it")
        t.http.stop()
        res = run_mp(
            [
                client(t, t.write_token, timeout_ms=2000),
                ["get", "fw/down"],
                ["put", "fw/queued", "stored later"],
                ["post", "fw/queued", "+appended"],
            ]
        ).results()
        assert (res[1]["e"], res[1]["code"], res[1]["max_age"]) == ("CoapError", 503, 5)
        assert res[1]["msg"].endswith("\n")
        assert [res[2]["r"], res[3]["r"]] == [204, 204]  # accepted into the gateway's outbox
        t.http.start()
        for _ in range(200):
            status, _, body = t.http_request("GET", "/home/fw/queued")
            if status == 200 and body == b"stored later+appended":
                break
            time.sleep(0.05)
        assert (status, body) == (200, b"stored later+appended")
