"""StoreAndForward in process, over the real core client and a real core process.

"Core down" is a real refused connection: the core's port before it started or after it
stopped. Counters come from ``stats()`` and the CLI reads the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.core_client import CoreClient
from gateway.flow import OutboxFull, Request, UpstreamUnavailable
from gateway.forwarder import StoreAndForward, retryable
from gateway.outbox import OutboxConfig, OutboxLocked
from gateway.outbox_cli import main as cli
from tests.gateway.outbox.support import http_get, pick_core
from tests.support import servers

AUTH = {"authorization": "Bearer w"}
FAST = {"backoff_min_s": 0.05, "backoff_max_s": 0.2, "replay_rate": 5000}


@pytest.fixture(scope="module")
def shared_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Proc]:
    proc = pick_core(tmp_path_factory.mktemp("core")).start()
    yield proc
    proc.stop()


def saf(url: str, state: Path, **cfg: Any) -> StoreAndForward:
    return StoreAndForward(CoreClient(url, timeout=10), state, OutboxConfig(**{**FAST, **cfg}))


def put(path: str, body: bytes, **headers: str) -> Request:
    return Request("PUT", path, body, {**AUTH, **headers})


def post(path: str, body: bytes, **headers: str) -> Request:
    return Request("POST", path, body, {**AUTH, **headers})


async def drained(s: StoreAndForward, timeout: float = 60) -> dict[str, Any]:
    for _ in range(int(timeout / 0.05)):
        st = s.stats()
        if st["depth"] == 0 and st["inflight_replays"] == 0:
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"not drained: {s.stats()}")


def status_json(state: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert cli(["status", "--state-dir", str(state), "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


async def test_passthrough_writes_answer_from_core_and_touch_no_disk(shared_core, tmp_path):
    async with saf(shared_core.url, tmp_path / "s") as s:
        r = await s.send(put("/home/pt/a", b"x"))
        assert r.status == 201
        for i in range(20):
            r = await s.send(post("/home/pt/a", b"%d" % i))
            assert r.status == 200 and r.headers["etag"].startswith('"hmac-')
        await asyncio.sleep(1.3)  # a housekeeping tick: counters alone cause no write
        st = s.stats()
        assert st["passthrough_total"] == 21
        assert st["store_ops"] == 0 and st["group_commits"] == 0  # no outbox write at all
        assert st["depth"] == 0
        assert (await s.send(Request("GET", "/home/pt/a"))).body == b"x" + b"".join(
            b"%d" % i for i in range(20)
        )


async def test_front_door_idempotency_key_is_forwarded_on_passthrough(shared_core, tmp_path):
    async with saf(shared_core.url, tmp_path / "s") as s:
        first = await s.send(put("/home/pt/key", b"v", **{"idempotency-key": "dev-7-1"}))
        again = await s.send(put("/home/pt/key", b"v", **{"idempotency-key": "dev-7-1"}))
    assert first.status == again.status == 201
    assert again.headers.get("idempotency-replayed") == "true"
    assert again.headers["etag"] == first.headers["etag"]
    _, headers, _ = http_get(shared_core.url, "/proc/audit/home/pt/key/verify")
    assert headers["x-audit-events"] == "1"


async def test_core_down_writes_get_202_once_durable_reads_raise_then_replay_in_order(
    tmp_path, capsys
):
    core = pick_core(tmp_path)  # not started yet: its port refuses connections
    state = tmp_path / "s"
    async with saf(core.url, state) as s:
        acks = [await s.send(put("/home/q/a", b"0\n", **{"idempotency-key": "front-1"}))]
        acks += await asyncio.gather(
            *(s.send(post("/home/q/a", b"%d\n" % i)) for i in range(1, 200))
        )
        assert {r.status for r in acks} == {202}
        assert acks[0].headers["idempotency-key"] == "front-1"  # the front door's key is kept
        assert len({r.headers["idempotency-key"] for r in acks}) == 200  # others minted, unique
        with pytest.raises(UpstreamUnavailable):
            await s.send(Request("GET", "/home/q/a"))
        st = s.stats()
        assert st["depth"] == 200 and st["online"] == 0 and st["queued_total"] == 200
        assert st["group_commits"] < 200  # concurrent appends share transactions
        status = status_json(state, capsys)  # the CLI reads it while the gateway runs
        assert status["running"] is True and status["depth"] == 200
        assert status["paths"][0]["path"] == "/home/q/a" and status["paths"][0]["entries"] == 200
        capsys.readouterr()
        assert cli(["list", "--state-dir", str(state), "--json", "--limit", "1"]) == 0
        listed = json.loads(capsys.readouterr().out)["items"]
        assert listed[0]["idempotency_key"] == "front-1"
        assert listed[0]["header_names"] == ["authorization", "idempotency-key"]
        await asyncio.to_thread(core.start)
        try:
            st = await drained(s)
            assert st["replayed_total"] == 200 and st["online"] == 1
            assert st["prefetched_bytes"] == 0  # bodies read ahead were all used
            _, _, body = http_get(core.url, "/home/q/a")
            assert body == b"".join(b"%d\n" % i for i in range(200))
        finally:
            core.stop()
    assert status_json(state, capsys)["running"] is False


async def test_new_writes_queue_behind_a_path_that_keeps_failing_and_other_paths_flow(
    tmp_path, capsys
):
    # A storage quota makes one big write fail with 507 for as long as it is retried.
    core = pick_core(tmp_path, extra={"ELASTIK_MAX_STORAGE_BYTES": "100000"}).start()
    try:
        state = tmp_path / "s"
        async with saf(core.url, state, backoff_min_s=0.2, backoff_max_s=0.5) as s:
            r = await s.send(put("/home/hol/big", b"x" * 150_000))
            assert r.status == 202  # 507 is retryable: queued, not refused
            behind = await s.send(put("/home/hol/big", b"small"))
            assert behind.status == 202  # must not overtake the queued write
            for i in range(20):  # another path is not blocked by the failing one
                assert (await s.send(put(f"/home/hol/other{i}", b"ok"))).status == 201
            await asyncio.sleep(1.0)
            st = s.stats()
            assert st["replay_retries_total"] >= 1 and st["depth"] == 2
            assert st["online"] == 1 and st["dead_total"] == 0
            capsys.readouterr()
            assert cli(["list", "--state-dir", str(state), "--json"]) == 0
            items = json.loads(capsys.readouterr().out)["items"]
            assert items[0]["last_status"] == 507 and items[0]["attempts"] >= 1
            assert items[1]["last_status"] is None  # waits behind, never sent
            assert http_get(core.url, "/home/hol/big")[0] == 404  # order kept: nothing applied
    finally:
        core.stop()


async def test_poison_write_4xx_becomes_dead_letter_with_answer_and_others_replay(tmp_path, capsys):
    core = pick_core(tmp_path)
    state = tmp_path / "s"
    async with saf(core.url, state) as s:
        assert (await s.send(post("/home/poison/missing", b"x"))).status == 202  # 404 later
        assert (await s.send(put("/home/poison/ok", b"fine"))).status == 202
        assert (await s.send(post("/home/poison/ok", b"+"))).status == 202
        await asyncio.to_thread(core.start)
        try:
            st = await drained(s)
            assert st["dead_total"] == 1 and st["replayed_total"] == 2
            assert http_get(core.url, "/home/poison/ok")[2] == b"fine+"
        finally:
            core.stop()
    status = status_json(state, capsys)
    assert status["dead_letters"] == 1 and status["dead_by_reason"] == {"rejected": 1}
    assert status["counters"]["dead_total"] == 1  # counters survive in the database
    capsys.readouterr()
    assert cli(["list", "--dead", "--state-dir", str(state), "--json"]) == 0
    dead = json.loads(capsys.readouterr().out)["items"]
    assert dead[0]["path"] == "/home/poison/missing" and dead[0]["status"] == 404
    assert "world not found" in dead[0]["response"]


async def test_outbox_survives_restart_and_replays_with_same_keys(tmp_path):
    core = pick_core(tmp_path)
    state = tmp_path / "s"
    async with saf(core.url, state) as s:
        acks = [await s.send(post("/home/rs/a", b"%d\n" % i)) for i in range(5)]
    keys = [a.headers["idempotency-key"] for a in acks]
    await asyncio.to_thread(core.start)
    try:
        r = await CoreClient(core.url).send(put("/home/rs/a", b""))
        assert r.status == 201
        # Pretend the first entry was applied before a crash: the core knows its key.
        client = CoreClient(core.url)
        first = await client.send(post("/home/rs/a", b"0\n", **{"idempotency-key": keys[0]}))
        await client.close()
        assert first.status == 200
        async with saf(core.url, state) as s:
            st = await drained(s)
            assert st["replayed_total"] == 5
        assert http_get(core.url, "/home/rs/a")[2] == b"0\n1\n2\n3\n4\n"  # 0 applied once
    finally:
        core.stop()


async def test_second_gateway_on_same_state_dir_is_refused(tmp_path):
    async with saf("http://127.0.0.1:9", tmp_path / "s"):
        with pytest.raises(OutboxLocked, match="in use"):
            await saf("http://127.0.0.1:9", tmp_path / "s").start()


async def test_send_after_close_raises_upstream_unavailable(tmp_path):
    s = await saf("http://127.0.0.1:9", tmp_path / "s").start()
    await s.close()
    with pytest.raises(UpstreamUnavailable):
        await s.send(put("/home/x", b""))


def test_only_5xx_408_429_are_retried():
    assert [s for s in (200, 201, 204, 400, 401, 404, 408, 409, 412, 413, 422, 429, 500, 503, 507)
            if retryable(s)] == [408, 429, 500, 503, 507]  # fmt: skip


async def test_write_larger_than_outbox_is_refused_and_counted(tmp_path):
    async with saf("http://127.0.0.1:9", tmp_path / "s", max_bytes=1000) as s:
        with pytest.raises(OutboxFull):
            await s.send(put("/home/big", b"x" * 2000))
        assert s.stats()["rejected_total"] == 1 and s.stats()["depth"] == 0


async def test_outbox_files_are_private_to_the_gateway_user(tmp_path):
    state = tmp_path / "s"
    async with saf("http://127.0.0.1:9", state) as s:
        assert (await s.send(put("/home/secret", b"x"))).status == 202
        for name in ("outbox.db", "outbox.db-wal", "outbox.lock"):
            assert (state / name).stat().st_mode & 0o077 == 0, name  # holds Authorization


async def test_replay_rate_bounds_the_replay_and_live_writes_pass_through_meanwhile(tmp_path):
    import time

    core = pick_core(tmp_path)
    async with saf(core.url, tmp_path / "s", replay_rate=10, replay_concurrency=4) as s:
        for i in range(60):
            assert (await s.send(put(f"/home/rate/q{i % 6}", b"%d" % i))).status == 202
        await asyncio.to_thread(core.start)
        try:
            t0 = time.monotonic()
            while not s.stats()["online"]:  # the next probe finds the core
                await asyncio.sleep(0.01)
            live = [await s.send(put(f"/home/rate/live{i}", b"x")) for i in range(20)]
            await asyncio.sleep(1.0)
            replayed, elapsed = s.stats()["replayed_total"], time.monotonic() - t0
            # Token bucket: at most the 100 ms burst plus rate x elapsed, whatever the speed.
            assert replayed <= 1 + 10 * elapsed + 1, (replayed, elapsed)
            assert replayed >= 1 and s.stats()["depth"] > 0
            assert {r.status for r in live} == {201}  # not queued behind the backlog
        finally:
            core.stop()


async def test_corrupt_outbox_refuses_to_start_and_is_left_untouched(tmp_path):
    import sqlite3

    state = tmp_path / "s"
    state.mkdir()
    (state / "outbox.db").write_bytes(b"not a database at all" * 200)
    with pytest.raises(sqlite3.DatabaseError):
        await saf("http://127.0.0.1:9", state).start()
    assert (state / "outbox.db").read_bytes() == b"not a database at all" * 200
    # The lock was released: once the file is moved away the gateway starts.
    (state / "outbox.db").rename(state / "outbox.db.bad")
    async with saf("http://127.0.0.1:9", state) as s:
        assert s.stats()["depth"] == 0


async def test_outbox_of_another_schema_version_is_refused_unchanged(tmp_path):
    import sqlite3

    from gateway.outbox import OutboxSchemaError

    state = tmp_path / "s"
    async with saf("http://127.0.0.1:9", state) as s:
        assert (await s.send(put("/home/v", b"1"))).status == 202
    conn = sqlite3.connect(state / "outbox.db")
    conn.execute("UPDATE meta SET value='99' WHERE name='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxSchemaError, match="'99' is not supported"):
        await saf("http://127.0.0.1:9", state).start()
    conn = sqlite3.connect(state / "outbox.db")
    assert conn.execute("SELECT count(*) FROM pending").fetchone() == (1,)
    conn.close()


async def test_state_dir_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "s").write_text("oops")
    with pytest.raises(OSError):
        await saf("http://127.0.0.1:9", tmp_path / "s").start()


class _BuggyForOnePath:
    """The real core client, except that it crashes (a bug, not a network error) on one
    path: no real part fails that way on demand."""

    def __init__(self, url: str, bad: str):
        self.inner = CoreClient(url, timeout=10)
        self.bad = bad

    async def send(self, request: Request):  # type: ignore[no-untyped-def]
        if request.path == self.bad:
            raise ValueError("client bug")
        return await self.inner.send(request)

    async def close(self) -> None:
        await self.inner.close()


async def test_an_entry_whose_replay_crashes_backs_off_alone(tmp_path, capsys):
    core = pick_core(tmp_path)
    state = tmp_path / "s"
    cfg = OutboxConfig(**{**FAST, "backoff_min_s": 0.2})
    async with StoreAndForward(_BuggyForOnePath(core.url, "/home/bug/x"), state, cfg) as s:
        for path in ("/home/bug/x", "/home/bug/a", "/home/bug/b"):
            with pytest.raises(ValueError) if path == "/home/bug/x" else contextlib.nullcontext():
                await s.send(put(path, b"v"))
        # Core down: the two good writes are queued; the buggy one raised before queueing.
        assert s.stats()["depth"] == 2
    # Queue the buggy one too (as if it had been accepted), then replay with the core up.
    async with saf(core.url, state) as s:
        assert (await s.send(put("/home/bug/x", b"v"))).status == 202
    await asyncio.to_thread(core.start)
    try:
        async with StoreAndForward(_BuggyForOnePath(core.url, "/home/bug/x"), state, cfg) as s:
            for _ in range(200):
                if s.stats()["replayed_total"] >= 2 and s.stats()["replay_retries_total"] >= 2:
                    break
                await asyncio.sleep(0.05)
            st = s.stats()
            assert st["replayed_total"] >= 2 and st["depth"] == 1 and st["online"] == 1
            assert st["replay_retries_total"] >= 2  # retried with backoff, still there
        assert http_get(core.url, "/home/bug/a")[2] == b"v"
    finally:
        core.stop()


async def test_timeout_while_core_is_frozen_queues_with_same_key_and_applies_once(tmp_path):
    """SIGSTOP the core: the gateway's request sits in the core's socket, the client times
    out and queues the write; after SIGCONT the core handles the original request too.
    Both carry the same Idempotency-Key, so the write lands once, in order."""
    import os
    import signal

    core = pick_core(tmp_path).start()
    try:
        cfg = OutboxConfig(**FAST)
        async with StoreAndForward(CoreClient(core.url, timeout=1.0), tmp_path / "s", cfg) as s:
            assert (await s.send(put("/home/frozen/a", b"A"))).status == 201
            assert core.proc is not None
            os.kill(core.proc.pid, signal.SIGSTOP)
            try:
                frozen = await s.send(post("/home/frozen/a", b"B"))
                assert frozen.status == 202  # timed out, then queued durably
                assert (await s.send(post("/home/frozen/a", b"C"))).status == 202
            finally:
                os.kill(core.proc.pid, signal.SIGCONT)
            st = await drained(s)
            assert st["replayed_total"] == 2 and st["unavailable_total"] >= 1
        assert http_get(core.url, "/home/frozen/a")[2] == b"ABC"
        _, headers, _ = http_get(core.url, "/proc/audit/home/frozen/a/verify")
        assert headers["x-audit-events"] == "3"
    finally:
        core.stop()
