"""POST stored as pieces with a running hash: bodies, ETags and chains stay exactly what a
whole-body rewrite would give, across folds, restarts (cold hash cache), PUT and DELETE."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import pytest
from elastik.server import audit, verifytool, worldstore
from elastik.server.engine import Engine
from elastik.server.model import EngineConfig

KEY = b"34" * 32


class Model:
    """Independent model of one durable world's chain (§14.3/14.4)."""

    def __init__(self, world: str) -> None:
        self.world = world
        self.body = b""
        self.ct = ""
        self.headers: tuple[tuple[str, str], ...] = ()
        self.prev = ""

    def _event(self, kind: str) -> str:
        meta = audit.meta_sha256(self.ct, self.headers)
        sha = hashlib.sha256(self.body).hexdigest()
        self.prev = audit.event_hmac(
            KEY, self.prev, kind, self.world, sha, len(self.body), self.ct, meta
        )
        return "hmac-" + self.prev

    def put(self, body: bytes, ct: str, headers: tuple[tuple[str, str], ...] = ()) -> str:
        self.body, self.ct, self.headers = body, ct, headers
        return self._event("put")

    def append(self, data: bytes) -> str:
        self.body += data
        return self._event("append")


def pieces(data: Path, world: str) -> int:
    with sqlite3.connect(data / "elastik.db") as c:
        row = c.execute("SELECT COUNT(*) FROM appended WHERE world=?", (world,)).fetchone()
        return int(row[0])


async def test_many_small_appends_match_the_model_across_folds(tmp_path: Path):
    data = tmp_path / "data"
    m = Model("home/log")
    with Engine.open(EngineConfig(data=data, key=KEY)) as e:
        base = b"start\n" + b"." * worldstore.PIECES_MIN_SIZE  # large enough for pieces
        assert (await e.put("home/log", base, "text/plain", ())).etag == m.put(base, "text/plain")
        for i in range(worldstore.MAX_PIECES * 2 + 5):
            line = b"reading %d\n" % i
            assert (await e.append("home/log", line)).etag == m.append(line)
        assert pieces(data, "home/log") < worldstore.MAX_PIECES
        w = e.read("home/log")
        assert w is not None and w.body == m.body
        v = await e.verify("home/log")
        assert v.outcome == "valid"
    with Engine.open(EngineConfig(data=data, key=KEY)) as e:  # cold hash cache
        assert (await e.append("home/log", b"after restart\n")).etag == m.append(b"after restart\n")
        w = e.read("home/log")
        assert w is not None and w.body == m.body
        assert e.usage().storage_used == len(m.body)
    assert all(r.ok for r in verifytool.verify_data(data, KEY))


async def test_large_appends_fold_by_size(tmp_path: Path):
    data = tmp_path / "data"
    m = Model("home/big")
    chunk = bytes(range(256)) * 1024  # 256 KiB
    with Engine.open(EngineConfig(data=data, key=KEY)) as e:
        await e.put("home/big", b"", "application/octet-stream", ())
        m.put(b"", "application/octet-stream")
        for _ in range(6):
            assert (await e.append("home/big", chunk)).etag == m.append(chunk)
        # 1.5 MiB appended onto an empty base: folded at least once by size.
        assert pieces(data, "home/big") < 6
        w = e.read("home/big")
        assert w is not None and w.body == m.body


async def test_put_and_delete_clear_pieces(tmp_path: Path):
    data = tmp_path / "data"
    with Engine.open(EngineConfig(data=data, key=KEY)) as e:
        await e.put("home/p", b"a" * worldstore.PIECES_MIN_SIZE, "t", ())
        for _ in range(3):
            await e.append("home/p", b"b")
        assert pieces(data, "home/p") == 3
        await e.put("home/p", b"new", "t", ())
        assert pieces(data, "home/p") == 0
        w = e.read("home/p")
        assert w is not None and w.body == b"new"
        await e.append("home/p", b"+")
        await e.delete("home/p")
        with sqlite3.connect(data / "elastik.db") as c:
            assert c.execute("SELECT COUNT(*) FROM appended").fetchone()[0] == 0
        assert e.usage().storage_used == 0


async def test_small_worlds_keep_their_whole_body_in_one_row(tmp_path: Path):
    data = tmp_path / "data"
    with Engine.open(EngineConfig(data=data, key=KEY)) as e:
        await e.put("home/s", b"alpha", "t", ())
        await e.append("home/s", b"+1")
        await e.append("home/s", b"+2")
        assert pieces(data, "home/s") == 0
        with sqlite3.connect(data / "elastik.db") as c:
            row = c.execute("SELECT body, size FROM worlds WHERE name='home/s'").fetchone()
        assert row == (b"alpha+1+2", 9)


async def test_concurrent_appends_to_one_world(tmp_path: Path):
    data = tmp_path / "data"
    with Engine.open(EngineConfig(data=data, key=KEY)) as e:
        await e.put("home/c", b"", "t", ())
        results = await asyncio.gather(*[e.append("home/c", b"%03d;" % i) for i in range(150)])
        w = e.read("home/c")
        assert w is not None and len(w.body) == 600
        assert w.etag in {r.etag for r in results}
        assert (await e.verify("home/c")).events == 151


async def test_tampered_piece_is_a_state_mismatch(tmp_path: Path):
    data = tmp_path / "data"
    with Engine.open(EngineConfig(data=data, key=KEY)) as e:
        base = b"b" * worldstore.PIECES_MIN_SIZE
        await e.put("home/t", base, "t", ())
        await e.append("home/t", b"piece")
        with sqlite3.connect(data / "elastik.db") as c:
            assert c.execute("UPDATE appended SET data=x'00'").rowcount == 1
        v = await e.verify("home/t")
        assert (v.outcome, v.break_at) == ("broken", "state")
        assert v.expected == "body-sha256-" + hashlib.sha256(base + b"piece").hexdigest()


@pytest.mark.parametrize("cached", [True, False])
async def test_append_read_your_write_with_and_without_cache(tmp_path: Path, cached: bool):
    data = tmp_path / "data"
    with Engine.open(
        EngineConfig(data=data, key=KEY, read_cache_max_entries=5000 if cached else 1)
    ) as e:
        await e.put("home/r", b"x", "t", ())
        await e.put("home/other", b"y", "t", ())  # evicts home/r when the cache holds 1
        for i in range(5):
            await e.append("home/r", b"%d" % i)
            w = e.read("home/r")
            assert w is not None and w.body == b"x" + b"".join(b"%d" % j for j in range(i + 1))
