"""Concurrent and pipelined requests: preconditions and appends stay exact (§7.3, §8, §1.5),
and the default 64 MiB world limit (§12)."""

from __future__ import annotations

import threading

import pytest

from tests.core.blackbox.wire import Pipe, Server, read_response

WRITERS = 8


def run_together(fn: object, n: int) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def body(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)  # type: ignore[operator]

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.parametrize("ns", ["home", "tmp"])
def test_concurrent_if_match_has_one_winner(srv: Server, uid: str, ns: str) -> None:
    w = f"/{ns}/{uid}"
    tag = srv.put(w, b"base").etag or ""
    results = run_together(
        lambda i: srv.put(w, f"writer {i}".encode(), [("If-Match", tag)]), WRITERS
    )
    statuses = sorted(r.status for r in results)  # type: ignore[attr-defined]
    assert statuses == [200] + [412] * (WRITERS - 1), statuses
    winner = next(r for r in results if r.status == 200)  # type: ignore[attr-defined]
    g = srv.get(w)
    assert g.etag == winner.etag  # type: ignore[attr-defined]
    assert g.body.startswith(b"writer ")


def test_concurrent_if_none_match_creates_once(srv: Server, uid: str) -> None:
    w = f"/home/{uid}"
    results = run_together(lambda i: srv.put(w, b"%d" % i, [("If-None-Match", "*")]), WRITERS)
    statuses = sorted(r.status for r in results)  # type: ignore[attr-defined]
    assert statuses == [201] + [412] * (WRITERS - 1)
    assert srv.verify(w[1:]).header("x-audit-events") == "1"


@pytest.mark.parametrize("ns", ["home", "tmp"])
def test_concurrent_appends_all_land_once(srv: Server, uid: str, ns: str) -> None:
    w = f"/{ns}/{uid}/log"
    srv.put(w, b"")

    def append(i: int) -> list[int]:
        return [srv.post(w, b"<%d.%d>" % (i, k)).status for k in range(5)]

    results = run_together(append, WRITERS)
    assert all(s == [200] * 5 for s in results), results
    body = srv.get(w).body
    pieces = body.replace(b">", b">\n").split()
    assert sorted(pieces) == sorted(b"<%d.%d>" % (i, k) for i in range(WRITERS) for k in range(5))
    for i in range(WRITERS):  # each writer's own appends keep their order
        mine = [p for p in pieces if p.startswith(b"<%d." % i)]
        assert mine == [b"<%d.%d>" % (i, k) for k in range(5)]
    if ns == "home":
        assert srv.verify(w[1:]).header("x-audit-events") == str(1 + WRITERS * 5)


def test_pipelined_writes_with_request_like_bodies(srv: Server, uid: str) -> None:
    tricky = [b"GET /home/x HTTP/1.1\r\nHost: y\r\n\r\n", b"\r\n\r\nPUT / HTTP/1.0\r\n", b""]
    data = b""
    for i, body in enumerate(tricky):
        data += (
            f"PUT /home/{uid}/{i} HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer w\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    data += f"GET /home/{uid}/0 HTTP/1.1\r\nHost: h\r\n\r\n".encode()
    with srv.connect() as s:
        s.sendall(data)
        pipe = Pipe(s)
        answers = [read_response(pipe, "GET") for _ in range(len(tricky) + 1)]
    assert [a.status for a in answers] == [201] * len(tricky) + [200]
    assert answers[-1].body == tricky[0]
    for i, body in enumerate(tricky):
        assert srv.get(f"/home/{uid}/{i}").body == body


def test_default_world_limit_is_exactly_64_mib(srv: Server, uid: str) -> None:
    w = f"/tmp/{uid}/big"
    body = b"m" * (64 * 1024 * 1024)
    try:
        r = srv.put(w, body, timeout=60)
        assert r.status == 201, r
        du = dict(line.split("\t") for line in srv.get("/proc/du").body.decode().split("\n")[:-1])
        assert du[w[1:]] == str(len(body))
        over = srv.post(w, b"!")
        assert (over.status, over.body) == (413, b"payload too large: max bytes 67108864\n")
    finally:
        srv.delete(w)
