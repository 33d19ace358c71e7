"""Group commit, the writer lock across processes, data-dir errors, and crash safety
(SIGKILL a writing process; every acknowledged write survives and verifies)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from elastik.server import verifytool
from elastik.server.engine import Engine
from elastik.server.errors import FatalError, StorageFailure
from elastik.server.model import EngineConfig

KEY = b"cd" * 32


def cfg(data: Path, **kw: object) -> EngineConfig:
    return EngineConfig(data=data, key=KEY, **kw)  # type: ignore[arg-type]


def stats(e: Engine) -> dict[str, int]:
    return {s.name: s.value for s in e.pool_stats()}


async def test_group_commit_batches_concurrent_puts(tmp_path: Path):
    e = Engine.open(cfg(tmp_path / "data"))
    try:
        before = stats(e)
        n = 64
        results = await asyncio.gather(*[e.put(f"home/g{i}", b"x" * 10, "t", ()) for i in range(n)])
        after = stats(e)
        assert all(r.status == 201 for r in results)
        ops = after["writer_ops"] - before["writer_ops"]
        fsyncs = after["writer_fsyncs"] - before["writer_fsyncs"]
        assert ops == n
        assert 1 <= fsyncs < n  # several writes shared one transaction
        assert after["writer_max_batch"] > 1
    finally:
        e.close()


async def test_concurrent_writers_to_many_worlds_all_verify(tmp_path: Path):
    e = Engine.open(cfg(tmp_path / "data"))
    try:

        async def client(c: int) -> None:
            for i in range(20):
                await e.put(f"home/c{c}", b"%d" % i, "t", ())
                await e.append(f"home/c{c}", b"+")

        await asyncio.gather(*[client(c) for c in range(16)])
        for c in range(16):
            w = e.read(f"home/c{c}")
            assert w is not None and w.body == b"19+"
            v = await e.verify(f"home/c{c}")
            assert (v.outcome, v.events) == ("valid", 40)
    finally:
        e.close()


def test_data_path_is_a_regular_file(tmp_path: Path):
    f = tmp_path / "file"
    f.write_bytes(b"")
    with pytest.raises(FatalError) as info:
        Engine.open(cfg(f))
    assert (
        info.value.message == "build Engine failed: data root IO error: File exists (os error 17)"
    )


def test_missing_parents_are_created_like_the_reference(tmp_path: Path):
    Engine.open(cfg(tmp_path / "no" / "such" / "data")).close()
    assert (tmp_path / "no" / "such" / "data" / "elastik.db").is_file()


def test_data_path_below_a_regular_file(tmp_path: Path):
    f = tmp_path / "file"
    f.write_bytes(b"")
    with pytest.raises(FatalError) as info:
        Engine.open(cfg(f / "data"))
    assert info.value.message == (
        "build Engine failed: data root IO error: Not a directory (os error 20)"
    )


def test_second_open_in_same_process_is_refused(tmp_path: Path):
    data = tmp_path / "data"
    e = Engine.open(cfg(data))
    try:
        with pytest.raises(FatalError) as info:
            Engine.open(cfg(data))
        assert info.value.message == (
            f"build Engine failed: data root writer lock is held (last writer: PID {os.getpid()}): "
            f"{data}"
        )
    finally:
        e.close()
    Engine.open(cfg(data)).close()  # released on close


_OPEN_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from elastik.server.engine import Engine
    from elastik.server.errors import FatalError
    from elastik.server.model import EngineConfig
    try:
        e = Engine.open(EngineConfig(data=Path(sys.argv[1]), key=b"cd" * 32))
    except FatalError as exc:
        print("FATAL", exc.message, flush=True)
        sys.exit(1)
    print("OPEN", flush=True)
    if len(sys.argv) > 2:
        sys.stdin.readline()  # hold the lock until told (or killed)
    e.close()
    """
)


