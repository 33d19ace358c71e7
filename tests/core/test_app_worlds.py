"""GET/HEAD/PUT/POST/DELETE on worlds (§7-§12), D2, D4 and Idempotency-Key, in-process."""

from __future__ import annotations

import pytest
from elastik.server.errors import InsufficientStorage, PayloadTooLarge

from .app_support import A, W, make_app, make_fake_app
from .asgi_client import call

TEXT = "text/plain; charset=utf-8"


async def test_put_creates_201_with_location_then_replaces_200() -> None:
    app, _ = make_app()
    created = await call(app, "PUT", "/home/a b", W, b"hello")
    assert created.status == 201 and created.body == b""
    assert created.names[:4] == ["content-type", "etag", "location", "content-length"]
    assert created.header("content-type") == TEXT
    assert created.header("location") == "/home/a%20b"
    assert created.header("content-length") == "0"
    etag = created.header("etag")
    assert etag.startswith('"hmac-') and etag.endswith('"')
    replaced = await call(app, "PUT", "/home/a%20b", W, b"again")
    assert replaced.status == 200 and replaced.header("location") is None
    assert replaced.header("etag") != etag


async def test_get_headers_in_reference_order() -> None:
    app, _ = make_app(persist_headers="x-meta-*")
    await call(
        app,
        "PUT",
        "/home/\u00e9".encode(),
        [*W, ("Content-Type", "text/x"), ("X-Meta-B", "2"), ("Cache-Control", "no-cache")],
        b"body",
    )
    res = await call(app, "GET", "/home/%C3%A9")
    assert res.status == 200 and res.body == b"body"
    assert res.names == [
        "content-type",
        "accept-ranges",
        "etag",
        "link",
        "link",
        "cache-control",
        "x-meta-b",
        "content-length",
        "x-request-id",
        "x-elapsed-us",
        "vary",
        "x-content-type-options",
        "date",
    ]
    assert res.header("content-type") == "text/x"
    assert res.all("link") == [
        '</listen/home/%C3%A9>; rel="monitor"',
        '</proc/worlds>; rel="collection"',
    ]
    head = await call(app, "HEAD", "/home/%C3%A9")
    assert head.status == 200 and head.header("content-length") == "4"


async def test_put_replaces_content_type_and_whole_header_set() -> None:
    app, _ = make_app()
    await call(app, "PUT", "/home/x", [*W, ("Cache-Control", "a"), ("Content-Type", "t/a")], b"1")
    await call(app, "PUT", "/home/x", W, b"2")
    res = await call(app, "GET", "/home/x")
    assert res.header("cache-control") is None
    assert res.header("content-type") == "application/octet-stream"


async def test_missing_world_404_and_head_keeps_length() -> None:
    app, _ = make_app()
    res = await call(app, "GET", "/home/nope")
    assert (res.status, res.body) == (404, b"world not found\n")
    assert res.header("content-type") == TEXT and res.header("content-length") == "16"


async def test_post_appends_and_keeps_metadata_404_when_missing() -> None:
    app, _ = make_app()
    assert (await call(app, "POST", "/home/x", W, b"a")).status == 404
    await call(app, "PUT", "/home/x", [*W, ("Content-Type", "t/x")], b"ab")
    res = await call(app, "POST", "/home/x", [*W, ("Content-Type", "other")], b"cd")
    assert res.status == 200 and res.header("etag") and res.header("location") is None
    got = await call(app, "GET", "/home/x")
    assert got.body == b"abcd" and got.header("content-type") == "t/x"


async def test_delete_204_without_length_or_etag() -> None:
    app, _engine = make_app()
    await call(app, "PUT", "/tmp/x", W, b"a")
    assert (await call(app, "DELETE", "/tmp/x", W)).status == 401  # write token is not enough
    res = await call(app, "DELETE", "/tmp/x", A)
    assert res.status == 204 and res.body == b""
    assert res.header("content-type") == TEXT
    assert res.header("content-length") is None and res.header("etag") is None
    missing = await call(app, "DELETE", "/tmp/x", [*A, ("If-None-Match", "*")])
    assert (missing.status, missing.body) == (404, b"world not found\n")


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        (
            "PUT",
            "/home/x",
            [],
            b"auth required: write requires token; system worlds need approve token\n",
        ),
        (
            "PUT",
            "/etc/x",
            W,
            b"auth required: write requires token; system worlds need approve token\n",
        ),
        (
            "POST",
            "/var/log/x",
            W,
            b"auth required: write requires token; system worlds need approve token\n",
        ),
        (
            "DELETE",
            "/home/x",
            W,
            b"auth required: delete requires token; system worlds need approve token\n",
        ),
        (
            "GET",
            "/home/x",
            [("Authorization", "Bearer nope")],
            b"auth required: read requires read token\n",
        ),
        ("HEAD", "/home/x", [], b"auth required: read requires read token\n"),
    ],
)
async def test_401_bodies(method: str, path: str, headers: list, body: bytes) -> None:
    app, _ = make_app(read_token="r")
    res = await call(app, method, path, headers)
    assert res.status == 401
    if method != "HEAD":
        assert res.body == body
    assert res.header("www-authenticate") == 'Bearer realm="elastik"'


