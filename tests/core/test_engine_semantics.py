"""Engine semantics in-process, real SQLite in tmp_path: PUT/POST/DELETE, ETags, memory
worlds, preconditions, the delete ledger (D4), quotas, listing, usage and change hooks."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from elastik.server import audit
from elastik.server.engine import Engine
from elastik.server.errors import (
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Unauthorized,
)
from elastik.server.model import Change, EngineConfig

KEY = b"ab" * 32
FORM = "application/x-www-form-urlencoded"
LEDGER = "var/log/deletes"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
async def eng(tmp_path: Path) -> AsyncIterator[Engine]:
    e = Engine.open(EngineConfig(data=tmp_path / "data", key=KEY))
    yield e
    e.close()


def open_engine(tmp_path: Path, **kw: object) -> Engine:
    return Engine.open(EngineConfig(data=tmp_path / "data", key=KEY, **kw))  # type: ignore[arg-type]


async def test_put_creates_then_replaces_with_hmac_etag(eng: Engine):
    r1 = await eng.put("home/note", b"hello", FORM, ())
    assert r1.status == 201 and not r1.replayed
    assert r1.etag == "hmac-03907046cda1580d6af39876b32e585214f6bbbbf6e1c93f3bd8d6bd37636e93"
    r2 = await eng.put("home/note", b"hello", FORM, ())
    assert r2.status == 200 and r2.etag != r1.etag  # same body, new event, new ETag


async def test_put_replaces_body_type_and_headers(eng: Engine):
    await eng.put("home/h", b"one", "text/plain", (("cache-control", "no"), ("expires", "0")))
    await eng.put("home/h", b"two", "text/html", (("content-language", "fr"),))
    w = eng.read("home/h")
    assert w is not None
    assert (w.body, w.content_type, w.headers) == (
        b"two",
        "text/html",
        (("content-language", "fr"),),
    )
    assert w.durable


async def test_headers_come_back_sorted_by_name(eng: Engine):
    await eng.put("home/s", b"", "t", (("x-z", "1"), ("cache-control", "c")))
    w = eng.read("home/s")
    assert w is not None and w.headers == (("cache-control", "c"), ("x-z", "1"))


async def test_post_appends_and_keeps_type_and_headers(eng: Engine):
    await eng.put("home/a", b"ab", "text/csv", (("cache-control", "x"),))
    r = await eng.append("home/a", b"cd")
    assert r.status == 200 and r.etag and r.etag.startswith("hmac-")
    w = eng.read("home/a")
    assert w is not None
    assert (w.body, w.content_type, w.headers) == (b"abcd", "text/csv", (("cache-control", "x"),))
    assert w.etag == r.etag


async def test_post_to_missing_world_is_404_and_creates_nothing(eng: Engine):
    with pytest.raises(NotFound):
        await eng.append("home/nope", b"x")
    with pytest.raises(NotFound):
        await eng.append("tmp/nope", b"x")
    assert eng.read("home/nope") is None and eng.read("tmp/nope") is None


async def test_empty_post_durable_changes_etag_memory_keeps_it(eng: Engine):
    d1 = await eng.put("home/e", b"x", "t", ())
    d2 = await eng.append("home/e", b"")
    assert d2.etag != d1.etag
    m1 = await eng.put("tmp/e", b"x", "t", ())
    m2 = await eng.append("tmp/e", b"")
    assert m1.etag == m2.etag == "sha256-" + sha(b"x")


async def test_memory_etag_depends_on_body_only(eng: Engine):
    a = await eng.put("dev/a", b"same", "text/plain", ())
    b = await eng.put("sys/b", b"same", "image/png", (("cache-control", "x"),))
    assert a.etag == b.etag == "sha256-" + sha(b"same")
    w = eng.read("sys/b")
    assert w is not None and not w.durable and w.headers == (("cache-control", "x"),)


async def test_memory_world_append_and_delete(eng: Engine):
    await eng.put("tmp/x", b"ab", "t", ())
    r = await eng.append("tmp/x", b"c")
    assert r.etag == "sha256-" + sha(b"abc")
    assert (await eng.delete("tmp/x")).status == 204
    assert eng.read("tmp/x") is None


async def test_delete_removes_world_and_chain_then_reput_starts_new_chain(
    eng: Engine, tmp_path: Path
):
    first = await eng.put("home/note", b"hello", FORM, ())
    await eng.append("home/note", b"!")
    r = await eng.delete("home/note")
    assert (r.status, r.etag) == (204, None)
    assert eng.read("home/note") is None
    again = await eng.put("home/note", b"hello", FORM, ())
    assert again.status == 201 and again.etag == first.etag
    db = sqlite3.connect(tmp_path / "data" / "elastik.db")
    n = db.execute("SELECT COUNT(*) FROM events WHERE world='home/note'").fetchone()[0]
    assert n == 1


async def test_delete_missing_is_404(eng: Engine):
    with pytest.raises(NotFound):
        await eng.delete("home/none")
    with pytest.raises(NotFound):
        await eng.delete("tmp/none")


async def test_ledger_created_empty_and_records_both_deletes(eng: Engine, tmp_path: Path):
    assert eng.read(LEDGER) is None
    await eng.put("home/note", b"hello", FORM, ())
    await eng.delete("home/note")
    await eng.put("tmp/m", b"x", "", ())
    await eng.delete("tmp/m")
    led = eng.read(LEDGER)
    assert led is not None and led.body == b"" and led.content_type == "application/octet-stream"
    # Reference values for key "ab"*32 and exactly this sequence (measured on 8.3.0).
    assert led.etag == "hmac-42bf571f054a6cd9abf33709869897701a8073a8d650218f20849b2cea765498"
    db = sqlite3.connect(tmp_path / "data" / "elastik.db")
    rows = db.execute(
        "SELECT event_type, target, body_sha256, size, content_type, meta_sha256, prev_hmac,"
        " hmac FROM events WHERE world=? ORDER BY id",
        (LEDGER,),
    ).fetchall()
    assert [r[:2] for r in rows] == [
        ("delete_intent", "home/note"),
        ("delete_commit", "home/note"),
        ("delete_intent", "tmp/m"),
        ("delete_commit", "tmp/m"),
    ]
    assert rows[0][2] == sha(b"hello") and rows[2][2] == sha(b"x")
    assert all(r[3] == 0 and r[4] == "" and r[5] == audit.DELETE_META_SHA256 for r in rows)
    assert rows[0][6] == "" and all(rows[i][6] == rows[i - 1][7] for i in range(1, 4))
    assert rows[0][7] == "820b3687e12298db454a19e634ec4da822e2e662efc3c964751f01ae05ab3817"
    v = await eng.verify(LEDGER)
    assert (v.outcome, v.events) == ("valid", 4)


async def test_ledger_is_append_only_for_put_post_delete_d4(eng: Engine):
    await eng.put("home/x", b"1", "t", ())
    await eng.delete("home/x")
    for call in (
        eng.put(LEDGER, b"x", "t", ()),
        eng.append(LEDGER, b"x"),
        eng.delete(LEDGER),
    ):
        with pytest.raises(Unauthorized) as info:
            await call
        assert info.value.body == b"auth required: delete ledger is append-only\n"
        assert info.value.status == 401
    led = eng.read(LEDGER)
    assert led is not None and led.body == b""
    assert (await eng.verify(LEDGER)).events == 2


async def test_precondition_sees_current_token_and_aborts_only_that_write(eng: Engine):
    seen: list[str | None] = []

    def record(tok: str | None) -> None:
        seen.append(tok)

    def refuse(tok: str | None) -> None:
        raise PreconditionFailed()

    await eng.put("home/p", b"1", "t", (), precondition=record)
    r = await eng.put("home/p", b"2", "t", (), precondition=record)
    assert seen[0] is None and seen[1] is not None and seen[1].startswith("hmac-")
    with pytest.raises(PreconditionFailed):
        await eng.put("home/p", b"3", "t", (), precondition=refuse)
    with pytest.raises(PreconditionFailed):
        await eng.append("home/p", b"3", precondition=refuse)
    with pytest.raises(PreconditionFailed):
        await eng.delete("home/p", precondition=refuse)
    w = eng.read("home/p")
    assert w is not None and w.body == b"2" and w.etag == r.etag
    await eng.put("tmp/p", b"m", "t", ())
    await eng.append("tmp/p", b"", precondition=record)
    assert seen[-1] == "sha256-" + sha(b"m")


async def test_failing_op_in_a_batch_does_not_abort_the_others(eng: Engine):
    await eng.put("home/base", b"x", "t", ())

    def refuse(tok: str | None) -> None:
        raise PreconditionFailed()

    results = await asyncio.gather(
        *[
            eng.put(f"home/b{i}", b"v", "t", (), precondition=refuse if i % 3 == 0 else None)
            for i in range(30)
        ],
        return_exceptions=True,
    )
    for i, res in enumerate(results):
        if i % 3 == 0:
            assert isinstance(res, PreconditionFailed)
            assert eng.read(f"home/b{i}") is None
        else:
            assert not isinstance(res, BaseException) and res.status == 201
            assert eng.read(f"home/b{i}") is not None


async def test_precondition_checked_before_quota(tmp_path: Path):
    e = open_engine(tmp_path, max_storage_bytes=3)

    def refuse(tok: str | None) -> None:
        raise PreconditionFailed()

    try:
        with pytest.raises(PreconditionFailed):
            await e.put("home/q", b"toolarge", "t", (), precondition=refuse)
        with pytest.raises(NotFound):
            await e.append("home/q", b"toolarge")
    finally:
        e.close()


async def test_post_result_over_max_world_bytes_is_413(tmp_path: Path):
    e = open_engine(tmp_path, max_world_bytes=10)
    try:
        await e.put("home/w", b"123456", "t", ())
        with pytest.raises(PayloadTooLarge) as info:
            await e.append("home/w", b"12345")
        assert info.value.body == b"payload too large: max bytes 10\n"
        await e.append("home/w", b"1234")  # exactly 10 fits
        await e.put("tmp/w", b"123456", "t", ())
        with pytest.raises(PayloadTooLarge):
            await e.append("tmp/w", b"12345")
        w = e.read("tmp/w")
        assert w is not None and w.body == b"123456"
    finally:
        e.close()


async def test_memory_quota_is_413_with_memory_limit(tmp_path: Path):
    e = open_engine(tmp_path, max_memory_bytes=10)
    try:
        await e.put("tmp/a", b"12345678", "t", ())
        with pytest.raises(PayloadTooLarge) as info:
            await e.put("tmp/b", b"123", "t", ())
        assert info.value.body == b"payload too large: max bytes 10\n"
        await e.put("tmp/a", b"1234567890", "t", ())  # replacement counts the delta only
        await e.delete("tmp/a")
        await e.put("tmp/b", b"123", "t", ())  # delete freed the bytes
        assert e.usage().memory_used == 3
    finally:
        e.close()


async def test_storage_quota_507_counts_delta_and_delete_frees(tmp_path: Path):
    e = open_engine(tmp_path, max_storage_bytes=10)
    try:
        await e.put("home/y", b"12345678", "t", ())
        with pytest.raises(InsufficientStorage) as info:
            await e.put("home/z", b"12345", "t", ())
        err = info.value
        assert (err.current, err.quota, err.needed) == (8, 10, 3)
        assert err.status == 507
        assert (
            err.body
            == b"storage quota exceeded: current 8 bytes, quota 10 bytes, need 3 more bytes\n"
        )
        with pytest.raises(InsufficientStorage) as info:
            await e.append("home/y", b"123")
        assert info.value.needed == 1
        await e.put("home/y", b"abcdefgh", "t", ())  # same size at a full quota
        await e.put("home/y", b"abcdefghij", "t", ())  # exactly the quota
        await e.delete("home/y")
        assert e.usage().storage_used == 0
        await e.put("home/z", b"12345", "t", ())
    finally:
        e.close()


async def test_usage_and_listing(eng: Engine):
    await eng.put("home/b", b"22", "t", ())
    await eng.put("home/a", b"1", "t", ())
    await eng.put("tmp/m", b"333", "t", ())
    await eng.put("home/é", b"4444", "t", ())
    await eng.put("home/Z", b"", "t", ())
    await eng.put("home/t", b"x", "t", ())
    await eng.delete("home/t")
    names = [n for n, _ in eng.list_worlds()]
    assert names == sorted(names, key=lambda n: n.encode())
    assert dict(eng.list_worlds()) == {
        "home/Z": 0,
        "home/a": 1,
        "home/b": 2,
        "home/é": 4,
        "tmp/m": 3,
        LEDGER: 0,
    }
    u = eng.usage()
    assert (u.storage_used, u.memory_used, u.worlds, u.storage_quota) == (7, 3, 5, 0)
    assert u.memory_limit == 256 * 1024 * 1024


async def test_storage_usage_recomputed_at_startup(tmp_path: Path):
    e = open_engine(tmp_path)
    await e.put("home/a", b"12345", "t", ())
    await e.put("home/b", b"123", "t", ())
    await e.put("tmp/c", b"123", "t", ())
    await e.delete("home/b")
    e.close()
    e = open_engine(tmp_path)
    try:
        u = e.usage()
        assert (u.storage_used, u.memory_used, u.worlds) == (5, 0, 1)
        assert e.read("tmp/c") is None  # memory worlds vanish on restart
        w = e.read("home/a")
        assert w is not None and w.body == b"12345"
    finally:
        e.close()


async def test_change_hooks_in_commit_order_without_ledger_or_failures(eng: Engine):
    changes: list[Change] = []
    eng.hooks.on_change.append(changes.append)
    p = await eng.put("home/c", b"1", "t", ())
    a = await eng.append("home/c", b"2")
    with pytest.raises(NotFound):
        await eng.append("home/missing", b"x")
    m = await eng.put("tmp/c", b"1", "t", ())
    await eng.delete("home/c")
    assert changes == [
        Change("put", "home/c", p.etag),
        Change("post", "home/c", a.etag),
        Change("put", "tmp/c", m.etag),
        Change("delete", "home/c", None),
    ]


async def test_concurrent_writes_emit_changes_in_commit_order(eng: Engine):
    changes: list[Change] = []
    eng.hooks.on_change.append(changes.append)
    await eng.put("home/seq", b"", "t", ())
    results = await asyncio.gather(*[eng.append("home/seq", b"%d," % i) for i in range(50)])
    w = eng.read("home/seq")
    assert w is not None
    order = [int(x) for x in w.body.decode().rstrip(",").split(",")]
    assert sorted(order) == list(range(50))
    # The ETag sequence of the change stream is the chain order of the appends.
    etags = [c.etag for c in changes[1:]]
    assert etags[-1] == w.etag
    assert set(etags) == {r.etag for r in results}
    v = await eng.verify("home/seq")
    assert (v.outcome, v.events) == ("valid", 51)


async def test_a_failing_hook_does_not_break_others(eng: Engine):
    got: list[str] = []

    def bad(_c: Change) -> None:
        raise RuntimeError("boom")

    eng.hooks.on_change.extend([bad, lambda c: got.append(c.world)])
    await eng.put("home/h", b"", "t", ())
    assert got == ["home/h"]


async def test_read_serves_written_state_from_cache_and_from_disk(tmp_path: Path):
    e = open_engine(tmp_path, read_cache_max_entries=2)
    try:
        for i in range(5):
            await e.put(f"home/r{i}", b"v%d" % i, "t", ())
        for i in range(5):
            w = e.read(f"home/r{i}")
            assert w is not None and w.body == b"v%d" % i
        stats = {s.name: s.value for s in e.pool_stats()}
        assert stats["read_cache_entries"] <= 2
        assert stats["read_cache_misses"] >= 3
        assert stats["read_cache_max_entries"] == 2
        assert e.read("home/none") is None
    finally:
        e.close()


async def test_pool_stats_shape(eng: Engine):
    stats = eng.pool_stats()
    names = [s.name for s in stats]
    assert names[:9] == [
        "read_cache_entries",
        "read_cache_tombstones",
        "read_cache_hits",
        "read_cache_misses",
        "read_cache_capped",
        "read_cache_evictions",
        "read_cache_open_fails",
        "read_cache_max_entries",
        "ledger_writer_inits",
    ]
    assert len(set(names)) == len(names)
    assert all(s.kind in ("snapshot", "counter") and s.value >= 0 for s in stats)


async def test_writes_after_close_fail_and_close_is_idempotent(tmp_path: Path):
    from elastik.server.errors import StorageFailure

    e = open_engine(tmp_path)
    await e.put("home/x", b"1", "t", ())
    e.close()
    e.close()
    with pytest.raises(StorageFailure):
        await e.put("home/x", b"2", "t", ())


async def test_hooks_run_on_the_event_loop_thread(eng: Engine):
    import threading

    threads: list[int] = []
    eng.hooks.on_change.append(lambda c: threads.append(threading.get_ident()))
    await asyncio.gather(*[eng.put(f"home/t{i}", b"", "t", ()) for i in range(5)])
    assert threads == [threading.get_ident()] * 5


async def test_cancelled_waiter_still_gets_its_write_applied(eng: Engine):
    changes: list[Change] = []
    eng.hooks.on_change.append(changes.append)
    task = asyncio.create_task(eng.put("home/cancel", b"v", "t", ()))
    await asyncio.sleep(0)  # submitted to the writer
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eng.put("home/after", b"", "t", ())  # commits after the cancelled one
    w = eng.read("home/cancel")
    assert w is not None and w.body == b"v"
    assert [c.world for c in changes] == ["home/cancel", "home/after"]


async def test_close_drains_queued_writes(tmp_path: Path):
    e = open_engine(tmp_path)
    tasks = [asyncio.create_task(e.put(f"home/q{i}", b"%d" % i, "t", ())) for i in range(50)]
    await asyncio.sleep(0)  # all submitted, none awaited yet
    e.close()
    results = await asyncio.gather(*tasks)
    assert [r.status for r in results] == [201] * 50
    e = open_engine(tmp_path)
    try:
        assert all(e.read(f"home/q{i}") is not None for i in range(50))
    finally:
        e.close()


async def test_reading_a_tampered_state_serves_it_and_logs(tmp_path: Path, caplog):
    import logging

    e = open_engine(tmp_path, read_cache_max_entries=1)
    try:
        await e.put("home/d3", b"true", "t", ())
        db = sqlite3.connect(tmp_path / "data" / "elastik.db", isolation_level=None)
        db.execute("UPDATE worlds SET body=x'66616c7365' WHERE name='home/d3'")
        db.close()
        await e.put("home/evict", b"", "t", ())
        with caplog.at_level(logging.WARNING, logger="elastik.server.engine"):
            w = e.read("home/d3")
        assert w is not None and w.body == b"false"
        assert any("does not match its latest audit event" in r.message for r in caplog.records)
        assert "home/d3" in caplog.text
    finally:
        e.close()


async def test_long_and_unicode_names_round_trip_d2(eng: Engine):
    names = ["home/" + "a" * 1019, "home/caf\u00e9", "home/cafe\u0301", "home/\U0001f600/x"]
    for n in names:
        assert (await eng.put(n, n.encode(), "t", ())).status == 201
    for n in names:
        w = eng.read(n)
        assert w is not None and w.body == n.encode()
        assert (await eng.verify(n)).outcome == "valid"
    listed = [name for name, _ in eng.list_worlds()]
    assert sorted(names, key=str.encode) == listed  # NFC and NFD stay distinct, bytewise order


async def test_reads_after_close_are_storage_failures(tmp_path: Path, caplog):
    from elastik.server.errors import StorageFailure

    e = open_engine(tmp_path, read_cache_max_entries=1)
    await e.put("home/a", b"", "t", ())
    await e.put("home/b", b"", "t", ())
    assert e.read("home/a") is not None  # opens this thread's reader connection
    e.close()
    for call in (lambda: e.read("home/b"), e.list_worlds):
        with pytest.raises(StorageFailure):
            call()
    assert "Traceback" not in caplog.text


async def test_plain_memory_writes_skip_the_writer_thread(eng: Engine):
    before = {s.name: s.value for s in eng.pool_stats()}
    await eng.put("tmp/fast", b"1", "t", ())
    await eng.append("tmp/fast", b"2")
    after = {s.name: s.value for s in eng.pool_stats()}
    assert after["memory_fast_writes"] - before["memory_fast_writes"] == 2
    assert after["writer_ops"] == before["writer_ops"]
    w = eng.read("tmp/fast")
    assert w is not None and w.body == b"12"


async def test_memory_writes_queue_behind_an_inflight_memory_delete(tmp_path: Path):
    e = open_engine(tmp_path, max_memory_bytes=10)
    try:
        await e.put("tmp/a", b"12345678", "t", ())
        # Submitted together: the delete goes to the writer (ledger), so the writes after it
        # must not overtake it, neither for the same world nor for the memory quota.
        d, p, q = await asyncio.gather(
            e.delete("tmp/a"), e.put("tmp/a", b"new", "t", ()), e.put("tmp/b", b"1234567", "t", ())
        )
        assert (d.status, p.status, q.status) == (204, 201, 201)
        w = e.read("tmp/a")
        assert w is not None and w.body == b"new"
        assert e.usage().memory_used == 10
        # Once the delete is delivered, plain writes take the fast path again.
        fast = {s.name: s.value for s in e.pool_stats()}["memory_fast_writes"]
        await e.put("tmp/c", b"", "t", ())
        assert {s.name: s.value for s in e.pool_stats()}["memory_fast_writes"] == fast + 1
    finally:
        e.close()
