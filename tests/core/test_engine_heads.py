"""The writer's cache of world heads (current row + tail event) and its batched idempotency
lookups: whatever the writer remembers must equal what the database holds, a change made
behind its back must be noticed, and keys inside and across batches behave as one by one."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest
from elastik.server import verifytool, worldstore
from elastik.server.engine import Engine
from elastik.server.errors import IdempotencyConflict, NotFound, StorageFailure
from elastik.server.model import EngineConfig, Idempotency

KEY = b"34" * 32


def open_engine(data: Path) -> Engine:
    return Engine.open(EngineConfig(data=data, key=KEY))


def assert_heads_match_database(e: Engine, data: Path) -> int:
    heads = dict(e._mut._heads)
    with sqlite3.connect(data / "elastik.db") as c:
        for world, head in heads.items():
            assert worldstore.load(c, world, with_body=False) == head, world
    return len(heads)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_cached_heads_equal_the_stored_rows_after_random_writes(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    data = tmp_path / "data"
    worlds = [f"home/h/{i}" for i in range(6)]
    with open_engine(data) as e:
        for _ in range(40):
            ops = []
            for _ in range(rng.randint(1, 12)):  # concurrent ops: one or a few batches
                w = rng.choice(worlds)
                kind = rng.choice(["put", "put", "append", "append", "append", "delete"])
                hdrs = (("x-tag", str(rng.randint(0, 2))),) if rng.random() < 0.3 else ()
                if kind == "put":
                    ops.append(e.put(w, rng.randbytes(rng.randint(0, 300)), "text/plain", hdrs))
                elif kind == "append":
                    ops.append(e.append(w, rng.randbytes(rng.randint(1, 5000))))
                else:
                    ops.append(e.delete(w))
            for r in await asyncio.gather(*ops, return_exceptions=True):
                assert not isinstance(r, Exception) or isinstance(r, NotFound), r
        assert assert_heads_match_database(e, data) > 0
        for w in worlds:  # and every chain the cache helped to extend verifies
            if e.read(w) is not None:
                assert (await e.verify(w)).outcome == "valid", w
    # Every chain on disk, the delete ledger included.
    rows = verifytool.verify_data(data, KEY)
    assert rows and all(r.ok for r in rows)
    with sqlite3.connect(data / "elastik.db") as c:
        ids = [r[0] for r in c.execute("SELECT id FROM events ORDER BY rowid")]
    assert ids == sorted(set(ids))


async def test_change_behind_the_writers_back_drops_the_cache(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        await e.put("home/a", b"1", "text/plain", ())
        await e.put("home/b", b"1", "text/plain", ())
        assert set(e._mut._heads) == {"home/a", "home/b"}
        with sqlite3.connect(data / "elastik.db") as c:  # another connection commits
            c.execute("UPDATE events SET size=7 WHERE world='home/a'")
        with pytest.raises(StorageFailure):  # the tampered tail is re-hashed, not trusted
            await e.put("home/a", b"2", "text/plain", ())
        await e.put("home/b", b"2", "text/plain", ())  # reloaded from the database
        assert set(e._mut._heads) == {"home/b"}
        assert assert_heads_match_database(e, data) == 1


async def test_batched_key_lookups_replay_conflict_and_apply_like_one_by_one(tmp_path: Path):
    data = tmp_path / "data"
    with open_engine(data) as e:
        first = await e.put("home/k", b"v", "t", (), idempotency=Idempotency("old", "fp"))
        # One gather: a key stored by an earlier batch (replayed), the same key with another
        # fingerprint (conflict), fresh keys, and one fresh key used twice.
        results = await asyncio.gather(
            e.put("home/k", b"v", "t", (), idempotency=Idempotency("old", "fp")),
            e.put("home/k", b"w", "t", (), idempotency=Idempotency("old", "other")),
            *[
                e.put(f"home/n{i}", b"x", "t", (), idempotency=Idempotency(f"n{i}", "f"))
                for i in range(5)
            ],
            e.append("home/k", b"+", idempotency=Idempotency("twice", "a")),
            e.append("home/k", b"+", idempotency=Idempotency("twice", "a")),
            return_exceptions=True,
        )
        replay, conflict, *fresh, app1, app2 = results
        assert not isinstance(replay, BaseException)
        assert replay.replayed and replay.etag == first.etag
        assert isinstance(conflict, IdempotencyConflict)
        assert all(not isinstance(r, BaseException) and r.status == 201 for r in fresh)
        assert not isinstance(app1, BaseException) and not isinstance(app2, BaseException)
        assert (app1.replayed, app2.replayed) == (False, True) and app1.etag == app2.etag
        w = e.read("home/k")
        assert w is not None and w.body == b"v+"
