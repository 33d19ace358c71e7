"""Datagram pre-filter: what happens to a UDP datagram before aiocoap's parser sees it.

Sans-IO: ``inspect(datagram)`` returns ``None`` (pass it on) or a ``Drop`` naming the
reason and, for oversized datagrams, the 4-byte RST to send back. The floor is
PROTOCOL.md §18.1; on top of it, everything RFC 7252 calls a message format error is
dropped here too, so aiocoap only ever parses well-formed messages. Every drop is counted
by the caller under ``drop.<reason>`` (``rst.oversize`` for the RST answer).
"""

from __future__ import annotations

from dataclasses import dataclass

# PROTOCOL.md §18.1: 1152 bytes is the largest datagram accepted (RFC 7252 §4.6: 1024
# bytes of payload plus room for the header, token and options in a 1280-byte IPv6 MTU).
MAX_DATAGRAM = 1152

URI_PATH = 11
CONTENT_FORMAT = 12
# Options whose values are UTF-8 strings (RFC 7252 §5.10); aiocoap decodes them eagerly.
STRING_OPTIONS = frozenset({3, 8, 11, 15, 20, 35, 39})
# uint options whose length RFC 7252/7641/7959 bound to 3 bytes; longer ones are refused
# here because aiocoap would decode them into nonsense block numbers.
THREE_BYTE_OPTIONS = frozenset({6, 23, 27})


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str
    reply: bytes | None = None  # bytes to send back (the bare RST), or None: silence


def rst_for(datagram: bytes) -> bytes:
    """The bare RST for an oversized datagram: 0x70 0x00 and the request's Message ID."""
    return b"\x70\x00" + datagram[2:4]


def inspect(datagram: bytes) -> Drop | None:
    n = len(datagram)
    if n > MAX_DATAGRAM:
        return Drop("oversize", rst_for(datagram))
    if n < 4:
        return Drop("short")
    first = datagram[0]
    if first >> 6 != 1:
        return Drop("bad_version")
    mtype = (first >> 4) & 3
    tkl = first & 0x0F
    if tkl > 8:
        return Drop("bad_token_length")
    code = datagram[1]
    cls = code >> 5
    if cls in (1, 6, 7):
        return Drop("reserved_code")
    if code == 0:
        # Empty message: only the 4-byte header is legal (RFC 7252 §4.1).
        if n != 4 or tkl:
            return Drop("empty_with_content")
        if mtype == 1:  # NON empty means nothing
            return Drop("empty_non")
        return None
    if cls == 0 and mtype in (2, 3):
        return Drop("request_in_ack_or_rst")
    pos = 4 + tkl
    if pos > n:
        return Drop("truncated_token")
    number = 0
    while pos < n:
        b = datagram[pos]
        if b == 0xFF:
            if pos + 1 == n:
                return Drop("empty_payload_after_marker")
            return None
        pos += 1
        delta, length = b >> 4, b & 0x0F
        if delta == 15 or length == 15:
            return Drop("option_nibble_15")
        ext = []
        for nib in (delta, length):
            if nib == 13:
                if pos >= n:
                    return Drop("truncated_option")
                ext.append(datagram[pos] + 13)
                pos += 1
            elif nib == 14:
                if pos + 2 > n:
                    return Drop("truncated_option")
                ext.append(int.from_bytes(datagram[pos : pos + 2], "big") + 269)
                pos += 2
            else:
                ext.append(nib)
        number += ext[0]
        length = ext[1]
        if pos + length > n:
            return Drop("truncated_option")
        value = datagram[pos : pos + length]
        pos += length
        if number == CONTENT_FORMAT and length > 2:
            return Drop("content_format_too_long")
        if number in THREE_BYTE_OPTIONS and length > 3:
            return Drop("bad_option_length")
        if number in STRING_OPTIONS:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return Drop("uri_path_not_utf8" if number == URI_PATH else "option_not_utf8")
    return None
