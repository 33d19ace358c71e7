"""FakeElastik: the same API over an in-memory store (no core, no sockets)."""

from __future__ import annotations

import threading

import elastik
import pytest
from elastik import FakeElastik
from elastik.testing import HeaderAllowlist


def test_readme_example() -> None:
    e = FakeElastik()
    e.put("note", "hello")
    assert e.get_text("note") == "hello"


def test_bytes_contract_and_statuses() -> None:
    e = FakeElastik()
    assert e.put("x", b"\x00\x01")["status"] == 201
    assert e.put("x", b"\x00\x02")["status"] == 200
    assert e.get("/home/x") == b"\x00\x02"
    with pytest.raises(elastik.NotFound):
        e.get("missing")
    etag = e.checksum("x")
    assert e.get("x", if_none_match=etag) is None
    assert e.post("x", b"\x03")["status"] == 200 and e.get("x") == b"\x00\x02\x03"
    with pytest.raises(elastik.NotFound):
        e.post("nope", "x")
    assert e.delete("x") is True and e.delete("x") is False


def test_conditionals_ranges_and_open() -> None:
    e = FakeElastik()
    etag = e.put("c", "0123456789")["etag"]
    with pytest.raises(elastik.PreconditionFailed):
        e.put("c", "x", create_only=True)
    with pytest.raises(elastik.PreconditionFailed):
        e.put("c", "x", if_match='"stale"')
    e.put("c", "0123456789", if_match=etag)
    assert e.get("c", range=(2, 4)) == b"234"
    assert e.preview("c", max_bytes=3) == "012"
    with e.open("c") as f:
        f.seek(-2, 2)
        assert f.read() == b"89"


def test_persist_policy_matches_the_core() -> None:
    default = FakeElastik(persist_allow=HeaderAllowlist.empty())
    default.put(
        "n",
        "v",
        project="demo",
        cache_control="max-age=1",
        headers={"X-Custom": "1", "Access-Control-Allow-Origin": "*", "Cookie": "c"},
    )
    meta = default.head("n")
    assert meta["cache-control"] == "max-age=1"
    assert meta["access-control-allow-origin"] == "*"  # type: ignore[typeddict-item]
    assert "x-meta-project" not in meta and "x-custom" not in meta and "cookie" not in meta
    allowed = FakeElastik(persist_allow="x-meta-*", persist_deny="cache-control")
    allowed.put("n", "v", project="demo", cache_control="max-age=1")
    meta = allowed.head("n")
    assert meta["x-meta-project"] == "demo"  # type: ignore[typeddict-item]
    assert "cache-control" not in meta


def test_env_policy_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELASTIK_PERSIST_HEADERS", "x-meta-*")
    e = FakeElastik()
    e.put("n", "v", who="me")
    assert e.head("n")["x-meta-who"] == "me"  # type: ignore[typeddict-item]


def test_ergonomics_and_virtual_dirs() -> None:
    e = FakeElastik()
    e["a/b/c"] = "1"
    e.update({"a/d": "2", "tmp/t": "3"})
    assert list(e) == ["home/a/b/c", "home/a/d", "tmp/t"] and len(e) == 3
    assert e.ls("a") == ["home/a/b/", "home/a/d"]
    assert e.du("a") == {"home/a/b/c": 1, "home/a/d": 1}
    assert e.mv("a", "z", recursive=True) == 2 and e.ls("z", depth=-1) == ["home/z/b/c", "home/z/d"]
    assert [r.name for r in (e / "z").rglob("*")] == ["c", "d"]
    assert e.is_audited("z/d") is False and e.verify("z/d") is False
    with pytest.raises(elastik.NotFound):
        e.verify("missing")
    assert e.rm("z", recursive=True) == 2
    with pytest.raises(ValueError):
        e.get("/proc/unknown")
    assert e.request("PATCH", "x").status == 405
    assert "FakeElastik 1 paths" in repr(e)


def test_listen_handlers_run_against_the_fake() -> None:
    e = FakeElastik(persist_allow="x-meta-*")
    got: list[tuple[bytes, str, dict[str, str]]] = []

    @elastik.listen("inbox/*")
    def on_inbox(body, path, meta):
        got.append((body, path, meta))
        return elastik.Reply(f"/home/out/{path.rsplit('/', 1)[-1]}", body.upper())

    t = threading.Thread(target=elastik.run, args=(e,), kwargs={"max_events": 1}, daemon=True)
    t.start()
    while t.is_alive():
        e.put("inbox/1", "hi", source="test")
        t.join(0.05)
    assert got[0] == (b"hi", "/home/inbox/1", {"x-meta-source": "test"})
    assert e.get("out/1") == b"HI"


def test_reference_module_names_are_importable() -> None:
    from elastik import reactor, testing

    assert reactor.listen is elastik.listen and reactor.run is elastik.run
    assert reactor.Reply is elastik.Reply and testing.FakeElastik is FakeElastik
