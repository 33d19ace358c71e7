"""One-shot vs keep-alive transports against a real core."""

from __future__ import annotations

import http.client
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from elastik import Elastik, Unreachable
from elastik.sdk.transport import KeepAliveTransport, OneShotTransport, lowered_headers

from tests.sdk.conftest import APPROVE, Core


def test_one_shot_closes_every_connection(core: Core, p: str) -> None:
    t = OneShotTransport(core.url)
    r = t.request("PUT", f"/home/{p}/x", b"v", {"Authorization": f"Bearer {APPROVE}"})
    assert r.status == 201
    assert r.headers.get("connection", "close").lower() == "close"


def test_keep_alive_reuses_one_connection(
    core: Core, p: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[int] = []
    real_connect = http.client.HTTPConnection.connect

    def counting(self: http.client.HTTPConnection) -> None:
        opened.append(1)
        real_connect(self)

    monkeypatch.setattr(http.client.HTTPConnection, "connect", counting)
    e = Elastik(core.url, bearer_token=APPROVE, keep_alive=True)
    for i in range(30):
        e.put(f"{p}/k", str(i))
        assert e.get(f"{p}/k") == str(i).encode()
    assert len(opened) == 1
    e.close()


def test_keep_alive_is_thread_safe(core: Core, p: str) -> None:
    e = Elastik(core.url, bearer_token=APPROVE, keep_alive=True)

    def work(i: int) -> bytes | None:
        e.put(f"{p}/t{i}", f"value-{i}")
        return e.get(f"{p}/t{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(64)))
    assert results == [f"value-{i}".encode() for i in range(64)]
    e.close()


def test_keep_alive_recovers_when_the_server_drops_idle_connections(core: Core, p: str) -> None:
    t = KeepAliveTransport(core.url)
    h = {"Authorization": f"Bearer {APPROVE}"}
    assert t.request("PUT", f"/home/{p}/r", b"1", h).status == 201
    with t._lock:  # simulate the server closing the idle socket under us
        for conn in t._idle:
            assert conn.sock is not None
            conn.sock.shutdown(2)
    assert t.request("GET", f"/home/{p}/r", None, h).body == b"1"
    t.close()


def test_keep_alive_stream_and_close_are_independent(core: Core, p: str) -> None:
    e = Elastik(core.url, bearer_token=APPROVE, keep_alive=True)
    e.put(f"{p}/s", "x")
    events = e.listen(f"{p}/*", last_event_id=0)
    assert next(events)["path"] == f"/home/{p}/s"
    events.close()
    e.close()
    assert e.get(f"{p}/s") == b"x"  # a closed pool opens new connections on demand


def test_unreachable_from_both_transports() -> None:
    for kind in (OneShotTransport, KeepAliveTransport):
        with pytest.raises(Unreachable):
            kind("http://127.0.0.1:9", timeout=2).request("GET", "/", None, {})


def test_repeated_headers_are_joined() -> None:
    h = lowered_headers([("Link", "<a>"), ("link", "<b>"), ("ETag", '"x"')])
    assert h == {"link": "<a>, <b>", "etag": '"x"'}


def test_threads_share_one_client_without_errors(core: Core, p: str) -> None:
    e = Elastik(core.url, bearer_token=APPROVE, keep_alive=True)
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            for i in range(20):
                e[f"{p}/{threading.get_ident()}"] = str(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
