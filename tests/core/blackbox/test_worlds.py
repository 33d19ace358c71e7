"""PROTOCOL §7 methods, §8 conditionals, §9 ranges, §13 ETags, §17 memory worlds."""

from __future__ import annotations

import pytest

from tests.core.blackbox.chain import Chain, event_hmac, memory_etag
from tests.core.blackbox.wire import Resp, Server

TEXT = "text/plain; charset=utf-8"
OCTET = "application/octet-stream"
PF_EXISTING = b"precondition failed: If-Match requires an existing world\n"
PF_MATCH = b"precondition failed: If-Match did not match current ETag\n"
PF_NONE = b"precondition failed: If-None-Match matched current ETag\n"
STANDARD = {"x-request-id", "x-elapsed-us", "vary", "x-content-type-options", "date"}


def test_hmac_formula_worked_example() -> None:
    got = event_hmac(
        "ab" * 32, "", "put", "home/note", b"hello", "application/x-www-form-urlencoded"
    )
    assert got == "03907046cda1580d6af39876b32e585214f6bbbbf6e1c93f3bd8d6bd37636e93"


def world_headers(r: Resp) -> list[tuple[str, str]]:
    return [(k, v) for k, v in r.headers if k not in STANDARD]


# ---------------------------------------------------------------------------------------
# §7.1 GET / HEAD


def test_get_headers_in_order(srv: Server, uid: str) -> None:
    p = srv.put(
        f"/home/{uid}",
        b"hello",
        [("Content-Type", "text/x-thing"), ("Expires", "0"), ("Cache-Control", "no-store")],
    )
    g = srv.get(
        f"/home/{uid}",
        headers=[("If-Match", '"nope"'), ("If-Unmodified-Since", "Mon, 01 Jan 1990 00:00:00 GMT")],
    )
    assert g.status == 200
    assert g.body == b"hello"
    assert world_headers(g) == [
        ("content-type", "text/x-thing"),
        ("accept-ranges", "bytes"),
        ("etag", p.etag),
        ("link", f'</listen/home/{uid}>; rel="monitor"'),
        ("link", '</proc/worlds>; rel="collection"'),
        ("cache-control", "no-store"),
        ("expires", "0"),
        ("content-length", "5"),
    ]
    h = srv.head(f"/home/{uid}")
    assert h.status == 200 and h.body == b""
    assert sorted(world_headers(h)) == sorted(world_headers(g))
    assert not g.has("last-modified")


def test_get_missing_world(srv: Server, uid: str) -> None:
    g = srv.get(f"/home/{uid}")
    assert (g.status, g.body) == (404, b"world not found\n")
    assert g.header("content-type") == TEXT
    h = srv.head(f"/home/{uid}")
    assert (h.status, h.body, h.header("content-length")) == (404, b"", "16")


def test_get_with_body_ignores_it(srv: Server, uid: str) -> None:
    srv.put(f"/home/{uid}", b"stored")
    g = srv.request("GET", f"/home/{uid}", b"ignored body")
    assert (g.status, g.body) == (200, b"stored")


# ---------------------------------------------------------------------------------------
# §7.2 PUT


@pytest.mark.parametrize("ns", ["home", "tmp"])
def test_put_create_then_replace(srv: Server, uid: str, ns: str) -> None:
    c = srv.put(
        f"/{ns}/{uid}/deep/child",
        b"one",
        [("Content-Type", "text/a"), ("Cache-Control", "max-age=1")],
    )
    assert c.status == 201
    assert c.body == b""
    assert c.header("content-type") == TEXT
    assert c.header("content-length") == "0"
    assert c.header("location") == f"/{ns}/{uid}/deep/child"
    r = srv.put(f"/{ns}/{uid}/deep/child", b"two")
    assert r.status == 200
    assert not r.has("location")
    assert r.header("content-length") == "0"
    g = srv.get(f"/{ns}/{uid}/deep/child")
    assert g.body == b"two"
    assert g.header("content-type") == OCTET
    assert not g.has("cache-control")  # the whole header set is replaced
    assert g.etag == r.etag
    assert srv.get(f"/{ns}/{uid}/deep").status == 404  # flat key space


def test_put_chunked_and_expect_continue(srv: Server, uid: str) -> None:
    head = (
        f"PUT /home/{uid} HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer w\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    r = srv.raw(head + b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", "PUT")
    assert r.status == 201
    assert srv.get(f"/home/{uid}").body == b"abcdefg"
    with srv.connect() as s:
        s.sendall(
            f"PUT /home/{uid}/e HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer w\r\n"
            "Expect: 100-continue\r\nContent-Length: 3\r\n\r\n".encode()
        )
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        s.sendall(b"xyz")
        from tests.core.blackbox.wire import read_response

        assert read_response(s, "PUT").status == 201
    assert srv.get(f"/home/{uid}/e").body == b"xyz"


