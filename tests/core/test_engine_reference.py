"""ETag determinism against the reference binary: the same key and the same writes give
byte-identical ETags, ledger chain and verify genesis/latest (D1)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from elastik.server.engine import Engine
from elastik.server.model import EngineConfig

from tests.support.servers import new_key, reference, running

pytestmark = pytest.mark.reference

HDRS = (("cache-control", "no-cache"), ("content-disposition", "inline"))


def http(url: str, method: str, path: str, body: bytes | None = None, headers=None):
    req = urllib.request.Request(
        url + path,
        data=body,
        method=method,
        headers={"Authorization": "Bearer a", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def etag(headers) -> str:
    return headers["etag"].strip('"')


async def test_same_writes_same_etags_as_reference(tmp_path: Path):
    key = new_key()
    ref = reference(tmp_path, key=key, data=tmp_path / "ref")
    ref_tags: list[str | None] = []
    with running(ref):
        u = ref.url
        wire_headers = {"Content-Type": "text/csv", "Cache-Control": "no-cache",
                        "Content-Disposition": "inline"}  # fmt: skip
        steps = [
            ("PUT", "/home/r/a.csv", b"x,y\n", wire_headers),
            ("POST", "/home/r/a.csv", b"1,2\n", {}),
            ("POST", "/home/r/a.csv", b"", {}),
            ("PUT", "/home/r/a.csv", b"new", {"Content-Type": "text/plain"}),
            ("PUT", "/home/\u00e9 b", "\u00e9t\u00e9".encode(), {"Content-Type": "a/b"}),
            ("PUT", "/tmp/m", b"mem", {}),
            ("POST", "/tmp/m", b"ory", {}),
            ("DELETE", "/home/r/a.csv", None, {}),
            ("DELETE", "/tmp/m", None, {}),
            ("PUT", "/home/r/a.csv", b"x,y\n", wire_headers),
        ]
        for method, path, body, hdrs in steps:
            status, h, _ = http(u, method, urllib.request.quote(path), body, hdrs)
            assert status in (200, 201, 204), (method, path, status)
            ref_tags.append(etag(h) if status != 204 else None)
        _, h, _ = http(u, "GET", "/var/log/deletes")
        ref_ledger = etag(h)
        _, hv, _ = http(u, "GET", "/proc/audit/var/log/deletes/verify")
        ref_verify = (hv["x-audit-events"], hv["x-audit-genesis"], hv["x-audit-latest"])

    ours: list[str | None] = []
    with Engine.open(EngineConfig(data=tmp_path / "ours", key=key.encode())) as e:
        ops = [
            e.put("home/r/a.csv", b"x,y\n", "text/csv", HDRS),
            e.append("home/r/a.csv", b"1,2\n"),
            e.append("home/r/a.csv", b""),
            e.put("home/r/a.csv", b"new", "text/plain", ()),
            e.put("home/\u00e9 b", "\u00e9t\u00e9".encode(), "a/b", ()),
            e.put("tmp/m", b"mem", "application/octet-stream", ()),
            e.append("tmp/m", b"ory"),
            e.delete("home/r/a.csv"),
            e.delete("tmp/m"),
            e.put("home/r/a.csv", b"x,y\n", "text/csv", HDRS),
        ]
        for op in ops:
            ours.append((await op).etag)
        led = e.read("var/log/deletes")
        assert led is not None
        v = await e.verify("var/log/deletes")
        our_verify = (str(v.events), "hmac-" + v.genesis, "hmac-" + v.latest)

    assert ours == ref_tags
    assert ours[0] == ours[-1]  # re-PUT after DELETE restarts the chain
    assert led.etag == ref_ledger
    assert our_verify == ref_verify
