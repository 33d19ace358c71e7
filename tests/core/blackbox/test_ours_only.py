"""Our deliberate differences D1, D2, D4, D6, D7 and the Idempotency-Key feature (ours only).

D3 (verify checks the current state) and D5 (incremental startup verification) need the
database edited behind the core's back: see tests/core/test_tamper.py.
"""

from __future__ import annotations

import re
import socket
import struct
from pathlib import Path

import pytest

from tests.core.blackbox.conftest import Pool
from tests.core.blackbox.wire import Server
from tests.support import servers

LEDGER_401 = b"auth required: delete ledger is append-only\n"
TOO_LONG = b"uri too long: world path exceeds 1024 bytes\n"


def events(srv: Server, world: str) -> int:
    v = srv.verify(world)
    assert v.status == 200, v
    return int(v.header("x-audit-events") or 0)


# ---------------------------------------------------------------------------------------
# D1 storage layout: one SQLite database in WAL mode for all durable worlds


def test_d1_one_database_for_all_durable_worlds(ours: Server, pool: Pool, uid: str) -> None:
    for i in range(5):
        assert ours.put(f"/home/{uid}/w{i}", b"x" * i).status == 201
    assert ours.put(f"/var/{uid}", b"v").status == 201
    proc = ours.extra["proc"]
    assert isinstance(proc, servers.Proc)
    data = Path(proc.env["ELASTIK_DATA"])
    assert not [p for p in data.rglob("universe.db")]
    assert not [p for p in data.iterdir() if p.is_dir() and "%2F" in p.name]
    dbs = [
        p
        for p in data.rglob("*")
        if p.is_file()
        and p.name != ".elastik-writer-lock.sqlite3"
        and p.read_bytes()[:16] == b"SQLite format 3\x00"
    ]
    assert len(dbs) == 1, dbs
    header = dbs[0].read_bytes()[:20]
    assert header[18:20] == b"\x02\x02"  # file format versions 2/2 = WAL mode
    assert Path(str(dbs[0]) + "-wal").exists()
    assert (data / ".elastik-writer-lock.sqlite3").exists()


# ---------------------------------------------------------------------------------------
# D2 long names


@pytest.mark.parametrize("ns", ["home", "var", "tmp"])
def test_d2_names_up_to_1024_bytes(ours: Server, uid: str, ns: str) -> None:
    prefix = f"{ns}/{uid}/"
    ok = prefix + "a" * (1024 - len(prefix))
    assert len(ok.encode()) == 1024
    r = ours.put("/" + ok, b"long")
    assert r.status == 201, r
    assert r.header("location") == "/" + ok
    assert ours.get("/" + ok).body == b"long"
    if ns != "tmp":
        assert ours.verify(ok).status == 200
    assert (ok + "\n").encode() in ours.worlds()
    assert ours.delete("/" + ok).status == 204


def test_d2_multibyte_names_count_bytes(ours: Server, uid: str) -> None:
    prefix = f"home/{uid}/"
    n = (1024 - len(prefix)) // 2
    name = prefix + "é" * n + "a" * ((1024 - len(prefix)) % 2)
    assert len(name.encode()) == 1024
    enc = name.replace("é", "%C3%A9")
    assert ours.put("/" + enc, b"u").status == 201
    r = ours.put("/" + enc + "%C3%A9", b"u")
    assert (r.status, r.body) == (414, TOO_LONG)


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE"])
def test_d2_longer_names_are_414(ours: Server, uid: str, method: str) -> None:
    before = ours.snapshot()
    for world in (f"home/{uid}/" + "b" * 1020, f"tmp/{uid}/" + "b" * 1020, f"{uid}/" + "b" * 1018):
        token = {"PUT": "w", "POST": "w", "DELETE": "a"}.get(method)
        r = ours.request(
            method, "/" + world, b"x" if method in ("PUT", "POST") else None, token=token
        )
        assert r.status == 414, (world[:20], r)
        if method != "HEAD":
            assert r.body == TOO_LONG
        assert r.header("content-type") == "text/plain; charset=utf-8"
    assert ours.snapshot() == before


# ---------------------------------------------------------------------------------------
# D4 the delete ledger is append-only for real


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_d4_ledger_refuses_put_and_post(ours: Server, uid: str, method: str) -> None:
    ours.put(f"/tmp/{uid}", b"x")
    assert ours.delete(f"/tmp/{uid}").status == 204
    before = ours.get("/var/log/deletes")
    n = events(ours, "var/log/deletes")
    for tok in ("a", "w", None):
        r = ours.request(method, "/var/log/deletes", b"forged", token=tok)
        assert r.status == 401
        if tok == "a":
            assert r.body == LEDGER_401
        assert r.header("www-authenticate") == 'Bearer realm="elastik"'
    after = ours.get("/var/log/deletes")
    assert (after.body, after.etag) == (before.body, before.etag)
    assert events(ours, "var/log/deletes") == n


