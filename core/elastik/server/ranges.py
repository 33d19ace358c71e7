"""Single byte ranges for GET/HEAD (PROTOCOL §9). Pure.

``parse_range(value, size)`` returns None (serve the full 200), an inclusive
``(first, last)`` pair (206), or raises ``RangeNotSatisfiable`` (416).
"""

from __future__ import annotations

from .errors import RangeNotSatisfiable

_U64_MAX = 2**64 - 1
_DIGITS = frozenset(b"0123456789")


def _u64(text: bytes) -> int:
    """Parse like Rust's ``u64::from_str``: optional ``+``, at least one digit, no overflow."""
    if text[:1] == b"+":
        text = text[1:]
    if not text or not all(c in _DIGITS for c in text):
        raise ValueError(text)
    n = int(text)
    if n > _U64_MAX:
        raise ValueError(text)
    return n


def not_satisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        headers=[(b"accept-ranges", b"bytes"), (b"content-range", b"bytes */%d" % size)]
    )


def parse_range(value: bytes, size: int) -> tuple[int, int] | None:
    value = value.strip(b" \t")
    if not value.startswith(b"bytes="):
        raise not_satisfiable(size)
    spec = value[6:]
    if b"," in spec:
        return None  # multi-range: ignored, full representation
    first_s, dash, last_s = spec.partition(b"-")
    try:
        if not dash:
            raise ValueError(spec)
        first = _u64(first_s) if first_s else None
        last = _u64(last_s) if last_s or first is None else None
    except ValueError:
        raise not_satisfiable(size) from None
    if size == 0:
        raise not_satisfiable(size)
    if first is None:  # suffix range "-k": the last k bytes
        if not last:
            raise not_satisfiable(size)
        return max(0, size - last), size - 1
    if first >= size or (last is not None and last < first):
        raise not_satisfiable(size)
    return first, size - 1 if last is None else min(last, size - 1)


def content_range(first: int, last: int, size: int) -> bytes:
    return b"bytes %d-%d/%d" % (first, last, size)
