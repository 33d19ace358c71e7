"""§8 conditional requests."""

from __future__ import annotations

import pytest
from elastik.server.conditionals import (
    BODY_IF_MATCH_MISMATCH,
    BODY_IF_MATCH_MISSING,
    BODY_IF_NONE_MATCH,
    Conditions,
    parse_tags,
)
from elastik.server.errors import PreconditionFailed

E = "hmac-" + "ab" * 32


def cond(**headers: str) -> Conditions:
    return Conditions.from_headers(
        [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    )


def fails(c: Conditions, current: str | None) -> bytes | None:
    try:
        c.check_write(current)
    except PreconditionFailed as exc:
        assert exc.status == 412
        return exc.body
    return None


def test_parse_tags() -> None:
    assert parse_tags(None) is None
    assert parse_tags(b"  ") is None
    star = parse_tags(b"*")
    assert star is not None and star.star
    tags = parse_tags(b'"a", W/"b" ,c, "d')
    assert tags is not None and tags.tags == ((False, "a"), (True, "b"))


def test_if_match_requires_existing_world() -> None:
    assert fails(cond(if_match=f'"{E}"'), None) == BODY_IF_MATCH_MISSING
    assert fails(cond(if_match="*"), None) == BODY_IF_MATCH_MISSING


def test_if_match_strong_comparison() -> None:
    assert fails(cond(if_match=f'"{E}"'), E) is None
    assert fails(cond(if_match=f'"x", "{E}"'), E) is None
    assert fails(cond(if_match="*"), E) is None
    assert fails(cond(if_match=f'W/"{E}"'), E) == BODY_IF_MATCH_MISMATCH
    assert fails(cond(if_match=E), E) == BODY_IF_MATCH_MISMATCH  # unquoted never matches
    assert fails(cond(if_match=f'"{E.upper()}"'), E) == BODY_IF_MATCH_MISMATCH


def test_if_none_match_weak_comparison() -> None:
    assert fails(cond(if_none_match=f'W/"{E}"'), E) == BODY_IF_NONE_MATCH
    assert fails(cond(if_none_match=f'"{E}"'), E) == BODY_IF_NONE_MATCH
    assert fails(cond(if_none_match="*"), E) == BODY_IF_NONE_MATCH
    assert fails(cond(if_none_match="*"), None) is None
    assert fails(cond(if_none_match='"other"'), None) is None
    assert fails(cond(if_none_match='"other"'), E) is None


def test_if_match_is_evaluated_before_if_none_match() -> None:
    assert fails(cond(if_match='"nope"', if_none_match="*"), E) == BODY_IF_MATCH_MISMATCH


def test_only_first_header_line_counts_and_empty_is_absent() -> None:
    c = Conditions.from_headers([(b"if-match", b'"nope"'), (b"if-match", f'"{E}"'.encode())])
    assert fails(c, E) == BODY_IF_MATCH_MISMATCH
    empty = Conditions.from_headers([(b"if-match", b"")])
    assert empty.precondition() is None
    assert fails(empty, None) is None


def test_not_modified_and_if_range() -> None:
    assert cond(if_none_match=f'W/"{E}"').not_modified(E)
    assert not cond(if_none_match='"x"').not_modified(E)
    assert cond(if_range=f'"{E}"').range_applies(E)
    assert not cond(if_range=f'W/"{E}"').range_applies(E)
    assert not cond(if_range='"other"').range_applies(E)
    assert not cond(if_range="Sun, 22 Nov 2026 06:51:33 GMT").range_applies(E)
    assert cond().range_applies(E)


@pytest.mark.parametrize("current", [None, E])
def test_precondition_callable_matches_check_write(current: str | None) -> None:
    c = cond(if_match=f'"{E}"')
    pre = c.precondition()
    assert pre is not None
    assert fails(c, current) == (None if current else BODY_IF_MATCH_MISSING)