async def test_approve_token_writes_system_namespaces() -> None:
    app, _ = make_app()
    assert (await call(app, "PUT", "/etc/x", A, b"1")).status == 201
    assert (await call(app, "PUT", "/var/x", W, b"1")).status == 201


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
@pytest.mark.parametrize("headers", [A, W, []])
async def test_d4_delete_ledger_is_append_only(method: str, headers: list) -> None:
    app, engine = make_fake_app()
    res = await call(app, method, "/var/log/deletes", headers, b"x")
    assert res.status == 401
    if headers == A:
        assert res.body == b"auth required: delete ledger is append-only\n"
    else:  # the tier check answers first; var/log/ needs the approve token anyway
        assert res.body.startswith(
            b"auth required: "
            + method.lower().encode().replace(b"put", b"write").replace(b"post", b"write")
        )
    assert res.header("www-authenticate") == 'Bearer realm="elastik"'
    assert engine.calls == []


async def test_body_limit_413_before_auth_even_without_token() -> None:
    app, engine = make_fake_app(max_world_bytes=4)
    declared = await call(app, "PUT", "/home/x", [("Content-Length", "5")], b"12345")
    assert declared.status == 413
    assert declared.body == b"Failed to buffer the request body: length limit exceeded"
    chunked = await call(app, "PUT", "/home/x", [], [b"12", b"34", b"5", b"6"])
    assert chunked.status == 413
    assert chunked.extra["consumed"] == 3  # stopped reading at the limit
    assert (await call(app, "PUT", "/home/x", [], b"1234")).status == 401
    assert (await call(app, "PUT", "/home/x", W, b"1234")).status == 201
    assert engine.calls == [("put", "home/x")]


async def test_engine_errors_render_with_their_headers() -> None:
    app, engine = make_fake_app()
    engine.fail_next = InsufficientStorage(10, 12, 3)
    res = await call(app, "PUT", "/home/x", W, b"12345")
    assert res.status == 507
    assert (
        res.body == b"storage quota exceeded: current 10 bytes, quota 12 bytes, need 3 more bytes\n"
    )
    assert res.header("x-storage-needed") == "3" and res.header("content-type") == TEXT
    engine.fail_next = PayloadTooLarge("payload too large: max bytes 7\n")
    res = await call(app, "PUT", "/tmp/x", W, b"12345")
    assert (res.status, res.body) == (413, b"payload too large: max bytes 7\n")


@pytest.mark.parametrize("prefix", ["/home/", "/tmp/", "/etc/"])
async def test_d2_long_world_path_is_414_in_every_namespace(prefix: str) -> None:
    app, engine = make_fake_app()
    name = prefix + "a" * 1100
    for method, headers in (("GET", []), ("PUT", A), ("DELETE", A), ("HEAD", [])):
        res = await call(app, method, name, headers, b"")
        assert res.status == 414
        if method != "HEAD":
            assert res.body == b"uri too long: world path exceeds 1024 bytes\n"
    ok = prefix.strip("/") + "/" + "a" * (1024 - len(prefix) + 1)
    assert len(ok) == 1024
    assert (await call(app, "PUT", "/" + ok, A, b"x")).status == 201
    assert engine.calls == [("put", ok)]


async def test_conditional_writes() -> None:
    app, _ = make_app()
    miss = await call(app, "PUT", "/home/x", [*W, ("If-Match", "*")], b"a")
    assert (miss.status, miss.body) == (
        412,
        b"precondition failed: If-Match requires an existing world\n",
    )
    created = await call(app, "PUT", "/home/x", [*W, ("If-None-Match", "*")], b"a")
    etag = created.header("etag")
    again = await call(app, "PUT", "/home/x", [*W, ("If-None-Match", "*")], b"b")
    assert again.body == b"precondition failed: If-None-Match matched current ETag\n"
    wrong = await call(app, "POST", "/home/x", [*W, ("If-Match", '"nope"')], b"b")
    assert wrong.body == b"precondition failed: If-Match did not match current ETag\n"
    ok = await call(app, "POST", "/home/x", [*W, ("If-Match", etag)], b"b")
    assert ok.status == 200
    gone = await call(app, "DELETE", "/home/y", [*A, ("If-Match", "*")])
    assert gone.status == 412


async def test_get_304_and_head_304() -> None:
    app, _ = make_app()
    etag = (await call(app, "PUT", "/home/x", [*W, ("Cache-Control", "c")], b"abc")).header("etag")
    res = await call(app, "GET", "/home/x", [("If-None-Match", "W/" + etag)])
    assert res.status == 304 and res.body == b""
    assert res.header("content-length") is None
    assert res.header("etag") == etag and res.header("cache-control") == "c"
    assert len(res.all("link")) == 2 and res.header("accept-ranges") == "bytes"
    head = await call(app, "HEAD", "/home/x", [("If-None-Match", etag)])
    assert head.status == 304 and head.header("content-length") == "0"
    # If-None-Match wins over an unsatisfiable Range; If-Match is ignored on GET
    both = await call(app, "GET", "/home/x", [("If-None-Match", etag), ("Range", "bytes=99-")])
    assert both.status == 304
    ignored = await call(app, "GET", "/home/x", [("If-Match", '"nope"')])
    assert ignored.status == 200
    star_missing = await call(app, "GET", "/home/nope", [("If-None-Match", "*")])
    assert star_missing.status == 404


