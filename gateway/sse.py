"""A small sans-IO Server-Sent Events parser (WHATWG "event stream interpretation").

Why our own: the aiohttp SSE client packages on PyPI are either unmaintained
(aiohttp-sse-client: last release 2021) or thinly used (aiosseclient), and the part we need
is the line protocol only -- reconnection and Last-Event-ID are handled by the Observe hub,
which has to decide what to re-send to devices after a gap anyway. Bytes go in, complete
events come out; tests feed it the core's stream split at every byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A line longer than this is not an elastik event (those are a few hundred bytes); the
# parser drops the stream's buffered bytes rather than grow without bound.
MAX_LINE = 64 * 1024


@dataclass(slots=True)
class SSEEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    fields: dict[str, str] = field(default_factory=dict)  # "key: value" pairs of data lines


class SSEParser:
    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.last_event_id: str | None = None
        self.pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        buf = self._buf + chunk
        if self.pending_cr and buf.startswith(b"\n"):
            buf = buf[1:]
        self.pending_cr = False
        start = 0
        n = len(buf)
        i = 0
        while i < n:
            c = buf[i]
            if c == 0x0A or c == 0x0D:
                line = buf[start:i]
                if c == 0x0D:
                    if i + 1 < n and buf[i + 1] == 0x0A:
                        i += 1
                    elif i + 1 == n:
                        self.pending_cr = True
                ev = self._line(line.decode("utf-8", "replace"))
                if ev is not None:
                    out.append(ev)
                start = i + 1
            i += 1
        self._buf = buf[start:]
        if len(self._buf) > MAX_LINE:
            self._buf = b""
        return out

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        if self._id is not None:
            self.last_event_id = self._id
        if not self._data and not self._event:
            self._id = None
            return None
        fields: dict[str, str] = {}
        for d in self._data:
            k, sep, v = d.partition(": ")
            if sep:
                fields[k] = v
        ev = SSEEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._id,
            fields=fields,
        )
        self._event, self._data, self._id = "", [], None
        return ev
