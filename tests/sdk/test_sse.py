"""The sans-IO SSE parser: spec line handling, bounds, and chunking invariance."""

from __future__ import annotations

import pytest
from elastik.sdk import sse
from elastik.sdk.sse import SSEEvent, SSEParser, SSEProtocolError, event_fields
from hypothesis import given, settings
from hypothesis import strategies as st

CORE_STREAM = (
    b"event: put\nid: 1\ndata: path: /home/a\ndata: method: PUT\ndata: etag: hmac-1\n\n"
    b": keepalive\n\n"
    b"event: lag\ndata: missed: 3\n\n"
    b"event: delete\nid: 7\ndata: path: /home/a\ndata: method: DELETE\n\n"
)


def parse_all(data: bytes) -> list[SSEEvent]:
    return SSEParser().feed(data)


def test_core_stream_parses_to_events() -> None:
    events = parse_all(CORE_STREAM)
    assert [(e.event, e.id) for e in events] == [("put", "1"), ("lag", "1"), ("delete", "7")]
    assert events[0].data == "path: /home/a\nmethod: PUT\netag: hmac-1"
    assert event_fields(events[0]) == {
        "event": "put",
        "id": "1",
        "data": events[0].data,
        "path": "/home/a",
        "method": "PUT",
        "etag": "hmac-1",
    }
    assert event_fields(events[1])["missed"] == "3"


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_all_three_line_endings(eol: bytes) -> None:
    stream = CORE_STREAM.replace(b"\n", eol)
    assert parse_all(stream) == parse_all(CORE_STREAM)


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\r") == []
    assert p.feed(b"\n\r") == [SSEEvent("message", "a", "")]
    assert p.feed(b"\n") == []  # the LF after a CR is not a second blank line


def test_field_rules() -> None:
    events = parse_all(
        b"data:no-space\n\n"
        b"data:  two spaces\n\n"
        b"data\n\n"  # a field without colon has an empty value
        b"event: custom\nunknown: x\ndata: y\n\n"
        b"id: 5\x00x\ndata: nul id ignored\n\n"
        b"retry: 3000\ndata: r\n\n"
        b"retry: abc\ndata: r2\n\n"
    )
    assert [e.data for e in events] == [
        "no-space",
        " two spaces",
        "",
        "y",
        "nul id ignored",
        "r",
        "r2",
    ]
    assert events[3].event == "custom"
    assert events[4].id == ""
    assert events[5].retry == 3000 and events[6].retry is None


def test_no_dispatch_without_data_but_id_sticks() -> None:
    p = SSEParser()
    assert p.feed(b"id: 9\nevent: put\n\n") == []
    assert p.last_event_id == "9"
    assert p.feed(b"data: x\n\n") == [SSEEvent("message", "x", "9")]


def test_comments_and_bom() -> None:
    assert parse_all(b"\xef\xbb\xbf: hello\ndata: a\n\n") == [SSEEvent("message", "a", "")]
    assert parse_all(b": only comments\n: more\n\n") == []


def test_incomplete_event_is_held_until_blank_line() -> None:
    p = SSEParser()
    assert p.feed(b"event: put\ndata: x") == []
    assert p.feed(b"\n") == []
    assert p.feed(b"\n")[0].data == "x"


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert parse_all(b"data: \xff\n\n")[0].data == "\ufffd"


def test_line_length_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "MAX_LINE_BYTES", 64)
    p = SSEParser()
    with pytest.raises(SSEProtocolError, match="longer than 64"):
        p.feed(b"data: " + b"x" * 100)
    assert p.feed(b"\ndata: ok\n\n")[-1].data == "ok"


def test_data_lines_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "MAX_DATA_LINES", 3)
    with pytest.raises(SSEProtocolError, match="more than 3"):
        parse_all(b"data: a\n" * 4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(CORE_STREAM)), max_size=12))
def test_chunk_boundaries_do_not_matter(cuts: list[int]) -> None:
    p = SSEParser()
    out: list[SSEEvent] = []
    last = 0
    for cut in sorted(set(cuts)):
        out += p.feed(CORE_STREAM[last:cut])
        last = cut
    out += p.feed(CORE_STREAM[last:])
    assert out == parse_all(CORE_STREAM)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for ev in SSEParser().feed(data):
        assert isinstance(ev.data, str)
