"""SIGKILL in the middle of concurrent writes loses no acknowledged write (PROTOCOL D1, D5).

Several threads write over keep-alive HTTP connections and record every acknowledged
write (status + ETag). The core is killed with SIGKILL while they write, restarted on the
same data directory, and then:

- for PUT-only paths, the stored body is the last acknowledged one (with its ETag) or the
  single write that was in flight at the kill (each path has one writer, so at most one);
- for POST-append paths, the acknowledged appends are a prefix of the stored body;
- every chain verifies over HTTP and with ``python -m elastik verify`` (full replay).
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.core.blackbox.wire import Server, Session
from tests.support import servers

THREADS = 6
PUT_PATHS = 3  # per thread
ACKS_BEFORE_KILL = 300  # enough writes in flight and committed to make the kill land mid-stream


@dataclass
class Log:
    acked_put: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # path -> (body, etag)
    inflight_put: dict[str, bytes] = field(default_factory=dict)
    acked_app: dict[str, bytes] = field(default_factory=dict)  # path -> acknowledged content
    inflight_app: dict[str, bytes] = field(default_factory=dict)
    acks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def writer(srv: Server, t: int, rnd: int, log: Log, stop: threading.Event) -> None:
    auth = [("Authorization", "Bearer w")]
    n = 0
    try:
        with Session(srv, timeout=10) as sess:
            while not stop.is_set():
                n += 1
                path = f"/home/crash/p{t}-{n % PUT_PATHS}"
                body = f"r{rnd}t{t}n{n}".encode() * (1 + n % 7)
                log.inflight_put[path] = body
                r = sess.request("PUT", path, body, auth)
                assert r.status in (200, 201), r
                with log.lock:
                    log.acked_put[path] = (body, r.etag or "")
                    log.inflight_put.pop(path)
                    log.acks += 1
                app = f"/home/crash/a{t}"
                piece = f"[r{rnd}t{t}n{n}]".encode()
                log.inflight_app[app] = piece
                r = sess.request("POST", app, piece, auth)
                assert r.status == 200, r
                with log.lock:
                    log.acked_app[app] = log.acked_app.get(app, b"") + piece
                    log.inflight_app.pop(app)
                    log.acks += 1
    except (OSError, http.client.HTTPException):
        return  # the kill: whatever was in flight stays recorded as in flight


def check(srv: Server, log: Log) -> None:
    for path, (body, etag) in log.acked_put.items():
        g = srv.get(path)
        assert g.status == 200, (path, g)
        if g.body == body:
            assert g.etag == etag, path
        else:
            assert g.body == log.inflight_put.get(path), (path, g.body, body)
        log.acked_put[path] = (g.body, g.etag or "")  # the baseline for the next round
    for path, acked in log.acked_app.items():
        g = srv.get(path)
        assert g.status == 200
        assert g.body.startswith(acked), (path, g.body, acked)
        extra = g.body[len(acked) :]
        assert extra in (b"", log.inflight_app.get(path)), (path, extra)
        log.acked_app[path] = g.body  # an unacknowledged append that landed is kept
    for name in srv.worlds().decode().split("\n")[:-1]:
        v = srv.verify(name)
        assert (v.status, v.header("x-audit-valid")) == (200, "true"), (name, v)
    log.inflight_put.clear()
    log.inflight_app.clear()


def crash_round(proc: servers.Proc, rnd: int, log: Log) -> None:
    srv = Server(proc.host, proc.port)
    for t in range(THREADS):
        app = f"/home/crash/a{t}"
        if app not in log.acked_app:
            assert srv.put(app, b"", token="w").status == 201
            log.acked_app[app] = b""
    stop = threading.Event()
    threads = [
        threading.Thread(target=writer, args=(srv, t, rnd, log, stop), daemon=True)
        for t in range(THREADS)
    ]
    start_acks = log.acks
    for th in threads:
        th.start()
    deadline = time.monotonic() + 60
    while log.acks - start_acks < ACKS_BEFORE_KILL and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()  # SIGKILL while the writers are mid-request
    stop.set()
    for th in threads:
        th.join(15)
    assert log.acks - start_acks >= ACKS_BEFORE_KILL
    assert log.inflight_put or log.inflight_app  # the kill landed while requests were open


IMPLS = [pytest.param("reference", marks=pytest.mark.reference), "ours"]


@pytest.mark.parametrize("impl", IMPLS)
def test_sigkill_loses_no_acknowledged_write(tmp_path: Path, impl: str) -> None:
    key = servers.new_key()
    proc = servers.core(impl, tmp_path, key=key)
    log = Log()
    proc.start()
    try:
        for rnd in range(2):  # crash, recover, crash again (D5: the second start resumes)
            crash_round(proc, rnd, log)
            proc.proc = None
            proc.start()
            check(Server(proc.host, proc.port), log)
    finally:
        assert proc.stop() == 0
    res = subprocess.run(
        [sys.executable, "-m", "elastik", "verify", "--data", proc.env["ELASTIK_DATA"], "--key", key],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
