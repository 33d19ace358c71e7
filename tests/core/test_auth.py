"""§6 credential extraction and tiers (cases measured on the reference)."""

from __future__ import annotations

import base64

import pytest
from elastik.server import auth
from elastik.server.errors import Unauthorized

TOKENS = auth.Tokens(read=b"r", write=b"w", approve=b"a")


def basic(s: str) -> bytes:
    return b"Basic " + base64.b64encode(s.encode())


@pytest.mark.parametrize(
    ("value", "token"),
    [
        (b"Bearer w", b"w"),
        (b"bearer w", b"w"),
        (b"BEARER\tw", b"w"),
        (b"Bearer \t w", b"w"),
        (b"Bearer  w  ", b"w"),
        (basic("x:w"), b"w"),
        (basic(":w"), b"w"),
        (basic("anyone:r"), b"r"),
        (basic("a:b:w"), b"b:w"),
        (b"basic " + base64.b64encode(b"x:w"), b"w"),
        (b"Basic  " + base64.b64encode(b"x:w"), b"w"),
    ],
)
def test_credential_extraction(value: bytes, token: bytes) -> None:
    assert auth.credential(value) == token


@pytest.mark.parametrize(
    "value",
    [None, b"", b"Bearerw", b"Bearer", b"Bearer ", b"Token w", b"w", basic("w"), b"Basic !!!"],
)
def test_credential_rejects(value: bytes | None) -> None:
    assert auth.credential(value) is None


def test_only_first_authorization_header_counts() -> None:
    headers = [(b"authorization", b"Bearer nope"), (b"authorization", b"Bearer w")]
    assert auth.first_authorization(headers) == b"Bearer nope"
    assert auth.first_authorization([(b"x", b"y")]) is None


@pytest.mark.parametrize(
    ("cred", "tier"),
    [(b"a", auth.APPROVE), (b"w", auth.WRITE), (b"r", auth.READ), (b"W", auth.NONE), (None, 0)],
)
def test_tiers(cred: bytes | None, tier: int) -> None:
    assert TOKENS.tier(cred) == tier


def test_approve_satisfies_every_tier_write_satisfies_read() -> None:
    auth.require(TOKENS, b"a", auth.APPROVE, auth.BODY_DELETE)
    auth.require(TOKENS, b"a", auth.WRITE, auth.BODY_WRITE)
    auth.require_read(TOKENS, b"a")
    auth.require_read(TOKENS, b"w")
    auth.require_read(TOKENS, b"r")
    with pytest.raises(Unauthorized):
        auth.require(TOKENS, b"r", auth.WRITE, auth.BODY_WRITE)
    with pytest.raises(Unauthorized):
        auth.require(TOKENS, b"w", auth.APPROVE, auth.BODY_DELETE)


def test_reads_public_without_read_token_even_with_wrong_credential() -> None:
    public = auth.Tokens(write=b"w")
    auth.require_read(public, b"garbage")
    auth.require_read(public, None)


def test_unauthorized_carries_body_and_www_authenticate() -> None:
    with pytest.raises(Unauthorized) as info:
        auth.require_read(TOKENS, b"nope", auth.BODY_LISTEN)
    assert info.value.status == 401
    assert info.value.body == b"auth required: listen requires read token\n"
    assert (b"www-authenticate", b'Bearer realm="elastik"') in info.value.headers


def test_disabled_tier_refuses_everyone() -> None:
    no_write = auth.Tokens(approve=b"a")
    with pytest.raises(Unauthorized):
        auth.require(no_write, b"", auth.WRITE, auth.BODY_WRITE)
    assert no_write.tier(b"") == auth.NONE
