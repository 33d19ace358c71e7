"""§11 persisted headers (four layers) and §10 content type."""

from __future__ import annotations

import pytest
from elastik.server.headerpolicy import HARD_DENY, HeaderPolicy, NameList, content_type


def h(*pairs: tuple[str, str | bytes]) -> list[tuple[bytes, bytes]]:
    return [(n.lower().encode(), v if isinstance(v, bytes) else v.encode()) for n, v in pairs]


def test_default_allow_persists_and_sorts() -> None:
    got = HeaderPolicy().persisted(
        h(("X-Frame-Options", "DENY"), ("Cache-Control", "no-cache"), ("X-Meta-A", "1"))
    )
    assert got == (("cache-control", "no-cache"), ("x-frame-options", "DENY"))


def test_hard_deny_beats_user_allow() -> None:
    policy = HeaderPolicy(persist="authorization, etag, sec-foo, x-amzn-*, x-meta-*")
    got = policy.persisted(
        h(("Authorization", "Bearer w"), ("ETag", "x"), ("Sec-Foo", "1"), ("X-Amzn-Id", "1"))
    )
    assert got == ()


@pytest.mark.parametrize("name", sorted(HARD_DENY))
def test_every_hard_denied_name_is_refused_even_if_allowed(name: str) -> None:
    policy = HeaderPolicy(persist=name)
    assert policy.persisted(h((name, "v"))) == ()


def test_user_deny_beats_default_and_user_allow() -> None:
    policy = HeaderPolicy(persist="x-meta-*", deny="cache-control, x-meta-secret*")
    got = policy.persisted(
        h(("Cache-Control", "x"), ("X-Meta-Secret-Key", "s"), ("X-Meta-Ok", "1"))
    )
    assert got == (("x-meta-ok", "1"),)


def test_user_allow_prefix_and_literal_star() -> None:
    policy = HeaderPolicy(persist=" X-META-* , x-z*y,, last-modified ")
    got = policy.persisted(
        h(("x-meta-a", "1"), ("x-z*y", "2"), ("x-zzy", "3"), ("Last-Modified", "today"))
    )
    assert got == (("last-modified", "today"), ("x-meta-a", "1"), ("x-z*y", "2"))


def test_lone_star_is_ignored_in_both_lists() -> None:
    assert NameList("*").prefixes == () and NameList("*").exact == frozenset()
    policy = HeaderPolicy(persist="*", deny="*")
    assert policy.persisted(h(("X-Meta", "1"), ("Cache-Control", "c"))) == (("cache-control", "c"),)


def test_last_value_wins_empty_values_kept_non_ascii_dropped() -> None:
    policy = HeaderPolicy(persist="x-e, x-bin")
    got = policy.persisted(
        h(
            ("Cache-Control", "first"),
            ("Cache-Control", "second"),
            ("X-E", ""),
            ("X-Bin", "caf\u00e9".encode()),
        )
    )
    assert got == (("cache-control", "second"), ("x-e", ""))


def test_content_type_first_wins_and_is_verbatim() -> None:
    assert content_type(h(("Content-Type", "Text/Plain;  charset=X"), ("Content-Type", "b"))) == (
        "Text/Plain;  charset=X"
    )
    assert content_type(h(("Content-Type", "garbage"))) == "garbage"


@pytest.mark.parametrize("value", [b"", b"   ", "caf\u00e9".encode(), b"a\xffb", b"a\x01b"])
def test_content_type_falls_back_to_octet_stream(value: bytes) -> None:
    assert content_type([(b"content-type", value)]) == "application/octet-stream"


def test_missing_content_type_is_octet_stream() -> None:
    assert content_type([]) == "application/octet-stream"