def _spawn(data: Path, hold: bool = False) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", _OPEN_SCRIPT, str(data)] + (["hold"] if hold else [])
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_writer_lock_across_processes_and_stale_pid(tmp_path: Path):
    data = tmp_path / "data"
    holder = _spawn(data, hold=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "OPEN"
        other = _spawn(data)
        out, _ = other.communicate(timeout=60)
        assert other.returncode == 1
        assert out.strip() == (
            f"FATAL build Engine failed: data root writer lock is held "
            f"(last writer: PID {holder.pid}): {data}"
        )
        with pytest.raises(FatalError):
            Engine.open(cfg(data))
    finally:
        holder.kill()  # a crash: the holder row keeps its (now stale) PID
        holder.wait()
    e = Engine.open(cfg(data))  # a stale PID does not block
    e.close()


_CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from elastik.server.engine import Engine
    from elastik.server.model import EngineConfig

    async def main():
        e = Engine.open(EngineConfig(data=Path(sys.argv[1]), key=b"cd" * 32))
        print("READY", flush=True)
        async def client(c):
            i = 0
            while True:
                world = f"home/k{c}-{i}"
                r = await e.put(world, b"body-%d-%d" % (c, i), "text/plain", ())
                print("ACK", world, r.etag, flush=True)
                if i % 3 == 0:
                    r = await e.append(world, b"+")
                    print("ACK", world, r.etag, flush=True)
                i += 1
        await asyncio.gather(*[client(c) for c in range(8)])

    asyncio.run(main())
    """
)


@pytest.mark.xdist_group("crash")
def test_sigkill_keeps_every_acknowledged_write(tmp_path: Path):
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASH_SCRIPT, str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: dict[str, set[str]] = {}
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        deadline = time.monotonic() + 60
        while len(acked) < 300 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            _, world, etag = line.split()
            acked.setdefault(world, set()).add(etag)
        os.kill(proc.pid, signal.SIGKILL)
        # Lines already written before the kill are acknowledged too.
        for line in proc.stdout:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "ACK":
                acked.setdefault(parts[1], set()).add(parts[2])
    finally:
        proc.kill()
        proc.wait()
    assert len(acked) >= 300, proc.stderr.read() if proc.stderr else ""
    e = Engine.open(cfg(data))  # startup verification passes after the crash
    try:
        for world in acked:
            w = e.read(world)
            assert w is not None, world
    finally:
        e.close()
    # Every acknowledged ETag is an event of that world's chain (a later write to the same
    # world may have committed before the kill without being printed).
    db = sqlite3.connect(data / "elastik.db")
    chains: dict[str, set[str]] = {}
    for world, mac in db.execute("SELECT world, hmac FROM events"):
        chains.setdefault(world, set()).add("hmac-" + mac)
    db.close()
    for world, etags in acked.items():
        assert etags <= chains.get(world, set()), world
    rows = verifytool.verify_data(data, KEY)
    assert rows and all(r.ok for r in rows), [r for r in rows if not r.ok][:3]
    assert {r.world for r in rows} >= set(acked)


async def test_sqlite_error_in_one_op_fails_only_that_op(tmp_path: Path):
    data = tmp_path / "data"
    e = Engine.open(cfg(data))
    try:
        await e.put("home/warm", b"", "t", ())
        with sqlite3.connect(data / "elastik.db") as c:
            c.execute(
                "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.world='home/boom'"
                " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        names = [f"home/ok{i}" for i in range(20)]
        names.insert(10, "home/boom")
        results = await asyncio.gather(
            *[e.put(n, b"v", "t", ()) for n in names], return_exceptions=True
        )
        by_name = dict(zip(names, results, strict=True))
        assert isinstance(by_name.pop("home/boom"), StorageFailure)
        assert all(not isinstance(r, BaseException) and r.status == 201 for r in by_name.values())
        assert e.read("home/boom") is None
        assert all(e.read(n) is not None for n in by_name)
        assert stats(e)["writer_isolated_retries"] >= 1
        assert (await e.verify("home/ok3")).outcome == "valid"
    finally:
        e.close()
    rows = verifytool.verify_data(data, KEY)
    assert "home/boom" not in {r.world for r in rows} and all(r.ok for r in rows)


def test_corrupt_database_refuses_to_start(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "elastik.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(FatalError) as info:
        Engine.open(cfg(data))
    assert info.value.message.startswith("build Engine failed: database error: ")
    Engine.open(cfg(tmp_path / "fresh")).close()  # and the lock was released on failure
    with pytest.raises(FatalError):
        Engine.open(cfg(data))


async def test_read_your_writes_while_other_threads_fill_the_cache(tmp_path: Path):
    import random
    import threading

    e = Engine.open(cfg(tmp_path / "data", read_cache_max_entries=8))
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:  # other threads keep missing and filling the small cache
        rnd = random.Random(1)
        try:
            while not stop.is_set():
                e.read(f"home/ryw{rnd.randrange(12)}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:

        async def client(c: int) -> None:
            for i in range(40):
                body = b"%d-%d" % (c, i)
                if i % 2:
                    await e.put(f"home/ryw{c}", body, "t", ())
                    expect = body
                else:
                    await e.put(f"home/ryw{c}", b"", "t", ())
                    await e.append(f"home/ryw{c}", body)
                    expect = body
                w = e.read(f"home/ryw{c}")
                assert w is not None and w.body == expect, (c, i)

        await asyncio.gather(*[client(c) for c in range(12)])
    finally:
        stop.set()
        for t in threads:
            t.join()
        e.close()
    assert not errors


async def test_writer_survives_a_failure_while_publishing(tmp_path: Path, monkeypatch):
    from elastik.server import mutations

    e = Engine.open(cfg(tmp_path / "data"))
    try:
        original = mutations.Mutations.after_commit
        calls = {"n": 0}

        def flaky(self, b, ops):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("injected")
            return original(self, b, ops)

        monkeypatch.setattr(mutations.Mutations, "after_commit", flaky)
        with pytest.raises(StorageFailure):
            await e.put("home/first", b"", "t", ())
        r = await e.put("home/second", b"", "t", ())  # the writer thread is still alive
        assert r.status == 201
    finally:
        e.close()


async def test_backpressure_bound_still_completes_every_write(tmp_path: Path, monkeypatch):
    from elastik.server import engine as engine_mod

    monkeypatch.setattr(engine_mod, "MAX_PENDING_WRITES", 2)
    e = Engine.open(cfg(tmp_path / "data"))
    try:
        results = await asyncio.gather(*[e.put(f"home/bp{i}", b"", "t", ()) for i in range(40)])
        assert [r.status for r in results] == [201] * 40
        assert stats(e)["writer_max_batch"] <= 2
    finally:
        e.close()