def test_put_empty_and_absent_body(srv: Server, uid: str) -> None:
    assert srv.put(f"/home/{uid}", b"").status == 201
    r = srv.request("PUT", f"/home/{uid}/b", None, token="w", content_length=False)
    assert r.status == 201
    for name in (uid, f"{uid}/b"):
        g = srv.get(f"/home/{name}")
        assert (g.status, g.body, g.header("content-type")) == (200, b"", OCTET)


def test_recreate_after_delete_gives_same_etag(srv: Server, uid: str) -> None:
    first = srv.put(f"/home/{uid}", b"same", [("Content-Type", "text/plain")])
    srv.post(f"/home/{uid}", b"more")
    assert srv.delete(f"/home/{uid}").status == 204
    again = srv.put(f"/home/{uid}", b"same", [("Content-Type", "text/plain")])
    assert again.status == 201
    assert again.etag == first.etag


def test_durable_etags_follow_hmac_chain(srv: Server, uid: str) -> None:
    w = f"home/{uid}"
    chain = Chain(srv.key, w)
    assert srv.put(f"/{w}", b"hello", [("Content-Type", "text/plain")]).etag == chain.put(
        b"hello", "text/plain"
    )
    assert srv.post(f"/{w}", b" world").etag == chain.append(b" world")
    assert srv.post(f"/{w}", b"").etag == chain.append(b"")
    hs = [("cache-control", "no-cache"), ("content-disposition", "inline")]
    r = srv.put(
        f"/{w}",
        b"x",
        [("Content-Disposition", "inline"), ("Content-Type", "a/b"), ("Cache-Control", "no-cache")],
    )
    assert r.etag == chain.put(b"x", "a/b", hs)
    same = srv.put(
        f"/{w}",
        b"x",
        [("Content-Disposition", "inline"), ("Content-Type", "a/b"), ("Cache-Control", "no-cache")],
    )
    assert same.etag == chain.put(b"x", "a/b", hs)
    assert same.etag != r.etag  # every write changes a durable ETag
    v = srv.verify(w)
    assert v.status == 200
    assert v.header("x-audit-events") == str(chain.events)
    assert v.header("x-audit-genesis") == f"hmac-{chain.genesis}"
    assert v.header("x-audit-latest") == f"hmac-{chain.prev}"


def test_memory_etag_is_body_hash(srv: Server, uid: str) -> None:
    for ns in ("tmp", "dev", "sys"):
        r = srv.put(f"/{ns}/{uid}", b"abc", [("Content-Type", "text/x"), ("Cache-Control", "x")])
        assert r.etag == memory_etag(b"abc")
        r2 = srv.put(f"/{ns}/{uid}", b"abc", [("Content-Type", "other/y")])
        assert r2.etag == memory_etag(b"abc")
        assert srv.post(f"/{ns}/{uid}", b"").etag == memory_etag(b"abc")
        assert srv.post(f"/{ns}/{uid}", b"d").etag == memory_etag(b"abcd")
        v = srv.verify(f"{ns}/{uid}")
        assert (v.status, v.header("x-audit-valid"), v.body) == (204, "n/a", b"")


# ---------------------------------------------------------------------------------------
# §7.3 POST, §7.4 DELETE


@pytest.mark.parametrize("ns", ["home", "tmp"])
def test_post_appends_and_keeps_metadata(srv: Server, uid: str, ns: str) -> None:
    w = f"/{ns}/{uid}"
    miss = srv.post(w, b"x")
    assert (miss.status, miss.body) == (404, b"world not found\n")
    srv.put(w, b"a", [("Content-Type", "text/orig"), ("Cache-Control", "keep")])
    p = srv.post(w, b"b", [("Content-Type", "text/new"), ("Cache-Control", "changed")])
    assert (p.status, p.body, p.header("content-type")) == (200, b"", TEXT)
    assert p.header("content-length") == "0"
    assert not p.has("location")
    g = srv.get(w)
    assert (g.body, g.header("content-type"), g.header("cache-control")) == (
        b"ab",
        "text/orig",
        "keep",
    )
    assert g.etag == p.etag


def test_empty_post_changes_durable_etag_only(srv: Server, uid: str) -> None:
    d = srv.put(f"/home/{uid}", b"x").etag
    assert srv.post(f"/home/{uid}", b"").etag != d
    m = srv.put(f"/tmp/{uid}", b"x").etag
    assert srv.post(f"/tmp/{uid}", b"").etag == m


