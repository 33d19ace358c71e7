"""Routing (§4), common headers (§5), check order (§6.3), /proc (§15), D7, error rendering."""

from __future__ import annotations

import pytest
from elastik import __version__
from elastik.server.errors import StorageFailure
from elastik.server.model import VerifyResult

from .app_support import A, W, make_app, make_fake_app
from .asgi_client import call

TEXT = "text/plain; charset=utf-8"
WORLD_ALLOW = "GET, HEAD, PUT, POST, DELETE, OPTIONS"


async def test_common_headers_and_request_id_counter() -> None:
    app, _ = make_app()
    first = await call(app, "GET", "/proc/version")
    second = await call(app, "GET", "/home/missing")
    assert first.header("x-request-id") == "1"
    assert second.header("x-request-id") == "2"
    for res in (first, second):
        assert res.header("vary") == "Authorization"
        assert res.header("x-content-type-options") == "nosniff"
        assert res.header("x-elapsed-us") is not None and res.header("x-elapsed-us").isdigit()
        assert res.header(
            "date",
        ).endswith(" GMT")
        assert len(res.all("date")) == 1
        assert res.header("server") is None


async def test_d7_version_and_root_bodies() -> None:
    app, _ = make_app(read_token="r")
    version = await call(app, "GET", "/proc/version")
    assert version.body == f"elastik-core {__version__} (python)\n".encode()
    assert version.body.startswith(b"elastik-core ")
    root = await call(app, "GET", "/")
    assert root.body == f"elastik-core {__version__} (python)\ntry: curl /proc/worlds\n".encode()
    assert root.status == 200 and root.header("content-type") == TEXT  # public despite read token


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/", "GET, HEAD, OPTIONS"),
        ("/proc/version", "GET, HEAD, OPTIONS"),
        ("/proc/worlds", "GET, HEAD, OPTIONS"),
        ("/proc/audit/home/x/verify", "GET, HEAD, OPTIONS"),
        ("/proc", "GET, HEAD, OPTIONS"),
        ("/proc/unknown", "GET, HEAD, OPTIONS"),
        ("/listen/*", "GET, OPTIONS"),
        ("/home/x", WORLD_ALLOW),
        ("/home", WORLD_ALLOW),
        ("/listen", WORLD_ALLOW),
    ],
)
async def test_options_204_and_405_carry_allow(path: str, allow: str) -> None:
    app, _ = make_app(read_token="r")
    opt = await call(app, "OPTIONS", path)
    assert opt.status == 204 and opt.body == b""
    assert opt.header("allow") == allow and opt.header("content-type") == TEXT
    assert opt.header("content-length") is None
    bad = await call(app, "PATCH", path)
    assert bad.status == 405
    assert bad.header("allow") == allow
    assert bad.body == b"method not allowed\n"


async def test_listen_head_and_proc_put_are_405() -> None:
    app, _ = make_app()
    assert (await call(app, "HEAD", "/listen/*")).status == 405
    assert (await call(app, "PUT", "/proc/worlds", W)).status == 405
    assert (await call(app, "DELETE", "/proc", A)).status == 405


async def test_options_star_is_bare_404() -> None:
    app, _ = make_app()
    res = await call(app, "OPTIONS", b"*")
    assert res.status == 404 and res.body == b""
    assert res.header("content-length") == "0" and res.header("content-type") is None


@pytest.mark.parametrize("path", ["/proc", "/proc/unknown", "/proc/worlds/", "/proc/Version"])
async def test_other_proc_paths_are_not_found(path: str) -> None:
    app, _ = make_app()
    res = await call(app, "GET", path)
    assert (res.status, res.body) == (404, b"world not found\n")


async def test_proc_slash_is_reserved_root() -> None:
    app, _ = make_app()
    res = await call(app, "GET", "/proc/")
    assert res.status == 400
    assert res.body == b"bad request: world path is a reserved namespace root\n"


