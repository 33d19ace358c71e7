"""Credentials and tiers (PROTOCOL §6). Pure: header bytes in, a tier or a 401 out.

Only the first ``Authorization`` header counts. ``Bearer <token>`` (scheme
case-insensitive, any run of spaces/tabs after it) and ``Basic base64(user:password)``
(the password is the token, the user is ignored) are accepted. Tokens are compared in
constant time.
"""

from __future__ import annotations

import binascii
import hmac
from dataclasses import dataclass

from .errors import Unauthorized

NONE, READ, WRITE, APPROVE = 0, 1, 2, 3

BODY_READ = b"auth required: read requires read token\n"
BODY_LISTEN = b"auth required: listen requires read token\n"
BODY_WRITE = b"auth required: write requires token; system worlds need approve token\n"
BODY_DELETE = b"auth required: delete requires token; system worlds need approve token\n"
BODY_LEDGER = b"auth required: delete ledger is append-only\n"

_WS = b" \t"


def credential(value: bytes | None) -> bytes | None:
    """The token carried by one ``Authorization`` header value, or None."""
    if not value:
        return None
    value = value.strip(_WS)
    sp, tab = value.find(b" "), value.find(b"\t")
    cut = min(i for i in (sp, tab, len(value)) if i >= 0)
    scheme = value[:cut].lower()
    rest = value[cut:].lstrip(_WS)
    if cut == len(value):
        return None
    if not rest:
        return None
    if scheme == b"bearer":
        return rest
    if scheme == b"basic":
        try:
            decoded = binascii.a2b_base64(rest, strict_mode=True)
        except (binascii.Error, ValueError):
            return None
        _user, colon, password = decoded.partition(b":")
        if not colon:
            return None
        return password
    return None


def first_authorization(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            return value
    return None


@dataclass(frozen=True, slots=True)
class Tokens:
    """Configured tokens as bytes; None means the tier is disabled (unset or empty)."""

    read: bytes | None = None
    write: bytes | None = None
    approve: bytes | None = None

    def tier(self, cred: bytes | None) -> int:
        """The highest tier ``cred`` satisfies (NONE..APPROVE)."""
        if cred is None:
            return NONE
        # Compare against every configured token so timing does not reveal which one matched.
        approve = self.approve is not None and hmac.compare_digest(cred, self.approve)
        write = self.write is not None and hmac.compare_digest(cred, self.write)
        read = self.read is not None and hmac.compare_digest(cred, self.read)
        if approve:
            return APPROVE
        if write:
            return WRITE
        if read:
            return READ
        return NONE

    @property
    def reads_public(self) -> bool:
        return self.read is None


def require_read(tokens: Tokens, cred: bytes | None, body: bytes = BODY_READ) -> None:
    """Reads are public without a read token; otherwise any token of any tier will do."""
    if tokens.read is None:
        return
    if tokens.tier(cred) < READ:
        raise Unauthorized(body)


def require(tokens: Tokens, cred: bytes | None, tier: int, body: bytes) -> None:
    if tokens.tier(cred) < tier:
        raise Unauthorized(body)
