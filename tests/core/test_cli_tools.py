"""``python -m elastik verify | decode-path | ls-data`` as real processes."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import new_key, ours, reference, running

pytestmark = pytest.mark.xdist_group("core-cli")


def elastik(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "elastik", *argv],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def put(url: str, path: str, body: bytes, token: str = "w") -> int:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("PUT", path, body=body, headers={"Authorization": f"Bearer {token}"})
    status = conn.getresponse().status
    conn.close()
    return status


def test_verify_reports_every_world_and_fails_with_wrong_key(tmp_path: Path) -> None:
    key = new_key()
    data = tmp_path / "data"
    with running(ours(tmp_path, key=key, data=data)) as srv:
        assert put(srv.url, "/home/a", b"1") == 201
        assert put(srv.url, "/home/b", b"2") == 201
        assert put(srv.url, "/tmp/m", b"3") == 201  # memory: not in the durable report
    good = elastik("verify", "--data", str(data), "--key", key)
    assert good.returncode == 0, good.stderr
    lines = good.stdout.splitlines()
    assert lines[0].startswith("ok\thome/a\tevents=1")
    assert lines[1].startswith("ok\thome/b\tevents=1")
    assert lines[-1].endswith(", 0 broken")
    via_env = elastik("verify", "--data", str(data), env={"ELASTIK_KEY": key})
    assert via_env.returncode == 0
    bad = elastik("verify", "--data", str(data), "--key", new_key())
    assert bad.returncode == 1
    assert "BROKEN\thome/a" in bad.stdout


def test_verify_without_key_or_data_is_a_clear_error(tmp_path: Path) -> None:
    no_key = elastik("verify", "--data", str(tmp_path))
    assert no_key.returncode == 1
    assert no_key.stderr.startswith("elastik-core: ELASTIK_KEY is required")
    missing = elastik("verify", "--data", str(tmp_path / "nope"), "--key", new_key())
    assert missing.returncode == 1
    assert missing.stderr.startswith("elastik-core: ") and "Traceback" not in missing.stderr


def test_decode_path() -> None:
    res = elastik("decode-path", "home%2Fnote%2Etxt", "home%2Fc!$&'(),=")
    assert res.returncode == 0
    assert res.stdout.splitlines() == ["home/note.txt", "home/c!$&'(),="]


def test_decode_path_rejects_bad_names_without_traceback() -> None:
    res = elastik("decode-path", "home%2Fok", "home%ZZ", "%FF")
    assert res.returncode == 1
    assert res.stdout.splitlines() == ["home/ok"]
    assert res.stderr.count("elastik-core: cannot decode") == 2
    assert "Traceback" not in res.stderr


def test_ls_data_missing_directory(tmp_path: Path) -> None:
    res = elastik("ls-data", str(tmp_path / "nope"))
    assert res.returncode == 1 and res.stderr.startswith("elastik-core: ")


@pytest.mark.reference
def test_ls_data_lists_a_reference_directory(tmp_path: Path) -> None:
    data = tmp_path / "refdata"
    with running(reference(tmp_path, data=data)) as srv:
        assert put(srv.url, "/home/note.txt", b"hello") == 201
        assert put(srv.url, "/home/a%20b", b"xy") == 201
    res = elastik("ls-data", str(data))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[:2] == [
        "home/a b\t2\t1\tapplication/octet-stream",
        "home/note.txt\t5\t1\tapplication/octet-stream",
    ]


def test_unknown_subcommand_usage() -> None:
    from elastik.server.cli import main

    assert main(["nope"]) == 2
    assert main([]) == 2
