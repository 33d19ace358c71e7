"""§3 canonicalization and validation, D2 length, Location encoding, /listen and audit paths.

Expected answers were measured on the reference elastik-core 8.3.0.
"""

from __future__ import annotations

import pytest
from elastik.server import paths
from elastik.server.errors import BadRequest, NotFound, UriTooLong
from hypothesis import given
from hypothesis import strategies as st

EMPTY = paths.BODY_EMPTY_SEGMENT
DOT = paths.BODY_DOT_SEGMENT
BACKSLASH = paths.BODY_BACKSLASH
CONTROL = paths.BODY_CONTROL
RESERVED = paths.BODY_RESERVED


@pytest.mark.parametrize(
    ("raw", "world"),
    [
        (b"/home/note", "home/note"),
        (b"/note", "home/note"),
        (b"/foo/bar", "home/foo/bar"),
        (b"//home/note", "home/note"),
        (b"///home/note", "home/note"),
        (b"/%2Fhome%2Fnote", "home/note"),
        (b"/home/a%2Fb", "home/a/b"),
        (b"/home/a%252Fb", "home/a%2Fb"),
        (b"/home/a%zz", "home/a%zz"),
        (b"/home/a%", "home/a%"),
        (b"/home/a%4", "home/a%4"),
        (b"/HOME/x", "home/HOME/x"),
        (b"/tmp/x", "tmp/x"),
        (b"/var/log/deletes", "var/log/deletes"),
        (b"/home/.hidden", "home/.hidden"),
        (b"/home/..x", "home/..x"),
        (b"/home/...", "home/..."),
        (b"/home/x.", "home/x."),
        (b"/home/a%2e%2e", "home/a.."),
        (b"/home/%C2%A0", "home/\u00a0"),
        (b"/home/%E2%80%8B", "home/\u200b"),
        (b"/home/%E2%80%A8", "home/\u2028"),
        (b"/home/%EF%BB%BF", "home/\ufeff"),
        (b"/listen", "home/listen"),
        (b"/caf%C3%A9", "home/caf\u00e9"),
    ],
)
def test_world_path_canonicalizes(raw: bytes, world: str) -> None:
    assert paths.world_path(raw) == world


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (b"/home/", EMPTY),
        (b"/home//x", EMPTY),
        (b"/home/x/", EMPTY),
        (b"/home/a%2F", EMPTY),
        (b"/%2F", EMPTY),
        (b"//", EMPTY),
        (b"/home%2F", EMPTY),
        (b"/var/log/", EMPTY),
        (b"/home//..", EMPTY),
        (b"/home/.", DOT),
        (b"/home/..", DOT),
        (b"/home/%2e", DOT),
        (b"/home/%2E%2E", DOT),
        (b"/home/../", DOT),
        (b"/./x", DOT),
        (b"/.", DOT),
        (b"/home/a\\b", BACKSLASH),
        (b"/home/a%5Cb", BACKSLASH),
        (b"/home/x%5C/", BACKSLASH),
        (b"/home/%01%5C", BACKSLASH),
        (b"/home//%5C", BACKSLASH),
        (b"/home/%00", CONTROL),
        (b"/home/%1F", CONTROL),
        (b"/home/%7F", CONTROL),
        (b"/home/%C2%85", CONTROL),
        (b"/home/%C2%9F", CONTROL),
        (b"/home/a/%01/..", CONTROL),
        (b"/home/x%01//", CONTROL),
        (b"/home", RESERVED),
        (b"/tmp", RESERVED),
        (b"/var", RESERVED),
        (b"/var/log", RESERVED),
        (b"/var%2Flog", RESERVED),
        (b"/etc", RESERVED),
        (b"/usr", RESERVED),
        (b"/proc/", RESERVED),
        (b"/proc%2Fworlds", RESERVED),
        (b"/%70roc/x", RESERVED),
        (b"/%70roc", RESERVED),
        (b"/proc%2F%01", RESERVED),
        (b"/proc%2F%2F", RESERVED),
    ],
)
def test_world_path_rejects_with_reference_body(raw: bytes, body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        paths.world_path(raw)
    assert info.value.status == 400
    assert info.value.body == body


@pytest.mark.parametrize("raw", [b"/home/%FF", b"/home/%C3", b"/%C3%28", b"/x%ED%A0%80"])
def test_invalid_utf8_names_the_parameter(raw: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        paths.world_path(raw)
    assert info.value.body == b"Invalid URL: Invalid UTF-8 in `world`"


def test_no_unicode_normalization() -> None:
    nfc = paths.world_path("/caf\u00e9".encode())
    nfd = paths.world_path("/cafe\u0301".encode())
    assert nfc != nfd


@pytest.mark.parametrize("prefix", ["home/", "tmp/", "var/log/", "etc/", ""])
def test_d2_world_path_limit_is_1024_utf8_bytes(prefix: str) -> None:
    full = prefix or "home/"
    fits = "/" + prefix + "a" * (1024 - len(full))
    assert len(paths.world_path(fits.encode()).encode()) == 1024
    with pytest.raises(UriTooLong) as info:
        paths.world_path((fits + "a").encode())
    assert info.value.status == 414
    assert info.value.body == b"uri too long: world path exceeds 1024 bytes\n"


def test_d2_limit_counts_utf8_bytes_not_characters() -> None:
    name = "/home/" + "\u00e9" * 509  # 5 + 1018 = 1023 bytes
    assert paths.world_path(name.encode())
    with pytest.raises(UriTooLong):
        paths.world_path((name + "\u00e9").encode())  # 1025 bytes, 515 characters


def test_d2_limit_applies_to_defaulted_namespace() -> None:
    # "/x..." gains "home/" before the length check
    with pytest.raises(UriTooLong):
        paths.world_path(b"/" + b"a" * 1020)


@pytest.mark.parametrize(
    ("world", "encoded"),
    [
        ("home/a b", b"/home/a%20b"),
        ("home/\u00e9", b"/home/%C3%A9"),
        ("home/a%zz", b"/home/a%25zz"),
        ("home/c!$&'()*+,;=:@-._~", b"/home/c!$&'()*+,;=:@-._~"),
        ('home/"#<>?[]^`{|}', b"/home/%22%23%3C%3E%3F%5B%5D%5E%60%7B%7C%7D"),
        ("home/a/b", b"/home/a/b"),
    ],
)
def test_location_encoding(world: str, encoded: bytes) -> None:
    assert paths.encode_location(world) == encoded


@given(st.text(min_size=1, max_size=40))
def test_location_round_trips_through_canonicalization(name: str) -> None:
    try:
        world = paths.world_path(("/home/" + name).encode("utf-8", "surrogatepass"))
    except (BadRequest, UriTooLong, UnicodeEncodeError):
        return
    assert paths.world_path(paths.encode_location(world)) == world


@given(st.binary(max_size=60))
def test_percent_decode_never_raises_and_is_identity_without_percent(raw: bytes) -> None:
    out = paths.percent_decode(raw)
    if b"%" not in raw:
        assert out == raw
    assert len(out) <= len(raw)


@pytest.mark.parametrize(
    ("rest", "world"),
    [
        (b"home/x/verify", "home/x"),
        (b"x/verify", "home/x"),
        (b"home%2Fx%2Fverify", "home/x"),
        (b"home/x%2Fverify", "home/x"),
        (b"home/x/verif%79", "home/x"),
        (b"/home/x/verify", "home/x"),
        (b"%2Fhome/x/verify", "home/x"),
        (b"ct/verify", "home/ct"),
        (b"tmp/a/verify", "tmp/a"),
    ],
)
def test_audit_world(rest: bytes, world: str) -> None:
    assert paths.audit_world(rest) == world


@pytest.mark.parametrize(
    ("rest", "body"),
    [
        (b"home/verify", paths.BODY_AUDIT_INVALID),
        (b"tmp/verify", paths.BODY_AUDIT_INVALID),
        (b"a/../b/verify", paths.BODY_AUDIT_INVALID),
        (b"home//x/verify", paths.BODY_AUDIT_INVALID),
        (b"proc/worlds/verify", paths.BODY_AUDIT_INVALID),
        (b"proc/verify", paths.BODY_AUDIT_INVALID),
        (b"home/a/../verify", paths.BODY_AUDIT_INVALID),
        (b"%2F/verify", paths.BODY_AUDIT_EMPTY),
        (b"/verify", paths.BODY_AUDIT_EMPTY),
        (b"a/%FF/verify", b"Invalid URL: Invalid UTF-8 in `audit_path`"),
        (b"a%FF", b"Invalid URL: Invalid UTF-8 in `audit_path`"),
    ],
)
def test_audit_world_rejects(rest: bytes, body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        paths.audit_world(rest)
    assert info.value.body == body


@pytest.mark.parametrize("rest", [b"home/x", b"home/x/verify/", b"verify", b"..", b"x"])
def test_audit_world_without_verify_suffix_is_not_found(rest: bytes) -> None:
    with pytest.raises(NotFound):
        paths.audit_world(rest)


def test_listen_pattern_is_decoded_and_stripped_not_validated() -> None:
    assert paths.listen_pattern(b"home%2Fsse%2A") == "home/sse*"
    assert paths.listen_pattern(b"//home/x") == "home/x"
    assert paths.listen_pattern(b"home/../x") == "home/../x"
    assert paths.listen_pattern(b"/") == ""
    with pytest.raises(BadRequest) as info:
        paths.listen_pattern(b"%FF")
    assert info.value.body == b"Invalid URL: Invalid UTF-8 in `pattern`"


@pytest.mark.parametrize(
    ("pattern", "world", "hit"),
    [
        ("*", "home/anything", True),
        ("*", "tmp/x", True),
        ("h*", "home/sse/exact", True),
        ("home/sse*", "home/sse/exact", True),
        ("home/sse/*", "home/sse/exact", True),
        ("home/sse/exact*", "home/sse/exact", True),
        ("home/sse/exact", "home/sse/exact", True),
        ("home/sse/exact", "home/sse/exact2", False),
        ("sse/*", "home/sse/x", False),
        ("home/*/x", "home/a/x", False),
        ("home/*/x", "home/*/x", True),
        ("*/x", "home/x", False),
        ("**", "home/x", False),
        ("**", "*", True),
        ("home", "home/x", False),
        ("", "home/x", False),
    ],
)
def test_listen_pattern_matching(pattern: str, world: str, hit: bool) -> None:
    assert paths.Pattern(pattern).matches(world) is hit


def test_namespace_helpers() -> None:
    assert paths.is_memory("tmp/x") and paths.is_memory("dev/x") and paths.is_memory("sys/x")
    assert not paths.is_memory("home/tmp")
    for w in ("etc/x", "lib/x", "boot/x", "usr/x", "var/log/x", "var/log/deletes"):
        assert paths.needs_approve(w)
    for w in ("home/x", "var/x", "tmp/x", "var/logx"):
        assert not paths.needs_approve(w)
