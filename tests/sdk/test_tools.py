"""elastik.tools: TrustedShellPool (real bash processes) and the disk-name helpers."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import elastik
import pytest
from elastik import tools

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_run_captures_output_and_status(tmp_path: Path) -> None:
    with elastik.TrustedShellPool(size=2, cwd=tmp_path) as pool:
        r = pool.run("echo hello; echo oops >&2")
        assert (r.stdout, r.returncode, r.ok) == ("hello\noops\n", 0, True)
        r = pool.run("printf 'no newline'; false")
        assert (r.stdout, r.returncode, r.ok) == ("no newline", 1, False)
        assert pool.run("pwd").stdout.strip() == str(tmp_path)
        with pytest.raises(elastik.ShellPoolError, match="exited with 3"):
            pool.run("(exit 3)", check=True)


def test_shells_stay_warm_and_keep_state() -> None:
    with tools.TrustedShellPool(size=1) as pool:
        first = pool.run("echo $$").stdout
        pool.run("export GREETING=hi")
        assert pool.run("echo $$").stdout == first  # same process
        assert pool.run("echo $GREETING").stdout == "hi\n"


def test_timeout_and_dead_shell_are_replaced() -> None:
    with tools.TrustedShellPool(size=1) as pool:
        r = pool.run("sleep 5", timeout=0.3)
        assert r.timed_out and not r.ok
        assert pool.run("echo alive").stdout == "alive\n"
        r = pool.run("exit 7")
        assert r.returncode == 7
        assert pool.run("echo again").stdout == "again\n"


def test_pool_is_thread_safe_and_bounded() -> None:
    with tools.TrustedShellPool(size=2) as pool:
        results: list[str] = []

        def work(i: int) -> None:
            results.append(pool.run(f"echo {i}").stdout.strip())

        threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results, key=int) == [str(i) for i in range(10)]
        with pytest.raises(ValueError):
            tools.TrustedShellPool(size=0)
    with pytest.raises(RuntimeError, match="closed"):
        pool.run("true")


def test_output_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "MAX_OUTPUT_BYTES", 100)
    with tools.TrustedShellPool(size=1) as pool:
        r = pool.run("for i in $(seq 1 100); do echo line-$i; done")
        assert r.truncated and len(r.stdout) <= 100 and r.returncode == 0


def test_disk_names_round_trip() -> None:
    assert elastik.encode_disk_name("home/note.txt") == "home%2Fnote%2Etxt"
    assert elastik.decode_disk_name("home%2Fa%20b") == "home/a b"
    with pytest.raises(AttributeError):
        elastik.NoSuchThing  # noqa: B018
