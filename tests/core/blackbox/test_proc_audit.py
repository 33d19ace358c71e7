"""PROTOCOL §14 audit chain and delete ledger (black-box), §15 /proc endpoints."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tests.core.blackbox.chain import field, meta_sha256
from tests.core.blackbox.wire import Server

TEXT = "text/plain; charset=utf-8"


def test_worlds_du_order_and_raw_utf8(srv: Server, uid: str) -> None:
    names = [
        f"home/{uid}/b",
        f"home/{uid}/a",
        f"tmp/{uid}",
        f"home/{uid}/é",
        f"home/{uid}/Z",
        f"var/{uid}",
    ]
    targets = {f"home/{uid}/é": f"/home/{uid}/%C3%A9"}
    for i, n in enumerate(names):
        assert srv.put(targets.get(n, "/" + n), b"x" * i).status == 201
    worlds = srv.get("/proc/worlds?ignored=1")
    assert worlds.header("content-type") == TEXT
    lines = worlds.body.split(b"\n")
    assert lines[-1] == b""
    assert lines[:-1] == sorted(lines[:-1])  # bytewise order
    mine = [ln.decode() for ln in lines if uid.encode() in ln]
    assert mine == sorted(names, key=lambda n: n.encode())
    du = srv.get("/proc/du").body.decode().split("\n")[:-1]
    assert [ln.split("\t")[0] for ln in du] == [ln.decode() for ln in lines[:-1]]
    sizes = dict(ln.split("\t") for ln in du)
    for i, n in enumerate(names):
        assert sizes[n] == str(i)


def test_df_shape(srv: Server) -> None:
    df = srv.get("/proc/df")
    assert df.header("content-type") == TEXT
    storage, memory, worlds = df.body.decode().split("\n")[:3]
    assert df.body.count(b"\n") == 3
    s = storage.split("\t")
    assert s[0] == "storage" and s[2:] == ["unlimited", "unlimited"] and s[1].isdigit()
    m = memory.split("\t")
    assert m[0] == "memory" and m[2] == "268435456"
    assert int(m[3]) == 268435456 - int(m[1])
    w = worlds.split("\t")
    assert w[0] == "worlds" and w[2:] == ["unlimited", "unlimited"]
    listed = srv.worlds().decode().split("\n")[:-1]
    assert int(w[1]) == len([n for n in listed if n != "var/log/deletes"])
    durable_bytes = sum(
        int(size)
        for name, size in (
            ln.split("\t") for ln in srv.get("/proc/du").body.decode().split("\n")[:-1]
        )
        if not name.startswith(("tmp/", "dev/", "sys/"))
    )
    assert int(s[1]) == durable_bytes
    memory_bytes = sum(
        int(size)
        for name, size in (
            ln.split("\t") for ln in srv.get("/proc/du").body.decode().split("\n")[:-1]
        )
        if name.startswith(("tmp/", "dev/", "sys/"))
    )
    assert int(m[1]) == memory_bytes


def test_pool_names_in_order(srv: Server) -> None:
    lines = srv.get("/proc/pool").body.decode().splitlines()
    names = [ln.split(" ")[0] for ln in lines][:9]  # (extra counters after these are tolerated)
    assert names == [
        "read_cache_entries", "read_cache_tombstones", "read_cache_hits", "read_cache_misses",
        "read_cache_capped", "read_cache_evictions", "read_cache_open_fails",
        "read_cache_max_entries", "ledger_writer_inits",
    ]  # fmt: skip
    for ln in lines:
        _name, value, kind = ln.split(" ")
        assert value.isdigit() and kind in ("snapshot", "counter")
    assert (
        dict((ln.split(" ")[0], ln.split(" ")[1]) for ln in lines)["read_cache_max_entries"]
        == "5000"
    )


def test_empty_store_lists_nothing(pool: object, impl: str, tmp_path: object) -> None:
    from pathlib import Path

    from tests.core.blackbox.conftest import make_proc
    from tests.support.servers import running

    assert isinstance(tmp_path, Path)
    with running(make_proc(impl, tmp_path, "k" * 40)) as p:
        from tests.core.blackbox.wire import Server as S

        s = S(p.host, p.port)
        r = s.get("/proc/worlds")
        assert (r.status, r.body, r.header("content-length")) == (200, b"", "0")
        assert s.get("/proc/du").body == b""
        assert s.get("/proc/df").body.decode().splitlines()[2] == "worlds\t0\tunlimited\tunlimited"


# ---------------------------------------------------------------------------------------
# /proc/audit/<path>/verify


def test_verify_valid_durable(srv: Server, uid: str) -> None:
    e1 = srv.put(f"/home/{uid}", b"a").etag or ""
    e2 = srv.post(f"/home/{uid}", b"b").etag or ""
    for v in (
        srv.verify(f"home/{uid}"),
        srv.head(f"/proc/audit/home/{uid}/verify"),
        srv.verify(uid),
    ):
        assert v.status == 200
        assert v.body == b""
        assert v.header("x-audit-valid") == "true"
        assert v.header("x-audit-events") == "2"
        assert v.header("x-audit-genesis") == e1.strip('"')
        assert v.header("x-audit-latest") == e2.strip('"')
        assert v.header("content-length") == "0"


VERIFY_ERRORS = [
    ("/proc/audit/home/verify", 400, b"bad request: invalid audit verify world path\n"),
    ("/proc/audit/tmp/verify", 400, b"bad request: invalid audit verify world path\n"),
    ("/proc/audit/a/../b/verify", 400, b"bad request: invalid audit verify world path\n"),
    ("/proc/audit/home//x/verify", 400, b"bad request: invalid audit verify world path\n"),
    ("/proc/audit/proc/worlds/verify", 400, b"bad request: invalid audit verify world path\n"),
    ("/proc/audit/%2F/verify", 400, b"bad request: audit verify requires a world path\n"),
    ("/proc/audit/home/x", 404, b"world not found\n"),
    ("/proc/audit/home/x/verify/", 404, b"world not found\n"),
    ("/proc/audit/verify", 404, b"world not found\n"),
    ("/proc/audit", 404, b"world not found\n"),
    ("/proc/audit/home/never-written-{u}/verify", 404, b"world not found\n"),
]


@pytest.mark.parametrize(
    ("target", "status", "body"), VERIFY_ERRORS, ids=[v[0] for v in VERIFY_ERRORS]
)
def test_verify_errors(srv: Server, uid: str, target: str, status: int, body: bytes) -> None:
    r = srv.get(target.format(u=uid))
    assert (r.status, r.body) == (status, body)


def test_delete_ledger(srv: Server, uid: str) -> None:
    srv.put(f"/home/{uid}", b"doomed")
    before = srv.verify("var/log/deletes")
    n = int(before.header("x-audit-events") or 0) if before.status == 200 else 0
    assert srv.delete(f"/home/{uid}").status == 204
    led = srv.get("/var/log/deletes")
    assert led.status == 200
    assert led.body == b""  # deletes never modify the ledger body
    assert led.header("content-type") == "application/octet-stream"
    assert led.etag.startswith('"hmac-')  # type: ignore[union-attr]
    after = srv.verify("var/log/deletes")
    assert after.header("x-audit-valid") == "true"
    assert int(after.header("x-audit-events") or 0) == n + 2
    assert b"var/log/deletes\n" in srv.worlds()
    assert srv.verify(f"home/{uid}").status == 404  # the chain went with the world


def test_ledger_event_hashes(srv: Server, uid: str) -> None:
    """Delete events chain on with the fields of PROTOCOL §14.3 (checked via x-audit-latest)."""
    srv.put(f"/tmp/{uid}", b"bye")
    assert srv.delete(f"/tmp/{uid}").status == 204  # ensure the ledger exists
    prev = (srv.verify("var/log/deletes").header("x-audit-latest") or "").removeprefix("hmac-")
    srv.put(f"/tmp/{uid}", b"bye")
    assert srv.delete(f"/tmp/{uid}").status == 204

    def delete_event(prev: str, kind: str) -> str:
        msg = (
            field("prev", prev) + field("type", kind) + field("target", f"tmp/{uid}")
            + field("body-sha256", hashlib.sha256(b"bye").hexdigest()) + field("size", "0")
            + field("content-type", "") + field("meta-sha256", meta_sha256(""))
        )  # fmt: skip
        return hmac.new(srv.key.encode(), msg, hashlib.sha256).hexdigest()

    commit = delete_event(delete_event(prev, "delete_intent"), "delete_commit")
    assert meta_sha256("") == "73cef1995ad42da4128abdc33ae53908459031537f1f980a06e0232386272a3e"
    assert srv.verify("var/log/deletes").header("x-audit-latest") == f"hmac-{commit}"


def test_verify_and_proc_need_read_tier(srv_read: Server) -> None:
    for target in ("/proc/worlds", "/proc/du", "/proc/df", "/proc/pool", "/proc/audit/x/verify"):
        assert srv_read.get(target).status == 401
        assert srv_read.get(target, token="r").status in (200, 404)
