"""A sans-IO Server-Sent Events parser (WHATWG HTML §9.2.6) for ``/listen`` streams.

Why our own: ``import elastik`` must stay stdlib-only and light, and no stdlib module
parses SSE. The parser is a small class with no I/O: ``feed(bytes) -> [SSEEvent]``. It
follows the spec's rules that matter on the wire (CR, LF and CRLF line ends, a single
optional space after the colon, comments, ``id`` without NUL, dispatch on a blank line,
no dispatch for an empty data buffer) and bounds its buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

# Longest line we buffer. The core's event lines are well under 2 KiB (a 1024-byte world
# path plus the field name); 1 MiB leaves room for any sane server and still bounds memory
# when a peer never sends a newline.
MAX_LINE_BYTES = 1 << 20
# Most data lines one event may carry before it is dropped: the core sends three.
MAX_DATA_LINES = 1024


class SSEProtocolError(ValueError):
    """The stream broke a bound (a line or an event too large)."""


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str
    id: str  # the last event id in force when this event was dispatched
    retry: int | None = None


class SSEParser:
    def __init__(self) -> None:
        self._buf = b""
        self._skip_lf = False
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None
        self.last_event_id = ""
        self._first = True

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume bytes; return the events completed by them (possibly none)."""
        out: list[SSEEvent] = []
        data = self._buf + chunk
        start = 0
        n = len(data)
        i = 0
        while i < n:
            byte = data[i]
            if self._skip_lf:
                self._skip_lf = False
                if byte == 0x0A:
                    start = i = i + 1
                    continue
            if byte == 0x0A or byte == 0x0D:
                self._line(data[start:i], out)
                self._skip_lf = byte == 0x0D
                start = i = i + 1
                continue
            i += 1
        self._buf = data[start:]
        if len(self._buf) > MAX_LINE_BYTES:
            self._buf = b""
            raise SSEProtocolError(f"SSE line longer than {MAX_LINE_BYTES} bytes")
        return out

    def _line(self, raw: bytes, out: list[SSEEvent]) -> None:
        if self._first:
            self._first = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        line = raw.decode("utf-8", "replace")
        if line == "":
            self._dispatch(out)
            return
        if line.startswith(":"):
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            if len(self._data) >= MAX_DATA_LINES:
                raise SSEProtocolError(f"SSE event with more than {MAX_DATA_LINES} data lines")
            self._data.append(value)
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)

    def _dispatch(self, out: list[SSEEvent]) -> None:
        if self._data:
            out.append(
                SSEEvent(
                    event=self._event or "message",
                    data="\n".join(self._data),
                    id=self.last_event_id,
                    retry=self._retry,
                )
            )
        self._event = ""
        self._data = []
        self._retry = None


def event_fields(ev: SSEEvent) -> dict[str, str]:
    """The dict shape ``Elastik.listen()`` yields: event, id, data, plus ``key: value``
    data lines (``path``, ``method``, ``etag``; ``missed`` for a lag event)."""
    out = {"event": ev.event, "id": ev.id, "data": ev.data}
    for line in ev.data.split("\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out.setdefault(key.strip().lower(), value.lstrip(" "))
    return out