async def test_ranges_206_416_and_if_range() -> None:
    app, _ = make_app()
    etag = (await call(app, "PUT", "/home/r", W, b"0123456789")).header("etag")
    part = await call(app, "GET", "/home/r", [("Range", "bytes=2-4")])
    assert part.status == 206 and part.body == b"234"
    assert part.header("content-range") == "bytes 2-4/10"
    assert part.header("content-length") == "3" and part.header("etag") == etag
    bad = await call(app, "GET", "/home/r", [("Range", "bytes=10-")])
    assert bad.status == 416 and bad.body == b"range not satisfiable\n"
    assert bad.header("content-range") == "bytes */10" and bad.header("etag") is None
    assert (
        bad.header("accept-ranges") == "bytes"
        and bad.header("content-type") == "text/plain; charset=utf-8"
    )
    multi = await call(app, "GET", "/home/r", [("Range", "bytes=0-0,5-6")])
    assert multi.status == 200 and multi.body == b"0123456789"
    applies = await call(app, "GET", "/home/r", [("Range", "bytes=-2"), ("If-Range", etag)])
    assert applies.status == 206 and applies.body == b"89"
    stale = await call(app, "GET", "/home/r", [("Range", "bytes=-2"), ("If-Range", '"old"')])
    assert stale.status == 200
    head = await call(app, "HEAD", "/home/r", [("Range", "bytes=0-0")])
    assert head.status == 206 and head.header("content-length") == "1"


async def test_idempotency_key_replays_original_answer() -> None:
    app, _engine = make_app()
    headers = [*W, ("Idempotency-Key", "k-1")]
    first = await call(app, "PUT", "/home/x", headers, b"v1")
    again = await call(app, "PUT", "/home/x", headers, b"v1")
    assert first.status == again.status == 201
    assert again.header("etag") == first.header("etag")
    assert again.header("idempotency-replayed") == "true"
    assert first.header("idempotency-replayed") is None
    assert again.header("location") == "/home/x"
    assert (await call(app, "GET", "/home/x")).body == b"v1"


@pytest.mark.parametrize(
    ("method", "body", "extra"),
    [
        ("PUT", b"v2", []),
        ("PUT", b"v1", [("Content-Type", "text/other")]),
        ("PUT", b"v1", [("Cache-Control", "x")]),
        ("POST", b"v1", []),
    ],
)
async def test_idempotency_key_reuse_with_different_request_is_422(
    method: str, body: bytes, extra: list
) -> None:
    app, _ = make_app()
    await call(app, "PUT", "/home/x", [*W, ("Idempotency-Key", "k")], b"v1")
    res = await call(app, method, "/home/x", [*W, ("Idempotency-Key", "k"), *extra], body)
    assert res.status == 422
    assert res.body == b"unprocessable: idempotency key reused with a different request\n"


@pytest.mark.parametrize("key", ["", "x" * 256])
async def test_invalid_idempotency_key_is_400(key: str) -> None:
    app, engine = make_fake_app()
    res = await call(app, "PUT", "/home/x", [*W, ("Idempotency-Key", key)], b"v")
    assert (res.status, res.body) == (400, b"bad request: invalid idempotency key\n")
    assert engine.calls == []


async def test_idempotency_key_of_255_bytes_is_fine() -> None:
    app, _ = make_app()
    res = await call(app, "DELETE", "/home/x", [*A, ("Idempotency-Key", "x" * 255)])
    assert res.status == 404


def test_fingerprint_separates_fields() -> None:
    from elastik.server.app import fingerprint

    assert fingerprint("PUT", "home/ab", b"c") != fingerprint("PUT", "home/a", b"bc")
    assert fingerprint("PUT", "home/a", b"", "t", (("a", "b"),)) != fingerprint(
        "PUT", "home/a", b"", "t", (("ab", ""),)
    )
    assert fingerprint("POST", "home/a", b"x") != fingerprint("PUT", "home/a", b"x")


async def test_memory_world_same_body_new_metadata_is_served_fresh() -> None:
    app, _ = make_app()
    first = await call(
        app, "PUT", "/tmp/m", [*W, ("Content-Type", "text/a"), ("Expires", "1")], b"same"
    )
    assert (await call(app, "GET", "/tmp/m")).header("content-type") == "text/a"
    again = await call(app, "PUT", "/tmp/m", [*W, ("Content-Type", "text/b")], b"same")
    assert again.header("etag") == first.header("etag")  # memory ETags hash the body only
    res = await call(app, "GET", "/tmp/m")
    assert res.header("content-type") == "text/b" and res.header("expires") is None