@pytest.mark.parametrize("ns", ["home", "tmp"])
def test_delete(srv: Server, uid: str, ns: str) -> None:
    w = f"/{ns}/{uid}"
    srv.put(w, b"gone soon")
    before = int(srv.verify("var/log/deletes").header("x-audit-events") or 0)
    d = srv.delete(w)
    assert d.status == 204
    assert d.body == b""
    assert d.header("content-type") == TEXT
    assert not d.has("content-length") and not d.has("etag")
    assert srv.get(w).status == 404
    assert f"{ns}/{uid}\n".encode() not in srv.worlds()
    assert int(srv.verify("var/log/deletes").header("x-audit-events") or 0) == before + 2
    again = srv.delete(w, headers=[("If-None-Match", "*")])
    assert (again.status, again.body) == (404, b"world not found\n")
    pf = srv.delete(w, headers=[("If-Match", "*")])
    assert (pf.status, pf.body) == (412, PF_EXISTING)


# ---------------------------------------------------------------------------------------
# §8 conditionals


def test_conditional_writes(srv: Server, uid: str) -> None:
    w = f"/home/{uid}"
    assert_412 = lambda r, body: (r.status, r.body) == (412, body)  # noqa: E731
    assert assert_412(srv.put(w, b"x", [("If-Match", "*")]), PF_EXISTING)
    assert assert_412(srv.post(w, b"x", [("If-Match", '"a"')]), PF_EXISTING)
    assert srv.get(w).status == 404
    c = srv.put(w, b"v1", [("If-None-Match", "*")])
    assert c.status == 201
    tag = c.etag or ""
    weak = "W/" + tag
    before = srv.verify(w[1:]).header("x-audit-events")
    failures = [
        ("PUT", [("If-None-Match", "*")], PF_NONE),
        ("PUT", [("If-None-Match", tag)], PF_NONE),
        ("PUT", [("If-None-Match", weak)], PF_NONE),
        ("POST", [("If-None-Match", f'"zz", {tag}')], PF_NONE),
        ("PUT", [("If-Match", weak)], PF_MATCH),
        ("PUT", [("If-Match", tag[1:-1])], PF_MATCH),
        ("PUT", [("If-Match", tag.upper())], PF_MATCH),
        ("PUT", [("If-Match", '"zz"'), ("If-Match", tag)], PF_MATCH),
        ("POST", [("If-Match", '"zz"')], PF_MATCH),
        ("DELETE", [("If-Match", '"zz"')], PF_MATCH),
        ("DELETE", [("If-None-Match", "*")], PF_NONE),
        ("PUT", [("If-Match", '"zz"'), ("If-None-Match", "*")], PF_MATCH),
    ]
    for method, hs, body in failures:
        tok = "a" if method == "DELETE" else "w"
        r = srv.request(method, w, b"changed" if method != "DELETE" else None, hs, token=tok)
        assert (r.status, r.body) == (412, body), (method, hs, r)
    assert srv.get(w).body == b"v1"
    assert srv.verify(w[1:]).header("x-audit-events") == before
    ok = [
        ("PUT", [("If-Match", tag)]),
        ("POST", [("If-Match", '"zz", {etag}')]),
        ("PUT", [("If-Match", "*")]),
        ("PUT", [("If-None-Match", '"zz"')]),
        ("PUT", [("If-Match", "")]),
        ("PUT", [("If-None-Match", '"zz"'), ("If-None-Match", "{etag}")]),
    ]
    etag = tag
    for method, hs in ok:
        hs = [(k, v.replace("{etag}", etag)) for k, v in hs]
        r = srv.request(method, w, b"+", hs, token="w")
        assert r.status == 200, (method, hs, r)
        etag = r.etag or ""
    assert srv.delete(w, headers=[("If-Match", etag)]).status == 204


def test_put_if_none_match_tag_on_missing_creates(srv: Server, uid: str) -> None:
    assert srv.put(f"/home/{uid}", b"x", [("If-None-Match", '"whatever"')]).status == 201


def test_conditional_get(srv: Server, uid: str) -> None:
    w = f"/tmp/{uid}"
    tag = (
        srv.put(w, b"0123456789", [("Content-Type", "text/c"), ("Cache-Control", "c1")]).etag or ""
    )
    for inm in (tag, "W/" + tag, "*", f'"x", {tag}'):
        r = srv.get(w, headers=[("If-None-Match", inm)])
        assert (r.status, r.body) == (304, b""), inm
        assert sorted(world_headers(r)) == sorted(
            [
                ("content-type", "text/c"),
                ("etag", tag),
                ("accept-ranges", "bytes"),
                ("link", f'</listen/tmp/{uid}>; rel="monitor"'),
                ("link", '</proc/worlds>; rel="collection"'),
                ("cache-control", "c1"),
            ]
        )
    h = srv.head(w, headers=[("If-None-Match", tag)])
    assert (h.status, h.header("content-length")) == (304, "0")
    assert srv.get(w, headers=[("If-None-Match", '"other"')]).status == 200
    assert srv.get(w, headers=[("If-None-Match", tag[1:-1])]).status == 200
    assert srv.get(w, headers=[("If-None-Match", "")]).status == 200
    r = srv.get(w, headers=[("If-None-Match", tag), ("Range", "bytes=50-60")])
    assert r.status == 304
    assert srv.get(f"/tmp/{uid}x", headers=[("If-None-Match", "*")]).status == 404
    assert (
        srv.get(w, headers=[("If-Modified-Since", "Sun, 01 Jan 2090 00:00:00 GMT")]).status == 200
    )


