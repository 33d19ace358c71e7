"""Tamper detection: verify() outcomes (§14.7 a–c, D3 state), writes to broken chains,
startup refusal (wrong key, tampered events), the incremental checkpoint (D5) and the
full replay of ``verifytool``."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from elastik.server import audit, verifytool
from elastik.server.engine import Engine
from elastik.server.errors import FatalError, StorageFailure
from elastik.server.model import EngineConfig

KEY = b"ef" * 32


def open_engine(data: Path, key: bytes = KEY) -> Engine:
    return Engine.open(EngineConfig(data=data, key=key))


def db(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(data / "elastik.db", isolation_level=None)


def event_rows(data: Path, world: str) -> list[tuple]:
    with db(data) as c:
        return c.execute(
            "SELECT id, hmac, prev_hmac, meta_sha256, size FROM events WHERE world=? ORDER BY id",
            (world,),
        ).fetchall()


async def three_events(e: Engine, world: str = "home/t") -> None:
    await e.put(world, b"one", "text/plain", (("cache-control", "a"),))
    await e.append(world, b"two")
    await e.put(world, b"three", "text/plain", ())


async def test_valid_verify_reports_count_genesis_latest(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e)
        v = await e.verify("home/t")
        rows = event_rows(data, "home/t")
        assert (v.outcome, v.events, v.genesis, v.latest) == ("valid", 3, rows[0][1], rows[2][1])
        assert (await e.verify("home/none")).outcome == "missing"
        await e.put("tmp/m", b"", "t", ())
        assert (await e.verify("tmp/m")).outcome == "memory"
        assert (await e.verify("tmp/none")).outcome == "missing"


async def test_rule_a_broken_link(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e)
        rows = event_rows(data, "home/t")
        with db(data) as c:
            c.execute("UPDATE events SET prev_hmac=? WHERE id=?", ("0" * 64, rows[1][0]))
        v = await e.verify("home/t")
        assert (v.outcome, v.break_at) == ("broken", "1")
        assert (v.expected, v.actual) == (f"hmac-{rows[0][1]}", f"hmac-{'0' * 64}")


async def test_rule_b_event_metadata(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e)
        rows = event_rows(data, "home/t")
        with db(data) as c:
            c.execute("UPDATE event_headers SET value='evil' WHERE event_id=?", (rows[0][0],))
        v = await e.verify("home/t")
        recomputed = audit.meta_sha256("text/plain", (("cache-control", "evil"),))
        assert (v.outcome, v.break_at) == ("broken", "0")
        assert (v.expected, v.actual) == (f"meta-sha256-{recomputed}", f"meta-sha256-{rows[0][3]}")


async def test_rule_c_hmac(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e)
        rows = event_rows(data, "home/t")
        with db(data) as c:
            c.execute("UPDATE events SET size=999 WHERE id=?", (rows[2][0],))
        v = await e.verify("home/t")
        assert (v.outcome, v.break_at, v.actual) == ("broken", "2", f"hmac-{rows[2][1]}")
        assert v.expected.startswith("hmac-") and v.expected != v.actual


async def test_zero_events_fail_at_event_zero(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e)
        with db(data) as c:
            c.execute("DELETE FROM events WHERE world='home/t'")
        v = await e.verify("home/t")
        assert (v.outcome, v.break_at, v.expected, v.actual) == (
            "broken",
            "0",
            "at-least-one-event",
            "no-events",
        )
        with pytest.raises(StorageFailure):
            await e.put("home/t", b"x", "t", ())


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("body", b"tampered", "body-sha256"),
        ("content_type", "text/html", "content-type"),
        ("headers", '[["cache-control","evil"]]', "meta-sha256"),
    ],
)
async def test_d3_state_mismatch_is_reported_but_still_served(
    tmp_path: Path, column: str, value: object, field: str
):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await e.put("home/s", b"original", "text/plain", (("cache-control", "a"),))
        with db(data) as c:
            c.execute(f"UPDATE worlds SET {column}=? WHERE name='home/s'", (value,))
        v = await e.verify("home/s")
        assert (v.outcome, v.break_at) == ("broken", "state")
        assert v.expected.startswith(field + "-") and v.actual.startswith(field + "-")
        assert v.expected != v.actual
        if field == "body-sha256":
            assert v.expected == "body-sha256-" + hashlib.sha256(b"original").hexdigest()
            assert v.actual == "body-sha256-" + hashlib.sha256(b"tampered").hexdigest()
        if field == "content-type":
            assert (v.expected, v.actual) == ("content-type-text/plain", "content-type-text/html")
    # After a restart the tampered state is served (GET still works), and startup passes.
    with open_engine(data) as e:
        w = e.read("home/s")
        assert w is not None
        if column == "body":
            assert w.body == b"tampered"
        assert (await e.verify("home/s")).break_at == "state"


async def test_write_to_world_with_tampered_tail_is_storage_failure(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e)
        rows = event_rows(data, "home/t")
        with db(data) as c:
            c.execute("UPDATE events SET size=1 WHERE id=?", (rows[2][0],))
        with pytest.raises(StorageFailure):
            await e.put("home/t", b"x", "t", ())
        with pytest.raises(StorageFailure):
            await e.append("home/t", b"x")
        await e.put("home/other", b"fine", "t", ())  # only that world is refused
        assert (await e.delete("home/t")).status == 204  # deleting a broken world works
        assert (await e.put("home/t", b"new", "t", ())).status == 201


async def test_write_refused_after_verify_finds_non_tail_break(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e)
        rows = event_rows(data, "home/t")
        with db(data) as c:
            c.execute("UPDATE events SET size=1 WHERE id=?", (rows[0][0],))
        assert (await e.verify("home/t")).break_at == "0"
        with pytest.raises(StorageFailure):
            await e.append("home/t", b"x")
        with db(data) as c:  # repaired: verify clears the flag
            c.execute("UPDATE events SET size=3 WHERE id=?", (rows[0][0],))
        assert (await e.verify("home/t")).outcome == "valid"
        await e.append("home/t", b"x")


async def test_startup_refuses_tampered_tail_naming_world_and_event(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e, "home/a")
        await three_events(e, "home/b")
    rows = event_rows(data, "home/b")
    with db(data) as c:
        c.execute("UPDATE events SET content_type='x' WHERE id=?", (rows[2][0],))
    with pytest.raises(FatalError) as info:
        open_engine(data)
    recomputed = audit.meta_sha256("x", ())
    assert info.value.message == (
        "build Engine failed: audit chain verification failed for home/b: "
        f"audit chain broken at event 2: expected meta-sha256-{recomputed}, "
        f"actual meta-sha256-{rows[2][3]}"
    )


async def test_startup_refuses_wrong_key(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await e.put("home/b", b"x", "t", ())
        await e.put("home/a", b"x", "t", ())
    rows = event_rows(data, "home/a")
    other = b"99" * 32
    with pytest.raises(FatalError) as info:
        open_engine(data, key=other)
    msg = info.value.message
    assert msg.startswith(
        "build Engine failed: audit chain verification failed for home/a: "
        "audit chain broken at event 0: expected hmac-"
    )
    assert msg.endswith(f", actual hmac-{rows[0][1]}")
    open_engine(data).close()  # the right key still opens


async def test_startup_trusts_checkpoint_but_full_replay_finds_old_tamper(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e)
    rows = event_rows(data, "home/t")
    with db(data) as c:
        assert c.execute("SELECT event_id FROM checkpoint WHERE world='home/t'").fetchone() == (
            rows[2][0],
        )
        c.execute("UPDATE events SET size=77 WHERE id=?", (rows[1][0],))  # before checkpoint
    e = open_engine(data)  # D5: events before an intact checkpoint are trusted
    e.close()
    report = verifytool.verify_data(data, KEY)
    assert [(r.world, r.ok) for r in report] == [("home/t", False)]
    assert report[0].detail.startswith("audit chain broken at event 1: expected hmac-")


async def test_startup_verifies_events_after_checkpoint(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e)
    rows = event_rows(data, "home/t")
    with db(data) as c:
        # As if the process died before recording a checkpoint for these events.
        c.execute("DELETE FROM checkpoint")
        c.execute("UPDATE events SET size=77 WHERE id=?", (rows[1][0],))
    with pytest.raises(FatalError) as info:
        open_engine(data)
    assert "failed for home/t: audit chain broken at event 1: expected hmac-" in info.value.message


async def test_startup_checkpoint_pointing_at_changed_event_forces_full_walk(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e)
    with db(data) as c:
        c.execute("UPDATE checkpoint SET hmac='bogus'")
    with open_engine(data) as e:  # full walk finds nothing wrong, checkpoint rewritten
        assert e.startup.full_walks == 1
    with db(data) as c:
        assert c.execute("SELECT hmac FROM checkpoint").fetchone()[0] != "bogus"


async def test_startup_is_incremental(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        for i in range(20):
            await e.put("home/inc", b"%d" % i, "t", ())
    with open_engine(data) as e:
        # Only the tail is re-checked: 1 event, not 20.
        assert e.startup.events_verified == 1
        await e.put("home/inc", b"new", "t", ())
        await e.put("home/inc", b"newer", "t", ())
    with db(data) as c:
        c.execute(
            "UPDATE checkpoint SET event_id = event_id - 2, hmac = ("
            "SELECT hmac FROM events WHERE id = checkpoint.event_id - 2)"
        )
    with open_engine(data) as e:
        # The checkpoint event is re-checked in bulk, then the two events after it are walked.
        assert e.startup.events_verified == 3


async def test_verifytool_reports_every_world(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await three_events(e, "home/a")
        await e.put("home/b", b"x", "t", ())
        await e.delete("home/b")
        rows = verifytool.verify_data(data, KEY)  # while the engine runs
        assert [(r.world, r.events, r.ok) for r in rows] == [
            ("home/a", 3, True),
            ("var/log/deletes", 2, True),
        ]
    bad = verifytool.verify_data(data, b"00" * 32)
    assert not any(r.ok for r in bad)
    assert [r.events for r in bad] == [3, 2]  # total events, though the walk broke at 0
    with pytest.raises(FileNotFoundError):
        verifytool.verify_data(tmp_path / "nothing", KEY)


async def test_durable_world_with_zero_events_has_sha256_etag(tmp_path: Path):
    data = tmp_path / "data"
    with Engine.open(EngineConfig(data=data, key=KEY, read_cache_max_entries=1)) as e:
        await e.put("home/z", b"zero", "t", ())
        with db(data) as c:
            c.execute("DELETE FROM events WHERE world='home/z'")
        await e.put("home/other", b"", "t", ())  # evicts home/z from the 1-entry cache
        w = e.read("home/z")
        assert w is not None and w.etag == "sha256-" + hashlib.sha256(b"zero").hexdigest()
        seen: list[str | None] = []
        assert (await e.delete("home/z", precondition=seen.append)).status == 204
        assert seen == [w.etag]
