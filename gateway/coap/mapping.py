"""Pure CoAP <-> request-flow mapping: Uri-Path to world path, Content-Format to and from
media types, HTTP status to CoAP code and payload, ETags to 8-byte CoAP ETags.

No aiocoap objects and no I/O here: plain values in, plain values out, so every rule of
PROTOCOL.md §18.3/§18.4 is testable on its own.
"""

from __future__ import annotations

import functools
import hashlib
import re

from ..flow import QUEUED_STATUS

# Namespaces of PROTOCOL.md §2; a first segment outside this set gets "home/" prefixed.
NAMESPACES = frozenset({"home", "tmp", "dev", "sys", "etc", "lib", "boot", "usr", "var", "proc"})
RESERVED_ROOTS = frozenset(
    {"home", "tmp", "dev", "sys", "etc", "lib", "boot", "usr", "var", "var/log", "proc"}
)

# Content-Format registry entries the gateway maps (RFC 7252 §12.3, RFC 7049/8949).
FORMAT_TO_TYPE = {
    0: "text/plain; charset=utf-8",
    42: "application/octet-stream",
    50: "application/json",
    60: "application/cbor",
}
TYPE_TO_FORMAT = {
    "text/plain": 0,
    "application/octet-stream": 42,
    "application/json": 50,
    "application/cbor": 60,
}
NAME_TO_FORMAT = {
    "text": 0,
    "text/plain": 0,
    "octet-stream": 42,
    "application/octet-stream": 42,
    "json": 50,
    "application/json": 50,
    "cbor": 60,
    "application/cbor": 60,
}


class BadWorldName(ValueError):
    pass


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _has_control(s: str) -> bool:
    return _CONTROL.search(s) is not None


# Devices write the same few worlds over and over: remember the last canonical forms.
@functools.lru_cache(maxsize=4096)
def world_from_uri_path(segments: tuple[str, ...]) -> str:
    """Canonical world path (no leading slash) for the Uri-Path options, per §18.3.

    Segments are joined with '/' as they are, with no percent-decoding; a '/' inside a
    segment separates too. Then leading slashes go, ``home/`` is added when the first
    segment is not a namespace, and the result is validated like an HTTP world path.
    """
    if not segments:
        raise BadWorldName("missing Uri-Path")
    joined = "/".join(segments).lstrip("/")
    if not joined:
        raise BadWorldName("empty path")
    first = joined.split("/", 1)[0]
    if first not in NAMESPACES:
        joined = "home/" + joined
    parts = joined.split("/")
    if any(p == "" for p in parts):
        raise BadWorldName("empty segment")
    if any(p in (".", "..") for p in parts):
        raise BadWorldName("dot segment")
    if "\\" in joined:
        raise BadWorldName("backslash")
    if _has_control(joined):
        raise BadWorldName("control characters")
    if joined in RESERVED_ROOTS or parts[0] == "proc":
        raise BadWorldName("reserved namespace root")
    return joined


def content_type_for_format(fmt: int | None) -> str:
    """Media type stored for a PUT with this Content-Format (absent/unknown: octet-stream)."""
    if fmt is None:
        return "application/octet-stream"
    return FORMAT_TO_TYPE.get(fmt, "application/octet-stream")


def format_for_content_type(content_type: str | None) -> int | None:
    """Content-Format for a stored media type (matched before ';', case-insensitive)."""
    if not content_type:
        return None
    base = content_type.split(";", 1)[0].strip().lower()
    return TYPE_TO_FORMAT.get(base)


def parse_format_name(value: str) -> int:
    """CLI helper: '0', '42', 'json', 'application/cbor', ... -> number (ValueError if not)."""
    v = value.strip().lower()
    if v.isdigit() and int(v) < 65536:
        return int(v)
    if v in NAME_TO_FORMAT:
        return NAME_TO_FORMAT[v]
    raise ValueError(f"unknown content format {value!r} (use a number, text, json, cbor, ...)")


def short_etag(http_etag: str) -> bytes:
    """The 8-byte CoAP ETag (RFC 7252 allows 1-8 bytes) standing for a core ETag."""
    return hashlib.sha256(http_etag.strip().strip('"').encode("utf-8")).digest()[:8]


def http_etag_from_option(value: bytes) -> str | None:
    """A full core ETag sent in If-Match by a client that knows it (longer than 8 bytes),
    e.g. ``hmac-<hex>`` or ``"hmac-<hex>"``; None for short (8-byte) CoAP ETags."""
    if len(value) <= 8:
        return None
    text = value.decode("ascii", "replace").strip()
    if not text.startswith('"'):
        text = f'"{text}"'
    return text


# (code, payload) of error answers. Writes keep the reference's terse "error\n" for the
# statuses §18.4 lists; everything else names the problem.
_ERRORS_READ = {
    400: ("4.00", b"bad world name\n"),
    401: ("4.01", b"unauthorized\n"),
    403: ("4.03", b"forbidden\n"),
    404: ("4.04", b"not found\n"),
    405: ("4.05", b"method not allowed\n"),
    412: ("4.12", b"precondition failed\n"),
    413: ("4.13", b"world too large for coap\n"),
    414: ("4.00", b"bad world name\n"),
    415: ("4.15", b"unsupported content format\n"),
    422: ("4.22", b"idempotency key reused with a different request\n"),
    429: ("4.29", b"too many requests\n"),
    500: ("5.00", b"storage error\n"),
    507: ("5.07", b"error\n"),
}
_ERRORS_WRITE = {
    **_ERRORS_READ,
    401: ("4.01", b"error\n"),
    413: ("4.13", b"error\n"),
    500: ("5.00", b"error\n"),
}


def code_for_status(status: int, method: str) -> tuple[str, bytes, bool]:
    """(CoAP code, payload, is_error) for an HTTP status of the core.

    Success payloads are filled in by the caller (GET bodies); other 5xx (and anything
    unexpected) are 5.03, the caller adds Max-Age.
    """
    if 200 <= status < 300:
        if method == "GET":
            return ("2.05", b"", False)
        if method == "DELETE":
            return ("2.02", b"", False)
        if status == 201:
            return ("2.01", b"", False)
        if status == QUEUED_STATUS:
            return ("2.04", b"", False)
        return ("2.04", b"", False)
    if status == 304:
        return ("2.03", b"", False)
    table = _ERRORS_READ if method == "GET" else _ERRORS_WRITE
    if status in table:
        code, payload = table[status]
        return (code, payload, True)
    if 400 <= status < 500:
        return ("4.00", b"bad request\n", True)
    return ("5.03", b"core unavailable\n", True)


def parse_code(dotted: str) -> int:
    """'4.04' -> 132."""
    cls, _, detail = dotted.partition(".")
    return (int(cls) << 5) | int(detail)