async def test_path_validation_precedes_auth() -> None:
    app, _ = make_app(read_token="r")
    assert (await call(app, "GET", "/home")).status == 400
    assert (await call(app, "PUT", "/home//x")).status == 400
    assert (await call(app, "GET", "/home/x")).status == 401


async def test_proc_listing_endpoints() -> None:
    app, _ = make_fake_app()  # asserts the exact rendering of the fake's pool stats
    await call(app, "PUT", "/home/b", W, b"12345")
    await call(app, "PUT", "/home/a", W, b"1")
    await call(app, "PUT", "/tmp/z", W, b"22")
    worlds = await call(app, "GET", "/proc/worlds?x=1")
    assert worlds.body == b"home/a\nhome/b\ntmp/z\n"
    du = await call(app, "GET", "/proc/du")
    assert du.body == b"home/a\t1\nhome/b\t5\ntmp/z\t2\n"
    df = await call(app, "GET", "/proc/df")
    assert df.body == (
        b"storage\t6\tunlimited\tunlimited\nmemory\t2\t268435456\t268435433\n".replace(
            b"268435433", b"%d" % (268435456 - 2)
        )
        + b"worlds\t3\tunlimited\tunlimited\n"
    )
    pool = await call(app, "GET", "/proc/pool")
    assert pool.body == b"read_cache_entries 3 snapshot\n"
    head = await call(app, "HEAD", "/proc/worlds")
    assert head.header("content-length") == str(len(worlds.body))


async def test_empty_store_lists_nothing() -> None:
    app, _ = make_app()
    res = await call(app, "GET", "/proc/worlds")
    assert res.body == b"" and res.header("content-length") == "0"


async def test_proc_requires_read_token_when_set() -> None:
    app, _ = make_app(read_token="r")
    res = await call(app, "GET", "/proc/worlds")
    assert res.status == 401
    assert res.body == b"auth required: read requires read token\n"
    assert res.header("www-authenticate") == 'Bearer realm="elastik"'
    assert (await call(app, "GET", "/proc/worlds", [("Authorization", "Bearer w")])).status == 200


async def test_audit_outcomes_render_headers() -> None:
    app, engine = make_fake_app()
    await call(app, "PUT", "/home/x", W, b"a")
    await call(app, "PUT", "/tmp/x", W, b"a")
    ok = await call(app, "GET", "/proc/audit/home/x/verify")
    assert ok.status == 200 and ok.body == b"" and ok.header("content-length") == "0"
    assert ok.header("x-audit-valid") == "true" and ok.header("x-audit-events") == "1"
    assert ok.header("x-audit-genesis").startswith("hmac-")
    mem = await call(app, "HEAD", "/proc/audit/tmp/x/verify")
    assert mem.status == 204 and mem.header("x-audit-valid") == "n/a"
    missing = await call(app, "GET", "/proc/audit/home/nope/verify")
    assert (missing.status, missing.body) == (404, b"world not found\n")
    engine.verify_result = VerifyResult(
        "broken", break_at="state", expected="body-sha256-aa", actual="body-sha256-bb"
    )
    broken = await call(app, "GET", "/proc/audit/home/x/verify")
    assert broken.status == 409 and broken.body == b""
    assert broken.header("x-audit-valid") == "false"
    assert broken.header("x-audit-break-at") == "state"
    assert broken.header("x-audit-expected") == "body-sha256-aa"
    assert broken.header("x-audit-actual") == "body-sha256-bb"


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/proc/audit/home/verify", 400, b"bad request: invalid audit verify world path\n"),
        ("/proc/audit/%2F/verify", 400, b"bad request: audit verify requires a world path\n"),
        ("/proc/audit/home/x", 404, b"world not found\n"),
        ("/proc/audit/verify", 404, b"world not found\n"),
        ("/proc/audit", 404, b"world not found\n"),
        ("/proc/audit/", 404, b"world not found\n"),
    ],
)
async def test_audit_path_errors(path: str, status: int, body: bytes) -> None:
    app, _ = make_app()
    res = await call(app, "GET", path)
    assert (res.status, res.body) == (status, body)


