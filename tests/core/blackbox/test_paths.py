"""PROTOCOL §3: path grammar, canonicalization, validation, Location/Link encoding."""

from __future__ import annotations

import pytest

from tests.core.blackbox.wire import Server

EMPTY = b"bad request: world path has empty segment\n"
DOT = b"bad request: world path contains dot or encoded-dot segment\n"
BACKSLASH = b"bad request: world path contains backslash\n"
CONTROL = b"bad request: world path contains control bytes\n"
RESERVED = b"bad request: world path is a reserved namespace root\n"


def utf8_error(name: str) -> bytes:
    return f"Invalid URL: Invalid UTF-8 in `{name}`".encode()


# (request target, expected 400 body). {u} is the test's unique fragment.
INVALID = [
    ("/home/", EMPTY),
    ("/home//{u}", EMPTY),
    ("/home/{u}/", EMPTY),
    ("/home/{u}%2F", EMPTY),
    ("/%2F", EMPTY),
    ("/listen/", EMPTY),
    ("/home/{u}/./x", DOT),
    ("/home/{u}/../x", DOT),
    ("/home/%2e/{u}", DOT),
    ("/home/{u}/%2E%2E", DOT),
    ("/{u}/.", DOT),
    ("/home/{u}\\x", BACKSLASH),
    ("/home/{u}%5Cx", BACKSLASH),
    ("/home/{u}%5cx", BACKSLASH),
    ("/home/{u}%00", CONTROL),
    ("/home/{u}%01x", CONTROL),
    ("/home/{u}%0A", CONTROL),
    ("/home/{u}%1F", CONTROL),
    ("/home/{u}%7F", CONTROL),
    ("/home/{u}%C2%85", CONTROL),
    ("/home/{u}%C2%9F", CONTROL),
    ("/home", RESERVED),
    ("/tmp", RESERVED),
    ("/dev", RESERVED),
    ("/sys", RESERVED),
    ("/etc", RESERVED),
    ("/lib", RESERVED),
    ("/boot", RESERVED),
    ("/usr", RESERVED),
    ("/var", RESERVED),
    ("/var/log", RESERVED),
    ("//var%2Flog", RESERVED),
    ("/proc/", RESERVED),
    ("/proc%2Fworlds", RESERVED),
    ("/%70roc/{u}", RESERVED),
    ("/home/{u}%FF", utf8_error("world")),
    ("/home/{u}%C3", utf8_error("world")),
    ("/home/{u}%C3(", utf8_error("world")),
    ("/listen/{u}%FF", utf8_error("pattern")),
    ("/proc/audit/{u}%FF/verify", utf8_error("audit_path")),
]


@pytest.mark.parametrize(("target", "body"), INVALID, ids=[t for t, _ in INVALID])
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_invalid_path_is_400_and_changes_nothing(
    srv: Server, uid: str, method: str, target: str, body: bytes
) -> None:
    if method == "PUT" and (target.startswith("/listen/") or target.startswith("/proc/audit")):
        pytest.skip("only GET routes")
    before = srv.snapshot()
    r = srv.request(method, target.format(u=uid), b"data", token="a")
    assert r.status == 400, r
    assert r.body == body
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert srv.snapshot() == before


def test_path_validation_happens_before_auth(srv_read: Server) -> None:
    r = srv_read.get("/home")
    assert (r.status, r.body) == (400, RESERVED)
    r = srv_read.put("/home//x", b"x", token=None)
    assert (r.status, r.body) == (400, EMPTY)


# (alias target, canonical target) - the alias must reach the same world.
ALIASES = [
    ("/home/{u}%2Fb", "/home/{u}/b"),
    ("//home/{u}", "/home/{u}"),
    ("///home/{u}", "/home/{u}"),
    ("/%2Fhome%2F{u}", "/home/{u}"),
    ("/{u}", "/home/{u}"),
    ("/{u}/bar", "/home/{u}/bar"),
    ("/HOME/{u}", "/home/HOME/{u}"),
    ("/home/{u}?q=1&x", "/home/{u}"),
    ("/home/{u}#frag", "/home/{u}"),
    ("/home/{u}%zz", "/home/{u}%25zz"),
    ("/tmp/{u}%2Fq", "/tmp/{u}/q"),
    ("/home/%2E{u}", "/home/.{u}"),
    ("/home/{u}..x", "/home/{u}..x"),
    ("/home/{u}/...", "/home/{u}/..."),
    ("/home/{u}%C2%A0", "/home/{u}%C2%A0"),
    ("/home/{u}%E2%80%8B", "/home/{u}%E2%80%8B"),
    ("/home/{u}%E2%80%A8", "/home/{u}%E2%80%A8"),
    ("/home/{u}%EF%BB%BF", "/home/{u}%EF%BB%BF"),
]