# ---------------------------------------------------------------------------------------
# D6 ELASTIK_COAP_PORT starts the gateway's CoAP front door in the core's process


def coap(
    port: int,
    code: int,
    path: list[str],
    payload: bytes = b"",
    mid: int = 0x4242,
    options: bytes = b"",
) -> bytes:
    msg = bytes([0x41, code]) + struct.pack("!H", mid) + b"\xaa"
    last = 0
    for seg in path:
        b = seg.encode()
        delta = 11 - last
        msg += (
            bytes([(delta << 4) | len(b)]) + b
            if len(b) < 13
            else bytes([(delta << 4) | 13, len(b) - 13]) + b
        )
        last = 11
    msg += options
    if payload:
        msg += b"\xff" + payload
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(msg, ("127.0.0.1", port))
        return s.recv(2048)


@pytest.mark.parametrize("impl", [pytest.param("reference", marks=pytest.mark.reference), "ours"])
def test_d6_core_coap_port_serves_coap(tmp_path: Path, impl: str) -> None:
    """The §18 floor through ELASTIK_COAP_PORT; the reference run validates the datagrams."""
    udp = servers.free_udp_port()
    proc = servers.core(impl, tmp_path, extra={"ELASTIK_COAP_PORT": str(udp)})
    with servers.running(proc):
        srv = Server(proc.host, proc.port)
        assert srv.put("/home/coap", b"over http", [("Content-Type", "text/plain")]).status == 201
        reply = coap(udp, 0x01, ["home", "coap"])
        assert reply[0] == 0x61  # ACK, token length 1
        assert reply[1] == 0x45  # 2.05 Content
        assert reply[2:4] == b"\x42\x42" and reply[4:5] == b"\xaa"
        assert reply.endswith(b"\xffover http")
        auth = bytes([0xE1]) + struct.pack("!H", 65001 - 11 - 269) + b"w"  # option 65001 = "w"
        put = coap(udp, 0x03, ["home", "from-coap"], b"via udp", mid=7, options=auth)
        assert put[1] == 0x41  # 2.01 Created
        assert srv.get("/home/from-coap").body == b"via udp"
        for code, path, payload, want in (
            (0x01, ["home", "nope"], b"", (0x84, b"not found\n")),
            (0x01, ["home"], b"", (0x80, b"bad world name\n")),
            (0x01, ["home", ".."], b"", (0x80, b"bad world name\n")),
            (0x03, ["home", "x"], b"v", (0x81, b"error\n")),  # no auth option
        ):
            r = coap(udp, code, path, payload)
            assert (r[1], r.split(b"\xff", 1)[-1]) == want, (path, r)
        assert srv.verify("home/from-coap").status == 200


# ---------------------------------------------------------------------------------------
# D7 banner and version


def test_d7_version_and_banner(ours: Server) -> None:
    body = ours.get("/proc/version").body.decode()
    assert re.fullmatch(r"elastik-core \S+ \(python\)\n", body), body
    assert body.startswith("elastik-core ")
    assert ours.get("/").body.decode().startswith(body)
    proc = ours.extra["proc"]
    assert isinstance(proc, servers.Proc)
    first = proc.output().splitlines()[0]
    assert re.fullmatch(
        rf"elastik-core v?\S+ \(python\) on http://127\.0\.0\.1:{proc.port}/", first
    ), first


# ---------------------------------------------------------------------------------------
# Idempotency-Key


@pytest.mark.parametrize("ns", ["home", "tmp"])
def test_idempotent_put_replays(ours: Server, uid: str, ns: str) -> None:
    w = f"/{ns}/{uid}"
    key = [("Idempotency-Key", f"put-{uid}"), ("Content-Type", "text/i")]
    first = ours.put(w, b"once", key)
    assert first.status == 201
    assert first.header("idempotency-replayed") is None
    n = events(ours, w[1:]) if ns == "home" else None
    again = ours.put(w, b"once", key)
    assert again.status == 201
    assert again.etag == first.etag
    assert again.header("idempotency-replayed") == "true"
    assert again.header("location") == first.header("location")
    if ns == "home":
        assert events(ours, w[1:]) == n
    g = ours.get(w)
    assert (g.body, g.etag, g.header("content-type")) == (b"once", first.etag, "text/i")
    assert g.header("idempotency-key") is None  # never persisted