async def test_storage_failure_renders_500() -> None:
    app, engine = make_fake_app()
    engine.fail_next = StorageFailure()
    res = await call(app, "GET", "/home/x")
    assert (res.status, res.body) == (500, b"internal error: storage failure\n")


async def test_unexpected_exception_is_500_and_logged_without_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, engine = make_fake_app()
    engine.fail_next = RuntimeError("disk on fire")
    res = await call(app, "PUT", "/home/x", [("Authorization", "Bearer w")], b"x")
    assert (res.status, res.body) == (500, b"internal error: storage failure\n")
    assert res.header("content-type") == TEXT and res.header("x-request-id") == "1"
    assert "disk on fire" in caplog.text
    assert "Bearer w" not in caplog.text


async def test_protocol_level_rejection_has_no_elastik_headers() -> None:
    app, _ = make_app()
    from .asgi_client import scope

    sent: list[dict] = []

    async def send(m: dict) -> None:
        sent.append(m)

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    s = scope("GET", b"/")
    s["extensions"] = {"elastik.bare": {"status": 414}}
    await app(s, receive, send)
    names = [n for n, _ in sent[0]["headers"]]
    assert sent[0]["status"] == 414
    assert b"x-request-id" not in names and b"content-type" not in names
    assert app.request_id == 0


async def test_stored_header_with_line_break_is_refused_not_injected() -> None:
    from elastik.server.model import World

    app, engine = make_fake_app()
    engine.worlds["home/bad"] = World(
        "home/bad", b"x", "text/plain\r\nset-cookie: a=b", (), "hmac-" + "0" * 64, True
    )
    res = await call(app, "GET", "/home/bad")
    assert (res.status, res.body) == (500, b"internal error: storage failure\n")
    assert res.header("set-cookie") is None


async def test_audit_details_are_sanitized() -> None:
    app, engine = make_fake_app()
    await call(app, "PUT", "/home/x", W, b"a")
    engine.verify_result = VerifyResult(
        "broken", break_at="state", expected="content-type-a\r\nx: y", actual="ok"
    )
    res = await call(app, "GET", "/proc/audit/home/x/verify")
    assert res.header("x-audit-expected") == "content-type-a??x: y"


async def test_trace_pipeline_lines(capsys: pytest.CaptureFixture[str]) -> None:
    app, _ = make_app(trace_pipeline=True)
    await call(app, "GET", "/home/x")
    await call(app, "PUT", "/home/x", [("Content-Length", "1")], b"x")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("[req-1   +") and lines[0].endswith("] Received       GET home/x 0B")
    assert "] Done           status=404 Not Found total=" in lines[1]
    assert lines[2].endswith("Received       PUT home/x 1B")
    assert "status=401 Unauthorized" in lines[3]


async def test_no_trace_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    app, _ = make_app()
    await call(app, "GET", "/home/x")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("path", "param"),
    [("/listen/%FF", "pattern"), ("/proc/audit/%C3/verify", "audit_path"), ("/home/%FF", "world")],
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"])
async def test_invalid_utf8_is_400_before_method_routing(
    method: str, path: str, param: str
) -> None:
    app, engine = make_fake_app()
    res = await call(app, method, path, W, b"x")
    assert res.status == 400 and res.header("allow") is None
    if method != "HEAD":
        assert res.body == b"Invalid URL: Invalid UTF-8 in `" + param.encode() + b"`"
    assert engine.calls == []


async def test_uncaptured_proc_paths_are_not_decoded() -> None:
    app, _ = make_app()
    assert (await call(app, "GET", "/proc/x%FF")).status == 404
    assert (await call(app, "OPTIONS", "/home")).status == 204  # other checks stay after routing