@pytest.mark.parametrize(("alias", "canonical"), ALIASES, ids=[a for a, _ in ALIASES])
def test_alias_reaches_canonical_world(srv: Server, uid: str, alias: str, canonical: str) -> None:
    alias, canonical = alias.format(u=uid), canonical.format(u=uid)
    r = srv.put(alias, b"via alias")
    assert r.status == 201, r
    assert r.header("location") == canonical.split("?")[0]
    got = srv.get(canonical)
    assert (got.status, got.body) == (200, b"via alias")
    assert got.etag == r.etag


def test_double_encoded_slash_is_literal_percent(srv: Server, uid: str) -> None:
    r = srv.put(f"/home/{uid}%252F", b"x")
    assert r.header("location") == f"/home/{uid}%252F"
    assert f"home/{uid}%2F\n".encode() in srv.worlds()
    assert f"home/{uid}/\n".encode() not in srv.worlds()


def test_no_unicode_normalization_and_case_sensitive(srv: Server, uid: str) -> None:
    nfc, nfd = "caf%C3%A9", "cafe%CC%81"
    assert srv.put(f"/home/{uid}{nfc}", b"nfc").status == 201
    assert srv.put(f"/home/{uid}{nfd}", b"nfd").status == 201
    assert srv.get(f"/home/{uid}{nfc}").body == b"nfc"
    assert srv.get(f"/home/{uid}{nfd}").body == b"nfd"
    assert srv.put(f"/home/{uid}X", b"upper").status == 201
    assert srv.get(f"/home/{uid}x").status == 404
    listing = srv.worlds().decode()
    assert f"home/{uid}café\n" in listing
    assert f"home/{uid}cafe\u0301\n" in listing


LOCATIONS = [
    ("a%20b", "a%20b"),
    ("%C3%A9", "%C3%A9"),
    ("a%zz", "a%25zz"),
    ("c!$&'()*+,;=:@-._~", "c!$&'()*+,;=:@-._~"),
    ("q%22%3C%3E%5B%5D%5E%60%7B%7C%7D", "q%22%3C%3E%5B%5D%5E%60%7B%7C%7D"),
    ("h%23x%3Fy", "h%23x%3Fy"),
]


@pytest.mark.parametrize(("raw", "encoded"), LOCATIONS)
def test_location_and_link_encoding(srv: Server, uid: str, raw: str, encoded: str) -> None:
    r = srv.put(f"/home/{uid}/{raw}", b"x")
    assert r.status == 201, r
    assert r.header("location") == f"/home/{uid}/{encoded}"
    g = srv.get(f"/home/{uid}/{raw}")
    assert g.all("link") == [
        f'</listen/home/{uid}/{encoded}>; rel="monitor"',
        '</proc/worlds>; rel="collection"',
    ]


def test_memory_world_accepts_long_name(srv: Server, uid: str) -> None:
    name = f"/tmp/{uid}" + "m" * 900
    assert srv.put(name, b"long").status == 201
    assert srv.get(name).body == b"long"


def test_request_target_65000_accepted_70000_is_414(srv: Server, uid: str) -> None:
    before = srv.snapshot()
    ok = srv.get(f"/home/{uid}?" + "q" * (65000 - len(uid) - 7))
    assert ok.status == 404
    r = srv.get(f"/home/{uid}?" + "q" * 70000)
    assert r.status == 414
    assert r.body == b""
    assert not r.has("x-request-id")
    assert srv.snapshot() == before


def test_raw_space_in_request_line_is_bare_400(srv: Server, uid: str) -> None:
    r = srv.raw(f"GET /home/{uid} x HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert r.status == 400
    assert r.body == b""
    assert r.header("connection") == "close"
    assert not r.has("x-request-id")


@pytest.mark.reference
def test_reference_durable_name_over_name_max_is_500(pool: object) -> None:
    """§3.6 on the reference (our core replaces this with D2, see test_ours_only)."""
    from tests.core.blackbox.conftest import Pool

    assert isinstance(pool, Pool)
    srv = pool.get("reference")
    fits, too_long = "/home/" + "a" * 248, "/home/" + "a" * 249
    assert srv.put(fits, b"x").status in (200, 201)
    assert srv.delete(fits).status == 204
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        r = srv.request(method, too_long, b"x" if method == "PUT" else None, token="a")
        assert r.status == 500, (method, r)
        if method != "HEAD":
            assert r.body == b"internal error: storage failure\n"


UTF8_TARGETS = [
    ("/home/{u}%FF", "world"),
    ("/listen/{u}%FF", "pattern"),
    ("/proc/audit/{u}%C3/verify", "audit_path"),
]


@pytest.mark.parametrize(("target", "name"), UTF8_TARGETS, ids=[t[1] for t in UTF8_TARGETS])
@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS"])
def test_invalid_utf8_is_400_before_method_routing(
    srv: Server, uid: str, target: str, name: str, method: str
) -> None:
    body = b"x" if method in ("PUT", "POST") else None
    r = srv.request(method, target.format(u=uid), body, token="a")
    assert r.status == 400, r
    assert r.body == (b"" if method == "HEAD" else utf8_error(name))
    assert not r.has("allow")
