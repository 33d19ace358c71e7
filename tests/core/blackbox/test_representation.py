"""PROTOCOL §10 content type, §11 persisted headers, §12 size limits and quotas."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.blackbox.conftest import make_proc
from tests.core.blackbox.wire import Server, open_stream
from tests.support.servers import running

OCTET = "application/octet-stream"

CONTENT_TYPES = [
    ([("Content-Type", "Text/HTML;  Charset=Latin1")], "Text/HTML;  Charset=Latin1"),
    ([("Content-Type", "text/plain")], "text/plain"),
    ([], OCTET),
    ([("Content-Type", "")], OCTET),
    ([("Content-Type", "caf\xe9/x")], OCTET),
    ([("Content-Type", b"a/\xff")], OCTET),
    ([("Content-Type", "garbage")], "garbage"),
    ([("Content-Type", "a/b/c")], "a/b/c"),
    ([("Content-Type", "x/" + "y" * 300)], "x/" + "y" * 300),
    ([("Content-Type", "first/one"), ("Content-Type", "second/two")], "first/one"),
    ([("Content-Type", "  padded/x  ")], "padded/x"),
]


@pytest.mark.parametrize(
    ("headers", "stored"), CONTENT_TYPES, ids=[str(i) for i in range(len(CONTENT_TYPES))]
)
@pytest.mark.parametrize("ns", ["home", "tmp"])
def test_content_type_stored(srv: Server, uid: str, ns: str, headers: list, stored: str) -> None:
    w = f"/{ns}/{uid}"
    assert srv.put(w, b"0123", headers).status == 201
    for r in (
        srv.get(w),
        srv.head(w),
        srv.get(w, headers=[("Range", "bytes=0-1")]),
        srv.get(w, headers=[("If-None-Match", "*")]),
    ):
        assert r.header("content-type") == stored, r


DEFAULT_ALLOW = [
    "content-disposition", "content-encoding", "content-language", "content-md5",
    "cache-control", "expires", "access-control-allow-origin", "access-control-allow-methods",
    "access-control-allow-headers", "access-control-allow-credentials",
    "access-control-expose-headers", "access-control-max-age", "content-security-policy",
    "content-security-policy-report-only", "x-frame-options", "permissions-policy",
    "cross-origin-resource-policy", "cross-origin-opener-policy", "cross-origin-embedder-policy",
    "referrer-policy", "x-robots-tag",
]  # fmt: skip

HARD_DENY = [
    "cookie", "set-cookie", "proxy-authenticate", "proxy-connection", "keep-alive", "te",
    "trailer", "upgrade", "http2-settings", "accept", "accept-language", "from",
    "max-forwards", "origin", "prefer", "referer", "dnt", "user-agent", "if-modified-since",
    "device-memory", "save-data", "idempotency-key", "upgrade-insecure-requests", "alt-svc",
    "server-timing", "retry-after", "x-powered-by", "priority", "clear-site-data", "etag",
    "accept-ranges", "content-range", "link", "location", "allow", "date", "server",
    "www-authenticate", "age", "vary", "x-request-id", "x-elapsed-us", "x-elapsed-ms",
    "x-content-type-options", "forwarded", "via", "x-forwarded-for", "x-real-ip",
    "traceparent", "baggage", "b3", "pragma", "sec-fetch-mode", "access-control-request-x",
    "want-digest", "x-b3-traceid", "x-amzn-trace-id", "cf-ray",
]  # fmt: skip


def stored_headers(srv: Server, target: str) -> dict[str, str]:
    r = srv.get(target)
    skip = {
        "content-type", "accept-ranges", "etag", "link", "content-length", "x-request-id",
        "x-elapsed-us", "vary", "x-content-type-options", "date",
    }  # fmt: skip
    return {k: v for k, v in r.headers if k not in skip}


@pytest.mark.parametrize("ns", ["home", "tmp"])
def test_default_policy(srv: Server, uid: str, ns: str) -> None:
    hs = [(name.upper() if i % 2 else name, f"v-{name}") for i, name in enumerate(DEFAULT_ALLOW)]
    # (unique values: our core also reads Idempotency-Key, whose reuse would be a 422)
    hs += [(name, f"nope-{ns}-{uid}") for name in HARD_DENY]
    hs += [("X-Meta-Thing", "dropped"), ("Last-Modified", "dropped"), ("X-Custom", "dropped")]
    assert srv.put(f"/{ns}/{uid}", b"x", hs).status == 201
    got = stored_headers(srv, f"/{ns}/{uid}")
    assert got == {name: f"v-{name}" for name in DEFAULT_ALLOW}
    r = srv.get(f"/{ns}/{uid}")
    names = [k for k, _ in r.headers if k in got]
    assert names == sorted(names)  # replayed sorted by name
    assert r.header("x-content-type-options") == "nosniff"


def test_header_values_last_wins_empty_kept_non_ascii_dropped(srv: Server, uid: str) -> None:
    hs: list[tuple[str, str | bytes]] = [
        ("Cache-Control", "first"),
        ("Cache-Control", "last"),
        ("Expires", ""),
        ("Content-Language", "caf\xe9"),
        ("X-Frame-Options", b"\x80bad"),
        ("Referrer-Policy", "ok value"),
    ]
    srv.put(f"/home/{uid}", b"x", hs)
    assert stored_headers(srv, f"/home/{uid}") == {
        "cache-control": "last",
        "expires": "",
        "referrer-policy": "ok value",
    }


def test_user_policy_layers(srv_persist: Server, uid: str) -> None:
    # allow " X-Meta-* , last-modified,,x-z*y,*,cache-*"; deny "x-meta-secret*,*,content-language"
    hs = [
        ("X-Meta-Room", "kitchen"),
        ("x-meta-secret-pin", "1234"),
        ("X-Meta-Secret", "s"),
        ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ("x-z*y", "literal"),
        ("x-zqy", "not matched"),
        ("Cache-Control", "c"),
        ("Cache-Extra", "prefix allowed"),
        ("Content-Language", "denied by user"),
        ("Expires", "still default"),
        ("X-Other", "not allowed"),
        ("Authorization", "Bearer w"),
        ("Cookie", "no"),
        ("Strict-Transport-Security", "not allowed here"),
    ]
    r = srv_persist.put(f"/home/{uid}", b"x", hs)
    assert r.status == 201
    want = {
        "cache-control": "c",
        "cache-extra": "prefix allowed",
        "expires": "still default",
        "last-modified": "Mon, 01 Jan 2024 00:00:00 GMT",
        "x-meta-room": "kitchen",
        "x-z*y": "literal",
    }
    assert stored_headers(srv_persist, f"/home/{uid}") == want
    # POST never changes stored headers; PUT replaces the set.
    srv_persist.post(f"/home/{uid}", b"y", [("X-Meta-Room", "hall")])
    assert stored_headers(srv_persist, f"/home/{uid}") == want
    srv_persist.put(f"/home/{uid}", b"z", [("X-Meta-New", "n")])
    assert stored_headers(srv_persist, f"/home/{uid}") == {"x-meta-new": "n"}
    # persisted headers come back on 206 and 304 too
    tag = srv_persist.get(f"/home/{uid}").etag or ""
    for extra in ([("Range", "bytes=0-0")], [("If-None-Match", tag)]):
        g = srv_persist.get(f"/home/{uid}", headers=extra)
        assert g.header("x-meta-new") == "n", g


# ---------------------------------------------------------------------------------------
# §12 quotas (quota config: world 100, memory 150, storage 250). One test owns the whole
# quota server state so the accounting is deterministic.


def test_size_limits_and_quotas(srv_quota: Server, uid: str) -> None:
    s = srv_quota
    for name in s.worlds().decode().split():
        if name != "var/log/deletes":
            s.delete(f"/{name}")
    before = s.snapshot()
    big = s.put(f"/home/{uid}", b"x" * 101)
    assert (big.status, big.body) == (
        413,
        b"Failed to buffer the request body: length limit exceeded",
    )
    big = s.post(f"/home/{uid}", b"x" * 101)
    assert big.status == 413
    assert s.snapshot() == before
    # world limit on the resulting size of an append
    assert s.put(f"/home/{uid}/a", b"a" * 100).status == 201
    over = s.post(f"/home/{uid}/a", b"z")
    assert (over.status, over.body) == (413, b"payload too large: max bytes 100\n")
    assert s.get(f"/home/{uid}/a").body == b"a" * 100
    # durable storage quota 250: 100 used, add 100, then 60 more would need 10 more bytes
    assert s.put(f"/home/{uid}/b", b"b" * 100).status == 201
    q = s.put(f"/home/{uid}/c", b"c" * 60)
    assert q.status == 507
    assert (
        q.body
        == b"storage quota exceeded: current 200 bytes, quota 250 bytes, need 10 more bytes\n"
    )
    assert (
        q.header("x-storage-usage"),
        q.header("x-storage-quota"),
        q.header("x-storage-needed"),
    ) == ("200", "250", "10")
    assert q.header("content-type") == "text/plain; charset=utf-8"
    assert s.get(f"/home/{uid}/c").status == 404
    assert s.put(f"/home/{uid}/c", b"c" * 50).status == 201  # exactly full
    assert s.put(f"/home/{uid}/c", b"C" * 50).status == 200  # same size at a full quota
    ap = s.post(f"/home/{uid}/c", b"+")
    assert ap.status == 507 and ap.header("x-storage-needed") == "1"
    assert s.get("/proc/df").body.decode().splitlines()[0] == "storage\t250\t250\t0"
    assert s.delete(f"/home/{uid}/b").status == 204  # frees its bytes
    assert s.get("/proc/df").body.decode().splitlines()[0] == "storage\t150\t250\t100"
    # memory limit 150 gives 413, not 507
    assert s.put(f"/tmp/{uid}/m", b"m" * 100).status == 201
    m = s.put(f"/tmp/{uid}/n", b"n" * 51)
    assert (m.status, m.body) == (413, b"payload too large: max bytes 150\n")
    assert s.put(f"/tmp/{uid}/n", b"n" * 50).status == 201
    assert s.post(f"/tmp/{uid}/n", b"!").status == 413
    assert s.get("/proc/df").body.decode().splitlines()[1] == "memory\t150\t150\t0"
    for name in (f"home/{uid}/a", f"home/{uid}/c", f"tmp/{uid}/m", f"tmp/{uid}/n"):
        assert s.delete(f"/{name}").status == 204


def test_policy_change_and_usage_survive_restart(impl: str, tmp_path: Path) -> None:
    """Stored headers keep round-tripping under a new policy until the next PUT (§11),
    storage usage is recomputed from disk at startup (§12), memory worlds are gone (§17)
    and SSE ids start again at 1 (§16.4)."""
    proc = make_proc(impl, tmp_path, "q" * 40, {"ELASTIK_PERSIST_HEADERS": "x-meta-*"})
    with running(proc):
        s = Server(proc.host, proc.port)
        assert s.put("/home/kept", b"12345", [("X-Meta-Room", "attic")]).status == 201
        assert s.put("/home/other", b"678", [("X-Meta-Room", "cellar")]).status == 201
        assert s.put("/tmp/gone", b"memory only").status == 201
        storage_line = s.get("/proc/df").body.split(b"\n")[0]
    proc.env.pop("ELASTIK_PERSIST_HEADERS")
    with running(proc):
        s = Server(proc.host, proc.port)
        df = s.get("/proc/df").body.split(b"\n")
        assert df[0] == storage_line == b"storage\t8\tunlimited\tunlimited"
        assert df[1] == b"memory\t0\t268435456\t268435456"  # the memory world is gone (§17)
        assert df[2] == b"worlds\t2\tunlimited\tunlimited"
        assert s.get("/home/kept").header("x-meta-room") == "attic"
        assert s.get("/tmp/gone").status == 404
        assert b"tmp/gone" not in s.worlds()
        with open_stream(s, "/listen/*") as st:
            s.post("/home/kept", b"6")
            assert st.read_events(1)[0]["id"] == ["1"]  # SSE ids restart at 1 (§16.4)
        assert s.get("/home/kept").header("x-meta-room") == "attic"
        s.put("/home/other", b"678", [("X-Meta-Room", "cellar")])
        assert s.get("/home/other").header("x-meta-room") is None
