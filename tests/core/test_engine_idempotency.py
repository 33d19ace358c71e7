"""Idempotency keys: replay without a new event or change, conflict (422), expiry,
durability across restarts, memory worlds, and keys inside one batch."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from elastik.server import mutations
from elastik.server.engine import Engine
from elastik.server.errors import IdempotencyConflict, NotFound
from elastik.server.model import Change, EngineConfig, Idempotency

KEY = b"12" * 32


def open_engine(data: Path, **kw: object) -> Engine:
    return Engine.open(EngineConfig(data=data, key=KEY, **kw))  # type: ignore[arg-type]


def event_count(data: Path, world: str) -> int:
    with sqlite3.connect(data / "elastik.db") as c:
        return int(c.execute("SELECT COUNT(*) FROM events WHERE world=?", (world,)).fetchone()[0])


async def test_same_key_same_fingerprint_replays_without_new_event(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        changes: list[Change] = []
        e.hooks.on_change.append(changes.append)
        idem = Idempotency("k1", "fp-a")
        r1 = await e.put("home/x", b"v", "t", (), idempotency=idem)
        r2 = await e.put("home/x", b"v", "t", (), idempotency=idem)
        assert (r1.status, r1.replayed) == (201, False)
        assert (r2.status, r2.etag, r2.replayed) == (201, r1.etag, True)
        assert event_count(data, "home/x") == 1
        assert len(changes) == 1
        stats = {s.name: s.value for s in e.pool_stats()}
        assert stats["idempotency_replays"] == 1


async def test_same_key_different_fingerprint_is_conflict(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await e.put("home/x", b"v", "t", (), idempotency=Idempotency("k", "fp-a"))
        with pytest.raises(IdempotencyConflict) as info:
            await e.put("home/x", b"other", "t", (), idempotency=Idempotency("k", "fp-b"))
        assert info.value.status == 422
        w = e.read("home/x")
        assert w is not None and w.body == b"v"
        assert event_count(data, "home/x") == 1


async def test_append_and_delete_replay(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await e.put("home/x", b"a", "t", ())
        ka, kd = Idempotency("ka", "fa"), Idempotency("kd", "fd")
        r1 = await e.append("home/x", b"b", idempotency=ka)
        r2 = await e.append("home/x", b"b", idempotency=ka)
        assert r2.replayed and r2.etag == r1.etag
        w = e.read("home/x")
        assert w is not None and w.body == b"ab"
        d1 = await e.delete("home/x", idempotency=kd)
        d2 = await e.delete("home/x", idempotency=kd)  # replayed, not 404
        assert (d1.status, d2.status, d2.replayed, d2.etag) == (204, 204, True, None)
        assert event_count(data, "var/log/deletes") == 2


async def test_failed_write_does_not_store_the_key(tmp_path: Path):
    with open_engine(tmp_path / "data") as e:
        k = Idempotency("k", "f")
        with pytest.raises(NotFound):
            await e.append("home/missing", b"x", idempotency=k)
        await e.put("home/missing", b"", "t", ())
        r = await e.append("home/missing", b"x", idempotency=k)
        assert not r.replayed


async def test_keys_survive_restart(tmp_path: Path):
    data = tmp_path / "data"
    k = Idempotency("durable", "f")
    with open_engine(data) as e:
        r1 = await e.put("home/x", b"v", "t", (), idempotency=k)
    with open_engine(data) as e:
        r2 = await e.put("home/x", b"v", "t", (), idempotency=k)
        assert r2.replayed and r2.etag == r1.etag


async def test_memory_worlds_use_durable_keys(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        k = Idempotency("mem", "f")
        a = await e.put("tmp/m", b"v", "t", (), idempotency=k)
        b = await e.put("tmp/m", b"v", "t", (), idempotency=k)
        assert b.replayed and b.etag == a.etag
        with pytest.raises(IdempotencyConflict):
            await e.put("tmp/m", b"v", "t", (), idempotency=Idempotency("mem", "g"))


async def test_expired_keys_count_as_absent_and_are_pruned(tmp_path: Path, monkeypatch):
    data = tmp_path / "data"
    with open_engine(data, idempotency_window_s=0.2) as e:
        k = Idempotency("old", "f")
        await e.put("home/x", b"v", "t", (), idempotency=k)
        await asyncio.sleep(0.3)
        r = await e.put("home/x", b"v", "t", (), idempotency=Idempotency("old", "different"))
        assert not r.replayed  # expired: a different request may use the key again
        monkeypatch.setattr(mutations, "IDEMPOTENCY_PRUNE_INTERVAL_S", 0.0)
        await asyncio.sleep(0.3)
        await e.put("home/y", b"", "t", ())
        pruned = {s.name: s.value for s in e.pool_stats()}["idempotency_pruned"]
        assert pruned >= 1
    with sqlite3.connect(data / "elastik.db") as c:
        assert c.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0] == 0


async def test_same_key_twice_in_one_batch_applies_once(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await e.put("home/x", b"", "t", ())
        k = Idempotency("batch", "f")
        results = await asyncio.gather(*[e.append("home/x", b"+", idempotency=k) for _ in range(8)])
        assert sum(not r.replayed for r in results) == 1
        assert len({r.etag for r in results}) == 1
        w = e.read("home/x")
        assert w is not None and w.body == b"+"
