"""The outbox's bounds: bytes and age under both policies, and a full disk.

The core is down in all of these (a refused port), so every write goes to the outbox.
Each case is checked through ``stats()`` and through ``python -m gateway outbox status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.core_client import CoreClient
from gateway.flow import OutboxFull, Request
from gateway.forwarder import StoreAndForward
from gateway.outbox import ENTRY_OVERHEAD_BYTES, OutboxConfig
from gateway.outbox_cli import main as cli
from tests.gateway.outbox.support import http_get, pick_core

DOWN = "http://127.0.0.1:9"  # discard port: nothing listens, connections are refused
AUTH = {"authorization": "Bearer w"}


class Clock:
    """Wall clock the test moves forward (the age bound is days long in real life)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def saf(state: Path, url: str = DOWN, clock: Any = None, **cfg: Any) -> StoreAndForward:
    config = OutboxConfig(**{"backoff_min_s": 0.05, "backoff_max_s": 0.2, **cfg})
    kw = {"clock": clock} if clock is not None else {}
    return StoreAndForward(CoreClient(url, timeout=2), state, config, **kw)


def write(i: int, size: int = 100) -> Request:
    return Request("PUT", f"/home/b/{i % 5}", b"%06d" % i + b"x" * (size - 6), AUTH)


def status(state: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert cli(["status", "--state-dir", str(state), "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def entry_bytes(i: int) -> int:
    return (
        100
        + len(f"/home/b/{i % 5}")
        + len("authorization")
        + len("Bearer w")
        + 15
        + 35
        + ENTRY_OVERHEAD_BYTES
    )


async def test_reject_policy_refuses_new_writes_at_max_bytes_and_keeps_the_accepted(
    tmp_path, capsys
):
    state = tmp_path / "s"
    async with saf(state, max_bytes=10_000, policy="reject") as s:
        accepted = refused = 0
        for i in range(60):
            try:
                assert (await s.send(write(i))).status == 202
                accepted += 1
            except OutboxFull as exc:
                refused += 1
                assert exc.coap_code == "5.03" and exc.max_age == 30
        st = s.stats()
        assert accepted > 0 and refused > 0 and accepted + refused == 60
        assert st["rejected_total"] == refused and st["depth"] == accepted
        assert st["bytes"] <= 10_000 and st["dropped_total"] == 0
        shown = status(state, capsys)
        assert shown["depth"] == accepted and shown["bytes"] == st["bytes"]
    shown = status(state, capsys)
    assert shown["counters"]["rejected_total"] == refused  # flushed at close
    assert shown["dead_letters"] == 0


async def test_drop_oldest_moves_oldest_to_dead_letters_and_keeps_accepting(tmp_path, capsys):
    state = tmp_path / "s"
    core = pick_core(tmp_path)
    async with saf(state, url=core.url, max_bytes=10_000, policy="drop-oldest") as s:
        for i in range(60):
            assert (await s.send(write(i))).status == 202
        st = s.stats()
        assert st["dropped_total"] > 0 and st["rejected_total"] == 0
        assert st["depth"] + st["dropped_total"] == 60 and st["bytes"] <= 10_000
        await asyncio.sleep(1.2)  # housekeeping tick flushes counters
        shown = status(state, capsys)
        assert shown["dead_by_reason"] == {"dropped": st["dropped_total"]}
        assert shown["counters"]["dropped_total"] == st["dropped_total"]
        capsys.readouterr()
        assert cli(["list", "--dead", "--state-dir", str(state), "--json"]) == 0
        dead = json.loads(capsys.readouterr().out)["items"]
        seqs = [d["seq"] for d in dead]
        # The oldest went, except one the replay may have been probing the core with.
        assert len(seqs) == st["dropped_total"] and max(seqs) <= st["dropped_total"] + 1
        # What was kept is delivered once the core is back: the newest write per path wins.
        await asyncio.to_thread(core.start)
        try:
            for _ in range(200):
                if s.stats()["depth"] == 0:
                    break
                await asyncio.sleep(0.05)
            assert s.stats()["depth"] == 0
            for i in range(55, 60):
                assert http_get(core.url, f"/home/b/{i % 5}")[2].startswith(b"%06d" % i)
        finally:
            core.stop()


async def test_dead_letters_are_bounded_and_the_pruned_ones_counted(tmp_path, capsys):
    state = tmp_path / "s"
    async with saf(state, max_bytes=2000, policy="drop-oldest", max_dead_letters=5) as s:
        for i in range(40):
            assert (await s.send(write(i))).status == 202
        dropped = s.stats()["dropped_total"]
        assert dropped > 5
        for _ in range(60):
            if s.stats()["dead_pruned_total"] == dropped - 5:
                break
            await asyncio.sleep(0.05)
        assert s.stats()["dead_pruned_total"] == dropped - 5
    shown = status(state, capsys)
    assert shown["dead_letters"] == 5 and shown["counters"]["dead_pruned_total"] == dropped - 5


async def test_age_bound_reject_refuses_new_writes_but_keeps_old_ones(tmp_path, capsys):
    clock = Clock()
    state = tmp_path / "s"
    async with saf(state, clock=clock, max_age_s=3600, policy="reject") as s:
        assert (await s.send(write(1))).status == 202
        clock.now += 3601
        with pytest.raises(OutboxFull, match="max_age_s"):
            await s.send(write(2))
        await asyncio.sleep(1.2)
        st = s.stats()
        assert st["depth"] == 1 and st["rejected_total"] == 1 and st["expired_total"] == 0


async def test_age_bound_drop_oldest_expires_old_entries_to_dead_letters(tmp_path, capsys):
    clock = Clock()
    state = tmp_path / "s"
    async with saf(state, clock=clock, max_age_s=3600, policy="drop-oldest") as s:
        for i in range(3):
            assert (await s.send(write(i))).status == 202
        clock.now += 1800
        assert (await s.send(write(3))).status == 202
        clock.now += 1801  # the first three are now older than an hour, the last is not
        for _ in range(40):
            if s.stats()["expired_total"] == 3:
                break
            await asyncio.sleep(0.05)
        st = s.stats()
        assert st["expired_total"] == 3 and st["depth"] == 1
        await asyncio.sleep(1.2)
        assert status(state, capsys)["dead_by_reason"] == {"expired": 3}


# ------------------------------------------------------------------ disk full


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (we run as root in CI). Skipped, with the reason, where mounting is
    not permitted; SQLite then reports the same SQLITE_FULL, which is what is tested."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=512k",
            f"outbox-test-{uuid.uuid4().hex[:8]}",
            str(mnt),
        ],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture(params=["tmpfs", "max_page_count"])
def full_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    """Where the outbox runs out of space, two ways: a 512 KiB tmpfs (needs mount, i.e.
    root), and, anywhere, SQLite's max_page_count, which makes SQLite answer SQLITE_FULL
    ("database or disk is full") exactly as a full disk does."""
    if request.param == "tmpfs":
        mnt = request.getfixturevalue("small_fs")
        yield mnt / "state", None
        return

    async def limit(s: StoreAndForward) -> None:
        # 60 pages of 4 KiB: the schema plus a few dozen 4 KB entries.
        await s._outbox._submit(lambda conn: conn.execute("PRAGMA max_page_count=60"))

    yield tmp_path / "state", limit


async def test_disk_full_refuses_writes_with_outbox_full_and_counts_them_visibly(full_disk, capsys):
    state, limit = full_disk
    async with saf(state, max_bytes=64 * 1024 * 1024) as s:
        if limit is not None:
            await limit(s)
        stored = 0
        with contextlib.suppress(OutboxFull):
            for i in range(2000):
                await s.send(write(i, size=4000))
                stored += 1
        st = s.stats()
        assert stored > 10  # the disk took some before filling up
        assert st["disk_full_total"] == 1 and st["depth"] == stored and st["disk_full"] == 1
        assert st["rejected_total"] == 0  # a full disk is counted on its own
        # Still refused at once (not stalled) while the disk stays full.
        with pytest.raises(OutboxFull, match="disk full"):
            await s.send(write(9999, size=4000))
        assert s.stats()["disk_full_total"] == 2
        await asyncio.sleep(1.3)  # the tick flushes counters into the released reserve
        shown = status(state, capsys)
        assert shown["depth"] == stored and shown["counters"]["disk_full_total"] == 2
        if limit is None:
            assert shown["disk_free_bytes"] < 64 * 1024  # the tmpfs really is full
    shown = status(state, capsys)
    assert shown["counters"]["disk_full_total"] == 2 and shown["depth"] == stored


async def test_disk_full_from_another_file_then_room_again_resumes_accepting(small_fs):
    state = small_fs / "state"
    async with saf(state) as s:
        assert (await s.send(write(0))).status == 202
        with contextlib.suppress(OSError), open(small_fs / "filler", "wb", buffering=0) as f:
            while True:  # fill the file system up to the last block
                f.write(b"f" * 4096)
        stored = 0
        with contextlib.suppress(OutboxFull):
            for i in range(1, 500):
                await s.send(write(i, size=2000))
                stored += 1
        assert s.stats()["disk_full"] == 1 and s.stats()["disk_full_total"] == 1
        (small_fs / "filler").unlink()
        for _ in range(60):
            if not s.stats()["disk_full"]:
                break
            await asyncio.sleep(0.05)
        assert (await s.send(write(1000))).status == 202
        assert s.stats()["depth"] == stored + 2