def test_idempotent_post_appends_once(ours: Server, uid: str) -> None:
    w = f"/home/{uid}"
    ours.put(w, b"a")
    key = [("Idempotency-Key", f"post-{uid}")]
    first = ours.post(w, b"b", key)
    assert first.status == 200
    n = events(ours, w[1:])
    for _ in range(3):
        again = ours.post(w, b"b", key)
        assert (again.status, again.etag, again.header("idempotency-replayed")) == (
            200,
            first.etag,
            "true",
        )
    assert ours.get(w).body == b"ab"
    assert events(ours, w[1:]) == n


def test_idempotent_delete(ours: Server, uid: str) -> None:
    w = f"/home/{uid}"
    ours.put(w, b"x")
    key = [("Idempotency-Key", f"del-{uid}")]
    assert ours.delete(w, key).status == 204
    ledger = events(ours, "var/log/deletes")
    again = ours.delete(w, key)
    assert (again.status, again.header("idempotency-replayed")) == (204, "true")
    assert events(ours, "var/log/deletes") == ledger


def test_idempotency_key_reuse_with_different_request_is_422(ours: Server, uid: str) -> None:
    w = f"/home/{uid}"
    key = [("Idempotency-Key", f"k-{uid}")]
    first = ours.put(w, b"one", key)
    assert first.status == 201
    before = ours.snapshot()
    n = events(ours, w[1:])
    for method, target, body in (
        ("PUT", w, b"two"),
        ("POST", w, b"one"),
        ("PUT", w + "x", b"one"),
        ("DELETE", w, None),
    ):
        tok = "a" if method == "DELETE" else "w"
        r = ours.request(method, target, body, key, token=tok)
        assert r.status == 422, (method, target, r)
        assert r.body.endswith(b"\n") and r.header("content-type") == "text/plain; charset=utf-8"
    assert ours.snapshot() == before
    assert (ours.get(w).body, ours.get(w).etag) == (b"one", first.etag)
    assert events(ours, w[1:]) == n


def test_idempotency_key_too_long_is_400(ours: Server, uid: str) -> None:
    w = f"/home/{uid}"
    before = ours.snapshot()
    r = ours.put(w, b"x", [("Idempotency-Key", "k" * 256)])
    assert r.status == 400
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert ours.snapshot() == before
    ok = ours.put(w, b"x", [("Idempotency-Key", "k" * 240 + uid[:15])])
    assert ok.status == 201


def test_idempotency_concurrent_same_key_applies_once(ours: Server, uid: str) -> None:
    import threading

    w = f"/home/{uid}"
    key = [("Idempotency-Key", f"race-{uid}")]
    barrier = threading.Barrier(8)
    results: list[object] = []

    def go() -> None:
        barrier.wait()
        results.append(ours.put(w, b"raced", key))

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = sorted((r.status, r.header("idempotency-replayed") or "") for r in results)  # type: ignore[attr-defined]
    assert statuses == [(201, "")] + [(201, "true")] * 7
    assert len({r.etag for r in results}) == 1  # type: ignore[attr-defined]
    assert events(ours, w[1:]) == 1


def test_idempotent_replay_emits_no_event(ours: Server, uid: str) -> None:
    from tests.core.blackbox.wire import open_stream

    w = f"/tmp/{uid}"
    key = [("Idempotency-Key", f"sse-{uid}")]
    with open_stream(ours, f"/listen/tmp/{uid}") as st:
        assert ours.put(w, b"x", key).status == 201
        assert st.read_events(1)[0]["event"] == ["put"]
        assert ours.put(w, b"x", key).header("idempotency-replayed") == "true"
        assert st.expect_silence(0.3) == b""


def test_idempotency_keys_survive_restart(tmp_path: Path) -> None:
    proc = servers.ours(tmp_path)
    with servers.running(proc):
        srv = Server(proc.host, proc.port)
        first = srv.put("/home/kept", b"once", [("Idempotency-Key", "restart-key")])
        assert first.status == 201
    with servers.running(proc):
        again = srv.put("/home/kept", b"once", [("Idempotency-Key", "restart-key")])
        assert (again.status, again.etag) == (201, first.etag)
        assert again.header("idempotency-replayed") == "true"
        assert srv.put("/home/kept", b"other", [("Idempotency-Key", "restart-key")]).status == 422
        assert events(srv, "home/kept") == 1
