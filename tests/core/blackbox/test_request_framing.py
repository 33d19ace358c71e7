"""How requests arrive on the wire does not change their answers (§1.5, §7).

Our core answers a request whose body is complete in the bytes at hand without an ASGI
cycle, and hands anything else (a body still arriving, a durable write, a pipelined request
behind a slow one) to the general path. These tests send the same requests in every way
TCP can deliver them (one request per packet, many per packet, heads and bodies cut at
every kind of boundary) to both servers and compare the answers.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.core.blackbox.conftest import Pool
from tests.core.blackbox.wire import Pipe, Resp, Server, read_response

W = b"Authorization: Bearer w\r\n"


def req(method: str, target: str, body: bytes | None = None, extra: bytes = W) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: h\r\n".encode() + extra
    if body is not None:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + (body or b"")


def exchange(
    srv: Server, pieces: list[bytes], methods: list[str], pause: float = 0.0
) -> list[Resp]:
    """Send ``pieces`` (each its own send, ``pause`` apart) and read one answer per method."""
    with srv.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            s.sendall(piece)
            if pause:
                time.sleep(pause)
        pipe = Pipe(s)
        return [read_response(pipe, m) for m in methods]


def shape(r: Resp) -> tuple[int, bytes, str | None, str | None]:
    return (r.status, r.body, r.header("content-length"), r.header("etag"))


def test_mixed_pipeline_in_one_packet(srv: Server, uid: str) -> None:
    """Memory and durable writes, reads, refusals and OPTIONS back to back in one send:
    answered in order, each exactly as if it had come alone."""
    mem, dur = f"/tmp/{uid}/m", f"/home/{uid}/d"
    batch = [
        ("PUT", req("PUT", mem, b"one")),
        ("PUT", req("PUT", dur, b"durable")),  # waits for the writer
        ("GET", req("GET", mem, extra=b"")),  # queued behind the durable write
        ("POST", req("POST", mem, b"+two")),
        ("HEAD", req("HEAD", dur, extra=b"")),
        ("PUT", req("PUT", mem, b"x", extra=b"Authorization: Bearer nope\r\n")),  # 401
        ("OPTIONS", req("OPTIONS", mem, extra=b"")),
        ("POST", req("POST", dur, b"+more")),
        ("GET", req("GET", dur, extra=b"")),
        ("GET", req("GET", mem, extra=b"")),
    ]
    answers = exchange(srv, [b"".join(data for _m, data in batch)], [m for m, _d in batch])
    assert [a.status for a in answers] == [201, 201, 200, 200, 200, 401, 204, 200, 200, 200]
    assert answers[2].body == b"one"
    assert answers[4].body == b"" and answers[4].header("content-length") == "7"
    assert answers[8].body == b"durable+more"
    assert answers[9].body == b"one+two"
    assert answers[8].etag == answers[7].etag
    assert answers[9].etag == answers[3].etag


@pytest.mark.parametrize("ns", ["tmp", "home"])
@pytest.mark.parametrize(
    "cut",
    ["head|body", "mid-header", "mid-body", "byte-by-byte-body", "body|next-head"],
)
def test_request_cut_anywhere(srv: Server, uid: str, ns: str, cut: str) -> None:
    world = f"/{ns}/{uid}/w"
    body = b"0123456789" * 30
    put = req("PUT", world, body)
    get = req("GET", world, extra=b"")
    head_end = put.index(b"\r\n\r\n") + 4
    if cut == "head|body":
        pieces = [put[:head_end], put[head_end:], get]
    elif cut == "mid-header":
        at = put.index(b"Bearer") + 3
        pieces = [put[:at], put[at:], get]
    elif cut == "mid-body":
        pieces = [
            put[: head_end + 100],
            put[head_end + 100 : head_end + 200],
            put[head_end + 200 :] + get,
        ]
    elif cut == "byte-by-byte-body":
        pieces = [put[:head_end]] + [bytes((c,)) for c in put[head_end:]] + [get]
    else:  # the body completes in the same packet that starts the next request's head
        pieces = [put[: head_end + 5], put[head_end + 5 :] + get[:10], get[10:]]
    answers = exchange(srv, pieces, ["PUT", "GET"], pause=0.002)
    assert [a.status for a in answers] == [201, 200]
    assert answers[1].body == body
    assert answers[1].etag == answers[0].etag


def test_head_answer_then_pipelined_get(srv: Server, uid: str) -> None:
    """A HEAD answer carries the length but no body, so the next answer parses cleanly."""
    world = f"/tmp/{uid}/h"
    assert srv.put(world, b"abcdef", token="w").status == 201
    answers = exchange(
        srv,
        [req("HEAD", world, extra=b"") + req("GET", world, extra=b"")],
        ["HEAD", "GET"],
    )
    assert shape(answers[0])[:3] == (200, b"", "6")
    assert answers[1].body == b"abcdef"


def test_refusals_in_a_pipeline_keep_the_connection(srv: Server, uid: str) -> None:
    """413 by declared length, a bad path and 405 leave the connection usable for the next
    request when their bodies were sent (the server reads past them)."""
    world = f"/tmp/{uid}/r"
    batch = [
        ("PUT", req("PUT", "/tmp/a/../b", b"x")),
        ("PATCH", req("PATCH", world, b"x")),
        ("PUT", req("PUT", world, b"ok")),
        ("GET", req("GET", world, extra=b"")),
    ]
    answers = exchange(srv, [b"".join(d for _m, d in batch)], [m for m, _d in batch])
    assert [a.status for a in answers] == [400, 405, 201, 200]
    assert answers[3].body == b"ok"


@pytest.mark.parametrize("sent", [0, 10])
def test_declared_oversize_is_refused_before_the_body_arrives(
    pool: Pool, uid: str, sent: int
) -> None:
    """Ours only (the reference waits for the body first): 413 comes from the declared
    length alone, so the server neither waits for nor buffers a body it refuses anyway."""
    srv = pool.get("ours", "quota")
    head = f"PUT /tmp/{uid}/big HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n"
    with srv.connect(timeout=5) as s:
        s.sendall(head.encode() + b"x" * sent)
        answer = read_response(s, "PUT")
    assert answer.status == 413
    assert srv.get(f"/tmp/{uid}/big").status == 404


@pytest.mark.parametrize(
    ("target", "status", "body_start"),
    [
        (b"*", 404, b""),
        (b"http://h/proc/version", 200, b"elastik-core "),
        (b"/proc/version?x=1", 200, b"elastik-core "),
        (b"//tmp//x", 400, b"bad request: world path has empty segment"),
        (b"/%74mp/x", 404, b"world not found\n"),
    ],
)
def test_unusual_targets_on_a_kept_alive_connection(
    srv: Server, target: bytes, status: int, body_start: bytes
) -> None:
    """Asterisk-form, absolute-form, queries and odd slashes get the same answers when the
    connection stays open (the path such requests take through our protocol)."""
    method = b"OPTIONS" if target == b"*" else b"GET"
    data = method + b" " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    data += b"GET /proc/version HTTP/1.1\r\nHost: h\r\n\r\n"
    answers = exchange(srv, [data], [method.decode(), "GET"])
    assert answers[0].status == status
    assert answers[0].body.startswith(body_start)
    assert answers[0].header("content-length") == str(len(answers[0].body))
    assert answers[1].status == 200  # the connection is still usable
