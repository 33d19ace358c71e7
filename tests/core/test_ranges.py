"""§9 byte ranges (all cases measured on the reference with a 10-byte world)."""

from __future__ import annotations

import pytest
from elastik.server.errors import RangeNotSatisfiable
from elastik.server.ranges import content_range, parse_range


@pytest.mark.parametrize(
    ("value", "span"),
    [
        (b"bytes=0-1", (0, 1)),
        (b"bytes=0-1 ", (0, 1)),
        (b"bytes=1-1", (1, 1)),
        (b"bytes=3-100", (3, 9)),
        (b"bytes=9-", (9, 9)),
        (b"bytes=-5", (5, 9)),
        (b"bytes=-20", (0, 9)),
        (b"bytes=+1-2", (1, 2)),
        (b"bytes=00-01", (0, 1)),
        (b"bytes=0-1, 3-4", None),
        (b"bytes=,", None),
        (b"bytes=0-0,", None),
        (b"bytes=,0-3", None),
    ],
)
def test_satisfiable_or_ignored(value: bytes, span: tuple[int, int] | None) -> None:
    assert parse_range(value, 10) == span


@pytest.mark.parametrize(
    "value",
    [
        b"items=0-1,2-3",
        b"items=0-3",
        b"Bytes=0-1",
        b"bytes =0-1",
        b"bytes= 0-1",
        b"bytes=\t0-1",
        b"bytes=0 -1",
        b"bytes=0- 1",
        b"bytes=-",
        b"bytes=",
        b"bytes=abc",
        b"bytes=0x-1",
        b"bytes=10-",
        b"bytes=3-1",
        b"bytes=-0",
        b"bytes=18446744073709551615-",
        b"bytes=18446744073709551616-",
        b"bytes=-18446744073709551616",
        b"bytes=5-18446744073709551616",
        b",",
        b"bytes=1-2-3",
    ],
)
def test_not_satisfiable(value: bytes) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(value, 10)
    exc = info.value
    assert exc.status == 416
    assert exc.body == b"range not satisfiable\n"
    assert (b"content-range", b"bytes */10") in exc.headers
    assert (b"accept-ranges", b"bytes") in exc.headers


@pytest.mark.parametrize("value", [b"bytes=0-0", b"bytes=-1", b"bytes=0-"])
def test_any_range_on_empty_world_is_416(value: bytes) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(value, 0)


def test_content_range_format() -> None:
    assert content_range(0, 9, 10) == b"bytes 0-9/10"
