"""World paths: canonicalization, validation and encoding (PROTOCOL §3, §15.6, §16.2, D2).

Pure functions, no I/O. The HTTP layer hands in the raw request-target path (bytes, no
query) and gets back a canonical world path (``str``) or an ``ElastikError`` to render.
"""

from __future__ import annotations

import re

from .errors import BadRequest, NotFound, UriTooLong

NAMESPACES = frozenset({"home", "tmp", "dev", "sys", "etc", "lib", "boot", "usr", "var", "proc"})
RESERVED_ROOTS = frozenset(
    {"home", "tmp", "dev", "sys", "etc", "lib", "boot", "usr", "var", "var/log"}
)
MEMORY_NAMESPACES = frozenset({"tmp", "dev", "sys"})
APPROVE_PREFIXES = ("etc/", "lib/", "boot/", "usr/", "var/log/")
LEDGER = "var/log/deletes"

# D2: the longest world path we accept, in UTF-8 bytes. The reference fails at ~248 bytes
# (NAME_MAX of its per-world directory); 1024 covers every sane hierarchical name while
# keeping index keys, SSE lines and Location headers small.
MAX_WORLD_PATH_BYTES = 1024

BODY_EMPTY_SEGMENT = b"bad request: world path has empty segment\n"
BODY_DOT_SEGMENT = b"bad request: world path contains dot or encoded-dot segment\n"
BODY_BACKSLASH = b"bad request: world path contains backslash\n"
BODY_CONTROL = b"bad request: world path contains control bytes\n"
BODY_RESERVED = b"bad request: world path is a reserved namespace root\n"
BODY_AUDIT_INVALID = b"bad request: invalid audit verify world path\n"
BODY_AUDIT_EMPTY = b"bad request: audit verify requires a world path\n"


def invalid_utf8(param: str) -> BadRequest:
    return BadRequest(b"Invalid URL: Invalid UTF-8 in `" + param.encode() + b"`")


_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}


def percent_decode(raw: bytes) -> bytes:
    """Decode ``%XX`` escapes once; invalid escapes (``%zz``, a trailing ``%``) stay literal."""
    if b"%" not in raw:
        return raw
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x25 and i + 2 < n and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
            out.append(_HEX[raw[i + 1]] * 16 + _HEX[raw[i + 2]])
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out)


def decode_utf8(raw: bytes, param: str) -> str:
    try:
        return percent_decode(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_utf8(param) from None


# C0, DEL and C1 (U+0080-U+009F); U+00A0, U+200B, U+2028, U+FEFF are accepted (§3).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def validation_error(path: str) -> bytes | None:
    """The 400 body for a canonical candidate ``path`` (already namespace-defaulted), or None.

    Order measured on the reference: ``proc`` namespace, backslash, control characters,
    then segments left to right (empty or dot), then reserved roots.
    """
    if path == "proc" or path.startswith("proc/"):
        return BODY_RESERVED
    if "\\" in path:
        return BODY_BACKSLASH
    if _CONTROL.search(path):
        return BODY_CONTROL
    for seg in path.split("/"):
        if not seg:
            return BODY_EMPTY_SEGMENT
        if seg == "." or seg == "..":
            return BODY_DOT_SEGMENT
    if path in RESERVED_ROOTS:
        return BODY_RESERVED
    return None


def canonical(decoded: str) -> str:
    """Strip leading slashes and add ``home/`` when the first segment is no namespace."""
    path = decoded.lstrip("/")
    if not path:
        return path
    first = path.split("/", 1)[0]
    if first not in NAMESPACES:
        return "home/" + path
    return path


def check_length(path: str) -> None:
    if len(path) > MAX_WORLD_PATH_BYTES // 4 and len(path.encode()) > MAX_WORLD_PATH_BYTES:
        raise UriTooLong()


def world_path(raw: bytes) -> str:
    """Canonical world path for the generic ``/{world}`` route (raw path incl. leading ``/``).

    Raises ``BadRequest`` (400) or ``UriTooLong`` (414, D2).
    """
    path = canonical(decode_utf8(raw, "world"))
    err = validation_error(path)
    if err is not None:
        raise BadRequest(err)
    check_length(path)
    return path


def audit_world(raw_rest: bytes) -> str:
    """World path of ``/proc/audit/<raw_rest>``; raw_rest excludes the ``/proc/audit/`` prefix.

    Decoding comes first (so ``verif%79`` counts as ``verify``), then the ``/verify``
    suffix check (404 without it), then canonicalization (400 with the audit bodies).
    """
    decoded = decode_utf8(raw_rest, "audit_path")
    if not decoded.endswith("/verify"):
        raise NotFound()
    middle = decoded[: -len("/verify")].lstrip("/")
    if not middle:
        raise BadRequest(BODY_AUDIT_EMPTY)
    path = canonical(middle)
    if validation_error(path) is not None:
        raise BadRequest(BODY_AUDIT_INVALID)
    check_length(path)
    return path


def listen_pattern(raw_rest: bytes) -> str:
    """The ``/listen/<raw_rest>`` pattern: decoded, leading slashes stripped, not validated."""
    return decode_utf8(raw_rest, "pattern").lstrip("/")


class Pattern:
    """A compiled /listen pattern (§16.2): ``*`` all, trailing ``*`` prefix, else exact."""

    __slots__ = ("prefix", "text")

    def __init__(self, text: str):
        self.text = text
        if text.endswith("*"):
            self.prefix: str | None = text[:-1]
        else:
            self.prefix = None

    def matches(self, world: str) -> bool:
        if self.prefix is not None:
            return world.startswith(self.prefix)
        return world == self.text


def is_memory(path: str) -> bool:
    return path.split("/", 1)[0] in MEMORY_NAMESPACES


def needs_approve(path: str) -> bool:
    """PUT/POST in etc/, lib/, boot/, usr/, var/log/ need the approve token (§6.2)."""
    return path.startswith(APPROVE_PREFIXES)


# RFC 3986 pchar plus "/" stay literal in Location and Link; everything else is %XX.
_KEEP = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
)
_ENC = [bytes([b]) if b in _KEEP else b"%%%02X" % b for b in range(256)]


def encode_location(path: str) -> bytes:
    """``/`` + the world path percent-encoded for Location and Link headers (§3)."""
    raw = path.encode()
    if raw.isascii() and all(b in _KEEP for b in raw):
        return b"/" + raw
    return b"/" + b"".join(_ENC[b] for b in raw)
