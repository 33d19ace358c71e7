"""Tampering with the database behind our core's back (PROTOCOL §1.3, §14.7, D3, D5).

The schema is the engine's (core/STORAGE-DESIGN.md): one ``elastik.db`` with tables
``worlds(name, body, content_type, headers JSON, size)`` and ``events(...)``. Edits are
made with a separate SQLite connection, either while the core is stopped or while it runs
(WAL lets a second connection write).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.blackbox.wire import Server, Session
from tests.support import servers


@pytest.fixture
def core(tmp_path: Path) -> Iterator[servers.Proc]:
    proc = servers.ours(tmp_path, extra={"ELASTIK_PERSIST_HEADERS": "x-meta-*"})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def srv_of(proc: servers.Proc) -> Server:
    return Server(proc.host, proc.port, "ours", proc.env["ELASTIK_KEY"])


def db_path(proc: servers.Proc) -> Path:
    return Path(proc.env["ELASTIK_DATA"]) / "elastik.db"


def edit(proc: servers.Proc, sql: str, *args: object) -> None:
    con = sqlite3.connect(db_path(proc), timeout=10)
    try:
        cur = con.execute(sql, args)
        assert cur.rowcount >= 1, sql
        con.commit()
    finally:
        con.close()


def verify_cli(proc: servers.Proc, key: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "elastik", "verify", "--data", proc.env["ELASTIK_DATA"],
         "--key", key or proc.env["ELASTIK_KEY"]],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def start_fails(proc: servers.Proc) -> str:
    with pytest.raises(RuntimeError) as info:
        proc.start(timeout=20)
    assert proc.proc is not None and proc.proc.returncode == 1
    return str(info.value)


def seed(srv: Server) -> None:
    assert (
        srv.put("/home/a", b"alpha", [("Content-Type", "text/a"), ("X-Meta-Room", "k")]).status
        == 201
    )
    assert srv.post("/home/a", b"+1").status == 200
    assert srv.post("/home/a", b"+2").status == 200
    assert srv.put("/home/b", b"beta").status == 201
    # PUT only: its whole body lives in worlds.body (appends may be stored as pieces)
    assert (
        srv.put("/home/s", b"state-body", [("Content-Type", "text/a"), ("X-Meta-Room", "k")]).status
        == 201
    )


# ---------------------------------------------------------------------------------------
# events edited while stopped: startup refuses (§1.3), naming the world


@pytest.mark.parametrize(
    ("column", "value"),
    [("size", 999), ("hmac", "f" * 64)],
)
def test_tampered_tail_event_refuses_start(core: servers.Proc, column: str, value: object) -> None:
    seed(srv_of(core))
    assert core.stop() == 0
    edit(
        core,
        f"UPDATE events SET {column} = ? WHERE id = (SELECT max(id) FROM events WHERE world = 'home/a')",
        value,
    )
    out = start_fails(core)
    assert "elastik-core: build Engine failed: audit chain verification failed for home/a: " in out
    assert "audit chain broken at event " in out
    assert "Traceback" not in out
    assert verify_cli(core).returncode != 0


def test_tampered_old_event_found_by_verify_and_cli(core: servers.Proc) -> None:
    """D5: an event before the startup checkpoint is trusted at startup but every full check
    (the HTTP verify walk and ``python -m elastik verify``) still finds it."""
    srv = srv_of(core)
    seed(srv)
    assert core.stop() == 0
    ok = verify_cli(core)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    edit(
        core,
        "UPDATE events SET size = 12345 WHERE id = (SELECT min(id) FROM events WHERE world = 'home/a')",
    )
    cli = verify_cli(core)
    assert cli.returncode != 0
    assert "home/a" in cli.stdout + cli.stderr
    try:
        core.start(timeout=20)
    except RuntimeError as exc:  # refusing is also acceptable: stricter than required
        assert "audit chain verification failed for home/a" in str(exc)
        return
    v = srv.verify("home/a")
    assert v.status == 409
    assert v.header("x-audit-valid") == "false"
    assert v.header("x-audit-break-at") == "0"
    assert (v.header("x-audit-expected") or "").startswith("hmac-")
    assert srv.verify("home/b").status == 200


# ---------------------------------------------------------------------------------------
# D3: current state edited (while running or between runs): verify 409 "state"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


STATE_EDITS = [
    ("body", "UPDATE worlds SET body = ? WHERE name = 'home/s'", b"STATE-BODY",
     f"body-sha256-{sha(b'state-body')}", f"body-sha256-{sha(b'STATE-BODY')}"),
    ("content_type", "UPDATE worlds SET content_type = ? WHERE name = 'home/s'", "text/evil",
     "content-type-text/a", "content-type-text/evil"),
    ("headers", "UPDATE worlds SET headers = ? WHERE name = 'home/s'",
     json.dumps([["x-meta-room", "forged"]], separators=(",", ":")), "meta-sha256-", "meta-sha256-"),
]  # fmt: skip


STATE_CASES = [
    pytest.param(False, *STATE_EDITS[0], id="body-running"),
    pytest.param(True, *STATE_EDITS[0], id="body-restarted"),
    pytest.param(False, *STATE_EDITS[1], id="content_type-running"),
    pytest.param(True, *STATE_EDITS[2], id="headers-restarted"),
]


@pytest.mark.parametrize(
    ("between_runs", "field", "sql", "value", "expected", "actual"), STATE_CASES
)
def test_state_tamper_is_409_state(
    core: servers.Proc,
    between_runs: bool,
    field: str,
    sql: str,
    value: object,
    expected: str,
    actual: str,
) -> None:
    srv = srv_of(core)
    seed(srv)
    etag = srv.get("/home/s").etag
    if between_runs:
        assert core.stop() == 0
    edit(core, sql, value)
    if between_runs:
        core.start()  # startup checks the chain, not the state: it starts
    v = srv.verify("home/s")
    assert v.status == 409, v
    assert v.body == b""
    assert v.header("x-audit-valid") == "false"
    assert v.header("x-audit-break-at") == "state"
    assert (v.header("x-audit-expected") or "").startswith(expected)
    assert (v.header("x-audit-actual") or "").startswith(actual)
    assert v.header("x-audit-expected") != v.header("x-audit-actual")
    assert srv.verify("home/b").status == 200
    g = srv.get("/home/s")
    assert g.status == 200  # GET still serves it; the audit endpoint is where the alarm rings
    assert g.etag == etag
    if between_runs:
        got = {
            "body": g.body,
            "content_type": g.header("content-type"),
            "headers": g.header("x-meta-room"),
        }
        assert (
            got[field]
            == {"body": b"STATE-BODY", "content_type": "text/evil", "headers": "forged"}[field]
        )


def test_wrong_key_refuses_start_naming_a_world(core: servers.Proc) -> None:
    seed(srv_of(core))
    assert core.stop() == 0
    core.env["ELASTIK_KEY"] = servers.new_key()
    out = start_fails(core)
    assert "elastik-core: build Engine failed: audit chain verification failed for home/a: " in out
    assert "audit chain broken at event 0" in out


# ---------------------------------------------------------------------------------------
# §14.7: a tampered event while running -> verify 409 at its index, writes 500, DELETE works


@pytest.mark.parametrize("impl", [pytest.param("reference", marks=pytest.mark.reference), "ours"])
def test_event_tampered_while_running(tmp_path: Path, impl: str) -> None:
    proc = servers.core(impl, tmp_path)
    with servers.running(proc):
        srv = srv_of(proc)
        assert srv.put("/home/t", b"one").status == 201
        assert srv.post("/home/t", b"two").status == 200
        tail = (srv.post("/home/t", b"three").etag or "").strip('"').removeprefix("hmac-")
        data = Path(proc.env["ELASTIK_DATA"])
        if impl == "ours":
            db, where = data / "elastik.db", "world = 'home/t'"
        else:  # PROTOCOL §14.1/§14.2: one universe.db per world
            db, where = data / "home%2Ft" / "universe.db", "1"
        con = sqlite3.connect(db, timeout=10)
        con.execute(
            f"UPDATE events SET hmac = ? WHERE id = (SELECT max(id) FROM events WHERE {where})",
            ("f" * 64,),
        )
        con.commit()
        con.close()
        v = srv.verify("home/t")
        assert v.status == 409
        assert v.header("x-audit-valid") == "false"
        assert v.header("x-audit-break-at") == "2"
        assert v.header("x-audit-expected") == f"hmac-{tail}"
        assert v.header("x-audit-actual") == "hmac-" + "f" * 64
        for method in ("PUT", "POST"):
            r = srv.request(method, "/home/t", b"more", token="w")
            assert (r.status, r.body) == (500, b"internal error: storage failure\n"), method
        g = srv.get("/home/t")
        assert (g.status, g.body) == (200, b"onetwothree")
        assert srv.delete("/home/t").status == 204
        assert srv.get("/home/t").status == 404


# ---------------------------------------------------------------------------------------
# D5: startup verifies only what was written since the last checkpoint


def startup_verified(srv: Server) -> int:
    for line in srv.get("/proc/pool").body.decode().split("\n"):
        name, _, rest = line.partition(" ")
        if name == "startup_events_verified":
            return int(rest.split(" ")[0])
    raise AssertionError("startup_events_verified missing from /proc/pool")


def test_d5_startup_cost_does_not_grow_with_history(core: servers.Proc) -> None:
    srv = srv_of(core)
    assert srv.put("/home/long", b"0").status == 201
    with Session(srv) as sess:
        for _ in range(200):
            assert (
                sess.request("POST", "/home/long", b"+", [("Authorization", "Bearer w")]).status
                == 200
            )
    for name in ("x", "y", "z"):
        srv.put(f"/home/{name}", b"v")
    assert core.stop() == 0  # a clean stop writes checkpoints
    core.start()
    worlds = len(srv.worlds().split(b"\n")) - 1
    assert startup_verified(srv) <= worlds  # one tail re-check per world, not 204 events
    with Session(srv) as sess:
        for _ in range(20):
            assert (
                sess.request("POST", "/home/long", b"-", [("Authorization", "Bearer w")]).status
                == 200
            )
    core.kill()  # crash: the 20 new events were not checkpointed by a clean stop
    core.proc = None
    core.start()
    n = startup_verified(srv)
    assert 1 <= n <= worlds + 20
    assert srv.verify("home/long").header("x-audit-events") == "221"
    assert verify_cli(core).returncode == 0


@pytest.mark.parametrize("impl", [pytest.param("reference", marks=pytest.mark.reference), "ours"])
def test_world_without_events_fails_verify(tmp_path: Path, impl: str) -> None:
    """§14.7: zero events fail at index 0 (at-least-one-event / no-events); writes are 500."""
    proc = servers.core(impl, tmp_path)
    with servers.running(proc):
        srv = srv_of(proc)
        assert srv.put("/home/z", b"zero").status == 201
        data = Path(proc.env["ELASTIK_DATA"])
        if impl == "ours":
            db, where = data / "elastik.db", "world = 'home/z'"
        else:
            db, where = data / "home%2Fz" / "universe.db", "1"
        con = sqlite3.connect(db, timeout=10)
        con.execute(f"DELETE FROM events WHERE {where}")
        con.commit()
        con.close()
        v = srv.verify("home/z")
        assert v.status == 409
        assert v.header("x-audit-break-at") == "0"
        assert v.header("x-audit-expected") == "at-least-one-event"
        assert v.header("x-audit-actual") == "no-events"
        r = srv.put("/home/z", b"again", token="w")
        assert (r.status, r.body) == (500, b"internal error: storage failure\n")
        assert srv.get("/home/z").body == b"zero"
