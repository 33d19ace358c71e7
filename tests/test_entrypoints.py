"""``python -m elastik`` and ``python -m gateway``: every command is reachable, bad ones are named."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60)


def test_elastik_help_lists_server_and_client_commands() -> None:
    res = run("elastik", "--help")
    assert res.returncode == 0
    for cmd in ("run", "verify", "decode-path", "ls-data", "ls", "tree", "rm", "mv", "du", "coap"):
        assert f"  {cmd}" in res.stdout or f" {cmd} " in res.stdout, cmd


@pytest.mark.parametrize("module", ["elastik", "gateway"])
def test_unknown_command_is_named_without_traceback(module: str) -> None:
    res = run(module, "frobnicate")
    assert res.returncode == 2
    assert "frobnicate" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_decode_path_round_trips_the_reference_layout() -> None:
    res = run("elastik", "decode-path", "home%2Fnote%2Etxt")
    assert res.returncode == 0
    assert res.stdout.strip() == "home/note.txt"