# ---------------------------------------------------------------------------------------
# §9 ranges

RANGES = [
    ("bytes=0-3", 206, b"0123", "bytes 0-3/10"),
    ("bytes=2-2", 206, b"2", "bytes 2-2/10"),
    ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
    ("bytes=7-", 206, b"789", "bytes 7-9/10"),
    ("bytes=-3", 206, b"789", "bytes 7-9/10"),
    ("bytes=-20", 206, b"0123456789", "bytes 0-9/10"),
    ("bytes=10-", 416, None, None),
    ("bytes=10-12", 416, None, None),
    ("bytes=3-1", 416, None, None),
    ("bytes=-0", 416, None, None),
    ("items=0-3", 416, None, None),
    ("Bytes=0-3", 416, None, None),
    ("bytes=abc", 416, None, None),
    ("bytes= 0-3", 416, None, None),
    ("bytes=99999999999999999999999-", 416, None, None),
    ("bytes=0-0,5-6", 200, b"0123456789", None),
    ("bytes=,0-3", 200, b"0123456789", None),
    ("bytes=0-3,", 200, b"0123456789", None),
]


@pytest.mark.parametrize(("value", "status", "body", "crange"), RANGES, ids=[r[0] for r in RANGES])
def test_range(
    srv: Server, uid: str, value: str, status: int, body: bytes | None, crange: str | None
) -> None:
    w = f"/home/{uid}"
    tag = srv.put(w, b"0123456789", [("Content-Type", "text/r")]).etag
    r = srv.get(w, headers=[("Range", value), ("Range", "bytes=0-0")])
    assert r.status == status, r
    if status == 206:
        assert r.body == body
        assert r.header("content-range") == crange
        assert r.header("content-length") == str(len(body or b""))
        assert (r.header("etag"), r.header("content-type")) == (tag, "text/r")
        h = srv.head(w, headers=[("Range", value)])
        assert (h.status, h.body, h.header("content-range")) == (206, b"", crange)
    elif status == 416:
        assert r.body == b"range not satisfiable\n"
        assert r.header("content-type") == TEXT
        assert r.header("accept-ranges") == "bytes"
        assert r.header("content-range") == "bytes */10"
        assert not r.has("etag")
    else:
        assert r.body == body and not r.has("content-range")


def test_range_on_empty_world_and_if_range(srv: Server, uid: str) -> None:
    srv.put(f"/home/{uid}/e", b"")
    r = srv.get(f"/home/{uid}/e", headers=[("Range", "bytes=0-")])
    assert (r.status, r.header("content-range")) == (416, "bytes */0")
    tag = srv.put(f"/home/{uid}", b"0123456789").etag or ""
    hit = srv.get(f"/home/{uid}", headers=[("Range", "bytes=0-1"), ("If-Range", tag)])
    assert (hit.status, hit.body) == (206, b"01")
    for other in ("W/" + tag, '"nope"', "Sun, 01 Jan 2090 00:00:00 GMT"):
        full = srv.get(f"/home/{uid}", headers=[("Range", "bytes=0-1"), ("If-Range", other)])
        assert (full.status, full.body) == (200, b"0123456789"), other


def test_etag_chain_with_unicode_name_and_headers(srv: Server, uid: str) -> None:
    """Field lengths in the HMAC input are UTF-8 byte counts (§14.4); headers sorted (§14.5)."""
    w = f"home/{uid}/é ü"
    chain = Chain(srv.key, w)
    target = f"/home/{uid}/%C3%A9%20%C3%BC"
    hs = [("x-frame-options", "DENY"), ("cache-control", "no-cache")]
    r = srv.put(
        target,
        "é".encode(),
        [("X-Frame-Options", "DENY"), ("Content-Type", "text/é?"), ("Cache-Control", "no-cache")],
    )
    # a non-ASCII content type is stored as application/octet-stream (§10)
    assert r.etag == chain.put("é".encode(), OCTET, hs)
    assert srv.post(target, b"\xff\x00").etag == chain.append(b"\xff\x00")
