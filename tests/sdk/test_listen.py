"""@listen / run() over real /listen SSE streams (ours and the reference)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import elastik
import pytest
from elastik import Archive, Drop, Elastik, MoveTo, Reply
from elastik.sdk.transport import OneShotTransport, Response, Stream

from tests.sdk.conftest import APPROVE, Core
from tests.support.servers import free_port


def _last_id(e: Elastik, path: str) -> str:
    """The SSE id of the newest event (replay from 0 and keep the last one for ``path``)."""
    last = ""
    for ev in e.listen("*", last_event_id=0):
        if ev.get("path") == "/" + path:
            last = ev["id"]
            break
    return last


def test_handler_gets_body_first_and_context_by_name(e: Elastik, p: str) -> None:
    seen: list[dict[str, Any]] = []

    @elastik.listen(f"/home/{p}/order/*")
    def on_order(body, path, etag, pattern, meta, e, method, event, world):
        seen.append(
            dict(
                body=body,
                path=path,
                etag=etag,
                pattern=pattern,
                meta=meta,
                e=e,
                method=method,
                event=event,
                world=world,
            )
        )

    put = e.put(
        f"{p}/order/123", b'{"sku": "tea"}', content_type="application/json", customer="ann"
    )
    elastik.run(e, max_events=1, last_event_id=0)
    (got,) = seen
    assert got["body"] == b'{"sku": "tea"}'
    assert got["path"] == got["world"] == f"/home/{p}/order/123"
    assert got["etag"] == put["etag"]
    assert got["pattern"] == f"/home/{p}/order/*"
    assert got["meta"] == {"x-meta-customer": "ann"}
    assert got["e"] is e and got["method"] == "PUT"
    assert got["event"]["event"] == "put" and got["event"]["id"].isdigit()


def test_path_contract_worker_writes_receipt(e: Elastik, p: str) -> None:
    @elastik.listen(f"{p}/order/*")  # namespace-defaulted like every SDK path
    def on_order(body, path, e):
        order_id = path.rsplit("/", 1)[-1]
        e.put_json(f"{p}/receipt/{order_id}", {"status": "accepted"})

    e.put_json(f"{p}/order/7", {"sku": "tea", "qty": 2})
    elastik.run(e, max_events=1, last_event_id=0)
    assert e.get_json(f"{p}/receipt/7") == {"status": "accepted"}


def test_live_events_reach_a_running_loop(e: Elastik, p: str) -> None:
    got: list[bytes] = []

    @elastik.listen(f"{p}/live")
    def on_live(body, **kw):
        assert {"path", "etag", "meta", "e", "method", "event", "pattern", "world"} <= set(kw)
        got.append(body)

    t = threading.Thread(target=elastik.run, args=(e,), kwargs={"max_events": 1}, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while t.is_alive() and time.monotonic() < deadline:
        e.put(f"{p}/live", "ping")  # until the subscription is up and sees one
        t.join(0.1)
    assert not t.is_alive() and got == [b"ping"]


def test_delete_events_dispatch_with_empty_body(e: Elastik, p: str) -> None:
    seen: list[tuple[bytes, str]] = []

    @elastik.listen(f"{p}/gone")
    def on_gone(body, method):
        seen.append((body, method))

    e.put(f"{p}/gone", "x")
    e.delete(f"{p}/gone")
    elastik.run(e, max_events=1, last_event_id=_last_id(e, f"home/{p}/gone"))
    assert seen == [(b"", "DELETE")]


def test_actions_reply_moveto_archive_drop(e: Elastik, p: str) -> None:
    @elastik.listen(f"{p}/in/*")
    def route(body, path):
        name = path.rsplit("/", 1)[-1]
        if name == "a":
            return Reply(f"{p}/out/a", b"re:" + body)
        if name == "b":
            return MoveTo(f"{p}/moved/b")
        if name == "c":
            return [Archive(f"/home/{p}/archive/"), Reply(f"{p}/out/c", "seen")]
        return Drop()

    for name in "abcd":
        e.put(f"{p}/in/{name}", name)
    elastik.run(e, max_events=4, last_event_id=0)
    assert e.get(f"{p}/out/a") == b"re:a" and e.exists(f"{p}/in/a")
    assert e.get(f"{p}/moved/b") == b"b" and not e.exists(f"{p}/in/b")
    assert e.get(f"{p}/archive/c") == b"c" and not e.exists(f"{p}/in/c")
    assert e.get(f"{p}/out/c") == b"seen"
    assert not e.exists(f"{p}/in/d")


def test_listen_resumes_after_last_event_id(e: Elastik, p: str) -> None:
    for name in ("a", "b", "c"):
        e.put(f"{p}/{name}", name)
    first = _last_id(e, f"home/{p}/a")
    stream = e.listen(f"{p}/*", last_event_id=first)
    paths = [next(stream)["path"], next(stream)["path"]]
    stream.close()
    assert paths == [f"/home/{p}/b", f"/home/{p}/c"]


class CuttingTransport:
    """A real transport whose first SSE stream drops after one event, like a lost link."""

    def __init__(self, url: str) -> None:
        self._inner = OneShotTransport(url)
        self.last_event_ids: list[str | None] = []

    def request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        return self._inner.request(method, target, body, headers)

    def stream(self, method: str, target: str, headers: Mapping[str, str]) -> Stream:
        self.last_event_ids.append(headers.get("Last-Event-ID"))
        real = self._inner.stream(method, target, headers)
        if len(self.last_event_ids) > 1:
            return real
        inner_chunks = real.chunks

        def one_event() -> Iterator[bytes]:
            buf = b""
            for chunk in inner_chunks():
                buf += chunk
                if b"\n\n" in buf:
                    yield buf[: buf.index(b"\n\n") + 2]
                    return

        real.chunks = one_event  # type: ignore[method-assign]
        return real

    def close(self) -> None:
        return None


def test_run_reconnects_with_last_event_id(core: Core, p: str) -> None:
    plain = Elastik(core.url, bearer_token=APPROVE)
    cut = CuttingTransport(core.url)
    e = Elastik(core.url, bearer_token=APPROVE, transport=cut)
    got: list[str] = []

    @elastik.listen(f"{p}/*")
    def on_any(body, path):
        got.append(path)

    for name in ("a", "b", "c"):
        plain.put(f"{p}/{name}", name)
    start = _last_id(plain, f"home/{p}/a")
    elastik.run(e, max_events=2, retry_s=0.01, last_event_id=start)
    assert got == [f"/home/{p}/b", f"/home/{p}/c"]
    first, second = cut.last_event_ids
    assert first == start and second is not None and int(second) == int(start) + 1


def test_registration_rules() -> None:
    with pytest.raises(RuntimeError, match=r"no @elastik\.listen handlers"):
        elastik.run(Elastik("http://127.0.0.1:9"))

    @elastik.listen("/home/x/*")
    def one(body):
        return None

    with pytest.raises(ValueError, match="already registered"):
        elastik.listen("home/x/*")(one)
    elastik.listen("x/*", replace=True)(one)
    assert elastik.has_routes()
    elastik.unlisten("/home/x/*")
    assert not elastik.has_routes()
    elastik.listen("a")(one)
    elastik.clear_routes()
    assert not elastik.has_routes()


def test_lifecycle_hooks_and_fail_fast_mode() -> None:
    calls: list[str] = []
    e = Elastik(f"http://127.0.0.1:{free_port()}")

    @elastik.on_startup
    def up(e):
        calls.append(f"up:{type(e).__name__}")

    @elastik.on_shutdown
    def down1():
        calls.append("down1")

    @elastik.on_shutdown
    def down2(e):
        calls.append("down2")

    elastik.listen("*")(lambda body: None)
    with pytest.raises(elastik.Unreachable):
        elastik.run(e, reconnect=False)
    assert calls == ["up:Elastik", "down2", "down1"]


def test_handler_errors_are_logged_and_skipped(
    e: Elastik, p: str, capsys: pytest.CaptureFixture[str]
) -> None:
    handled: list[str] = []

    @elastik.listen(f"{p}/*")
    def flaky(body, path):
        if body == b"bad":
            raise RuntimeError("boom")
        handled.append(path)

    e.put(f"{p}/1", "bad")
    e.put(f"{p}/2", "good")
    elastik.run(e, max_events=1, last_event_id=0)
    assert handled == [f"/home/{p}/2"]
    err = capsys.readouterr().err
    assert "handler failed" in err and "boom" in err
    with pytest.raises(RuntimeError, match="boom"):
        elastik.run(e, max_events=1, last_event_id=0, reconnect=False)


class EndingTransport(CuttingTransport):
    """Every stream ends at once, as if the core closed it."""

    def stream(self, method: str, target: str, headers: Mapping[str, str]) -> Stream:
        self.last_event_ids.append(headers.get("Last-Event-ID"))
        real = self._inner.stream(method, target, headers)
        real.chunks = lambda: iter(())  # type: ignore[method-assign]
        return real


def test_fail_fast_mode_raises_when_the_stream_ends(core: Core) -> None:
    e = Elastik(core.url, bearer_token=APPROVE, transport=EndingTransport(core.url))
    elastik.listen("*")(lambda body: None)
    with pytest.raises(ConnectionResetError, match="closed the /listen stream"):
        elastik.run(e, reconnect=False)


def test_a_silent_stream_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from elastik.sdk import transport

    monkeypatch.setattr(transport, "STREAM_IDLE_TIMEOUT", 0.3)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def half_answer() -> None:
            conn, _ = server.accept()
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
            time.sleep(1.0)  # then nothing: no events, no keepalive
            conn.close()

        t = threading.Thread(target=half_answer)
        t.start()
        with pytest.raises(TimeoutError):
            next(Elastik(f"http://127.0.0.1:{port}").listen("*"))
        t.join()
