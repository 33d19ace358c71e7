"""Body codecs for the typed put/get helpers: gzip, CSV, struct, text. Pure functions."""

from __future__ import annotations

import csv
import gzip
import io
import struct
from collections.abc import Iterable, Sequence
from typing import Any


def body_bytes(data: bytes | bytearray | memoryview | str, what: str) -> bytes:
    """str -> UTF-8, bytes-like -> bytes; anything else is a TypeError naming the call."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    raise TypeError(f"{what}() data must be str or bytes, got {type(data).__name__}")


def default_content_type(data: object) -> str:
    return "text/plain; charset=utf-8" if isinstance(data, str) else "application/octet-stream"


def gzip_encode(data: bytes) -> bytes:
    # mtime=0: the same input gives the same bytes, so re-putting unchanged data is a no-op
    # for anyone comparing bodies.
    return gzip.compress(data, mtime=0)


def gzip_decode(data: bytes) -> bytes:
    return gzip.decompress(data)


def csv_encode(rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def csv_decode(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def struct_encode(fmt: str, values: Sequence[Any]) -> bytes:
    return struct.pack(fmt, *values)


def struct_decode(fmt: str, data: bytes) -> tuple[Any, ...]:
    return struct.unpack(fmt, data)
