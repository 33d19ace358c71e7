"""PROTOCOL §16: /listen Server-Sent Events (listen config: replay ring 4, 3 connections)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.core.blackbox.wire import Server, Session, Stream, open_stream

QUIET = 0.2  # how long "nothing arrives" is observed; only ever used to expect silence


@contextlib.contextmanager
def listening(
    srv: Server, pattern: str, headers: list[tuple[str, str]] | None = None
) -> Iterator[Stream]:
    st = open_stream(srv, f"/listen/{pattern}", headers or [])
    try:
        yield st
    finally:
        st.close()


def sync(srv: Server, st: Stream, uid: str) -> int:
    """A write that the listener must see; returns its id. Proves the listener is live."""
    srv.put(f"/tmp/{uid}/sync", b"s")
    (ev,) = st.read_events(1)
    assert ev["data"][0] == f"path: /tmp/{uid}/sync", ev
    return int(ev["id"][0])


def test_stream_headers_and_event_format(srv_listen: Server, uid: str) -> None:
    s = srv_listen
    with listening(s, "*") as st:
        assert st.status == 200
        assert st.header("content-type") == "text/event-stream"
        assert st.header("cache-control") == "no-cache"
        assert st.header("transfer-encoding") == "chunked"
        assert st.header("vary") == "Authorization"
        assert st.expect_silence(QUIET) == b""  # nothing on connect
        put = s.put(f"/home/{uid}/é%20x", b"1").etag or ""
        post = s.post(f"/home/{uid}/é%20x", b"2").etag or ""
        assert s.put(f"/home/{uid}/é%20x", b"3", [("If-Match", '"nope"')]).status == 412
        assert s.put(f"/home/{uid}/z", b"3", token="bad").status == 401
        assert s.delete(f"/home/{uid}/é%20x").status == 204
        mem = s.put(f"/tmp/{uid}", b"m").etag or ""
        evs = st.read_events(4)
    w = f"/home/{uid}/é x"
    assert [e["event"] for e in evs] == [["put"], ["post"], ["delete"], ["put"]]
    assert evs[0]["data"] == [f"path: {w}", "method: PUT", f"etag: {put.strip(chr(34))}"]
    assert evs[1]["data"] == [f"path: {w}", "method: POST", f"etag: {post.strip(chr(34))}"]
    assert evs[2]["data"] == [f"path: {w}", "method: DELETE"]
    assert evs[3]["data"] == [f"path: /tmp/{uid}", "method: PUT", f"etag: {mem.strip(chr(34))}"]
    ids = [int(e["id"][0]) for e in evs]
    assert ids == list(range(ids[0], ids[0] + 4))
    assert all(set(e) == {"event", "id", "data"} for e in evs)


PATTERNS = [
    # (pattern, world suffix written, matches?)
    ("home/{u}/sse/*", "sse/exact", True),
    ("home/{u}/sse*", "sse/exact", True),
    ("home/{u}/sse/exact*", "sse/exact", True),
    ("home/{u}/sse/exact", "sse/exact", True),
    ("home/{u}/sse%2Fexact", "sse/exact", True),
    ("home/{u}/sse/%2A", "sse/exact", True),
    ("%2Fhome/{u}/sse/exact", "sse/exact", True),
    ("/home/{u}/sse/exact", "sse/exact", True),
    ("home/{u}/sse", "sse/exact", False),
    ("{u}/sse/*", "sse/exact", False),
    ("home/{u}/*/exact", "sse/exact", False),
    ("home/{u}/**", "sse/exact", False),
    ("home/{u}/../x", "sse/exact", False),
]


@pytest.mark.parametrize(("pattern", "suffix", "matches"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_pattern_matching(
    srv_listen: Server, uid: str, pattern: str, suffix: str, matches: bool
) -> None:
    with listening(srv_listen, pattern.format(u=uid)) as st:
        assert st.status == 200
        srv_listen.put(f"/home/{uid}/{suffix}", b"x")
        srv_listen.put(f"/home/{uid}/other", b"x")
        if matches:
            (ev,) = st.read_events(1)
            assert ev["data"][0] == f"path: /home/{uid}/{suffix}"
        assert st.expect_silence(QUIET) == b""


def test_home_and_proc_patterns_accepted_but_silent(srv_listen: Server) -> None:
    for pattern in ("home", "proc/*"):
        with listening(srv_listen, pattern) as st:
            assert st.status == 200


def test_replay_and_lag(srv_listen: Server, uid: str) -> None:
    s = srv_listen
    with listening(s, "*") as live:
        first = sync(s, live, uid)
        for i in range(6):
            s.put(f"/home/{uid}/r{i}", b"x")
        ids = [int(e["id"][0]) for e in live.read_events(6)]
    assert ids == list(range(first + 1, first + 7))
    # ring of 4 holds ids first+3 .. first+6
    with listening(s, f"home/{uid}/*", [("Last-Event-ID", str(first + 4))]) as st:
        evs = st.read_events(2)
        assert [e["id"][0] for e in evs] == [str(first + 5), str(first + 6)]
        assert st.expect_silence(QUIET) == b""
    with listening(s, f"home/{uid}/r5", [("Last-Event-ID", str(first))]) as st:
        lag, only = st.read_events(2)
        assert lag == {"event": ["lag"], "data": ["missed: 2"]}
        assert only["id"] == [str(first + 6)]
        assert st.expect_silence(QUIET) == b""


@pytest.mark.parametrize("value", ["abc", "-1", "99999999", "1.5", ""])
def test_bad_last_event_id_replays_nothing(srv_listen: Server, uid: str, value: str) -> None:
    s = srv_listen
    s.put(f"/home/{uid}/x", b"x")
    before = s.snapshot()
    with listening(s, "*", [("Last-Event-ID", value)]) as st:
        assert st.status == 200
        assert st.expect_silence(QUIET) == b""
        assert s.snapshot() == before
        if value != "99999999":  # (live events up to a future id are not pinned down)
            sync(s, st, uid)  # and it still goes live


def test_delete_ledger_update_fires_nothing(srv_listen: Server, uid: str) -> None:
    s = srv_listen
    s.put(f"/tmp/{uid}", b"x")
    with listening(s, "var/log/*") as ledger, listening(s, f"tmp/{uid}") as world:
        assert s.delete(f"/tmp/{uid}").status == 204
        (ev,) = world.read_events(1)
        assert ev["event"] == ["delete"]
        assert ledger.expect_silence(QUIET) == b""


def open_when_free(s: Server, target: str) -> Stream:
    """Open a stream, waiting while slots of streams closed just before are still counted."""
    for _ in range(100):
        st = open_stream(s, target)
        if st.status == 200:
            return st
        st.close()
        time.sleep(0.05)
    raise AssertionError("no listen slot became free")


def test_connection_limit(srv_listen: Server, uid: str) -> None:
    s = srv_listen
    streams: list[Stream] = []
    try:
        for i in range(3):
            streams.append(open_when_free(s, f"/listen/{uid}/{i}"))
        full = s.get(f"/listen/{uid}/x")
        assert full.status == 503
        assert full.body == b"too many listen connections\n"
        assert full.header("retry-after") == "1"
        assert full.header("content-type") == "text/plain; charset=utf-8"
        streams.pop().close()
        streams.append(open_when_free(s, f"/listen/{uid}/y"))  # the slot frees on disconnect
    finally:
        for st in streams:
            st.close()


def test_stalled_listener_does_not_block_writers(srv: Server, uid: str) -> None:
    s = srv  # (default replay ring: a live reader that falls behind gets "lag", see below)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((s.host, s.port))
    stalled.sendall(b"GET /listen/* HTTP/1.1\r\nHost: h\r\n\r\n")
    try:
        write_past_stalled_listener(s, uid)
    finally:
        stalled.close()


def write_past_stalled_listener(s: Server, uid: str) -> None:
    got: list[str] = []
    missed = [0]  # a reader slower than the writers may be told it lagged (§16.4)
    writes = 1500
    long = "n" * 900  # ~1 KiB events fill the stalled socket's buffers quickly
    with listening(s, f"tmp/{uid}/*") as reader:
        done = threading.Event()

        def consume() -> None:
            while len(got) + missed[0] < writes:
                for ev in reader.read_events(1, timeout=30):
                    if ev.get("event") == ["lag"]:
                        missed[0] += int(ev["data"][0].removeprefix("missed: "))
                    else:
                        got.append(ev["data"][0])
            done.set()

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        with Session(s, timeout=10) as sess:
            for i in range(writes):
                r = sess.request(
                    "PUT", f"/tmp/{uid}/{long}{i}", b"v", [("Authorization", "Bearer w")]
                )
                assert r.status == 201, r
        t.join(30)
    assert len(got) + missed[0] == writes
    assert got
    assert got[-1] == f"path: /tmp/{uid}/{long}{writes - 1}"
    listed = [n for n in s.worlds().decode().split("\n") if n.startswith(f"tmp/{uid}/")]
    assert len(listed) == writes
    for i in range(0, writes, 100):
        assert s.delete(f"/tmp/{uid}/{long}{i}").status == 204
