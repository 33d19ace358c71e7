"""One-shot vs keep-alive transports against a real core."""

from __future__ import annotations

import http.client
import io
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from elastik import Elastik, Unreachable
from elastik.sdk.transport import (
    KeepAliveTransport,
    OneShotTransport,
    lowered_headers,
    read_answer,
)

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
    real_connect = socket.create_connection

    def counting(*args: object, **kw: object) -> socket.socket:
        opened.append(1)
        return real_connect(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", counting)
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


def test_read_answer_content_length_and_keep_alive() -> None:
    raw = b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "x"\r\n\r\nhelloHTTP/1.1 204 No'
    a = read_answer(io.BufferedReader(io.BytesIO(raw)), "GET")  # type: ignore[arg-type]
    assert (a.status, a.body, a.will_close) == (200, b"hello", False)
    assert a.headers == [("Content-Length", "5"), ("ETag", '"x"')]


def test_read_answer_chunked_with_trailers() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    a = read_answer(io.BytesIO(raw), "GET")
    assert a.body == b"abcde" and not a.will_close


def test_read_answer_no_body_cases_and_interim() -> None:
    head = read_answer(io.BytesIO(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"), "HEAD")
    assert head.body == b""
    nm = read_answer(io.BytesIO(b"HTTP/1.1 304 Not Modified\r\nETag: 1\r\n\r\n"), "GET")
    assert nm.status == 304 and nm.body == b""
    cont = read_answer(
        io.BytesIO(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
        ),
        "PUT",
    )
    assert cont.status == 201


def test_read_answer_close_delimited_and_connection_close() -> None:
    a = read_answer(io.BytesIO(b"HTTP/1.0 200 OK\r\n\r\nall of it"), "GET")
    assert a.body == b"all of it" and a.will_close
    b = read_answer(
        io.BytesIO(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), "GET"
    )
    assert b.will_close


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
    ],
)
def test_read_answer_rejects_broken_responses(raw: bytes) -> None:
    with pytest.raises(http.client.HTTPException):
        read_answer(io.BytesIO(raw), "GET")


def test_keep_alive_refuses_header_injection(core: Core, p: str) -> None:
    e = Elastik(core.url, bearer_token=APPROVE, keep_alive=True)
    with pytest.raises(ValueError, match="invalid HTTP header"):
        e.put(f"{p}/x", "v", headers={"X-Evil": "a\r\nX-Injected: 1"})
    assert not e.exists(f"{p}/x")
