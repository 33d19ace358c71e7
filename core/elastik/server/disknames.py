"""The reference's on-disk directory name of a world (§14.1), both ways. Pure.

Encoded as ``%XX`` (uppercase hex): every byte >= 0x80, control bytes, and
space ``"`` ``%`` ``*`` ``.`` ``/`` ``:`` ``<`` ``>`` ``?`` ``\\`` ``|``. Other bytes stay literal.
"""

from __future__ import annotations

_SPECIAL = frozenset(b' "%*./:<>?\\|')
_HEX = b"0123456789ABCDEFabcdef"


def _needs_escape(b: int) -> bool:
    return b >= 0x80 or b < 0x20 or b == 0x7F or b in _SPECIAL


_TABLE = [f"%{b:02X}" if _needs_escape(b) else chr(b) for b in range(256)]


def encode(world: str) -> str:
    """``home/note.txt`` -> ``home%2Fnote%2Etxt``."""
    return "".join([_TABLE[b] for b in world.encode("utf-8")])


def decode(name: str) -> str:
    """``home%2Fnote%2Etxt`` -> ``home/note.txt``.

    Raises ValueError for a ``%`` not followed by two hex digits, a byte that the encoder
    would have escaped appearing literally, or a result that is not UTF-8.
    """
    raw = name.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x25:  # '%'
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise ValueError(f"bad escape at offset {i}: {name[i : i + 3]!r}")
            out.append(int(pair, 16))
            i += 3
            continue
        if _needs_escape(b):
            raise ValueError(f"byte 0x{b:02X} at offset {i} must be percent-encoded")
        out.append(b)
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"decoded name is not valid UTF-8: {exc.reason}") from None
