"""``python -m elastik ls|tree|rm|mv|du|info`` against a running core (ELASTIK_URL)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import elastik

from tests.sdk.conftest import APPROVE, Core
from tests.sdk.helpers import run_cli_in_process
from tests.support.servers import ROOT, free_port


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli(core_url: str, *args: str, token: str = APPROVE) -> Result:
    """The CLI in-process (same code as ``python -m elastik``; see test_python_m_dispatch)."""
    r = run_cli_in_process(list(args), {"ELASTIK_URL": core_url, "ELASTIK_APPROVE_TOKEN": token})
    return Result(r.returncode, r.stdout.decode(), r.stderr.decode())


def cli_subprocess(
    core_url: str, *args: str, token: str = APPROVE
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
    env.update(ELASTIK_URL=core_url, ELASTIK_APPROVE_TOKEN=token, ELASTIK_NO_DOTENV="1")
    return subprocess.run(
        [sys.executable, "-m", "elastik", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
    )


def test_ls_tree_du_mv_rm(core: Core, p: str) -> None:
    e = elastik.Elastik(core.url, bearer_token=APPROVE)
    e.put_many({f"{p}/s/a": "1", f"{p}/s/b/c": "22", f"{p}/top": "333"})
    assert cli(core.url, "ls", p).stdout.splitlines() == [f"home/{p}/s/", f"home/{p}/top"]
    assert cli(core.url, "ls", p, "--all").stdout.splitlines() == [
        f"home/{p}/s/a",
        f"home/{p}/s/b/c",
        f"home/{p}/top",
    ]
    assert cli(core.url, "tree", p).stdout.splitlines()[:3] == [f"home/{p}", "├── s", "│   ├── a"]
    assert cli(core.url, "du", f"{p}/s").stdout.splitlines() == [
        f"1\thome/{p}/s/a",
        f"2\thome/{p}/s/b/c",
    ]
    r = cli(core.url, "mv", f"{p}/top", f"{p}/s/a")
    assert r.returncode == 1 and "destination exists" in r.stderr and "Traceback" not in r.stderr
    assert cli(core.url, "mv", f"{p}/top", f"{p}/moved").stdout.strip() == "1"
    assert cli(core.url, "mv", "-r", f"{p}/s", f"{p}/t").stdout.strip() == "2"
    assert e.get(f"{p}/t/b/c") == b"22" and not e.exists(f"{p}/top")
    r = cli(core.url, "rm", "-r", "home")
    assert r.returncode == 1 and "force=True" in r.stderr
    assert cli(core.url, "rm", "-r", f"{p}/t").stdout.strip() == "2"
    assert cli(core.url, "rm", f"{p}/moved").stdout.strip() == "1"
    assert e.ls(p, depth=-1) == []


def test_cli_errors_are_one_line(core: Core, p: str) -> None:
    e = elastik.Elastik(core.url, bearer_token=APPROVE)
    e.put(f"{p}/x", "1")
    denied = cli(core.url, "rm", f"{p}/x", token="wrong")
    assert denied.returncode == 1
    assert denied.stderr.startswith("elastik rm: elastik 401 DELETE")
    gone = cli(f"http://127.0.0.1:{free_port()}", "ls")
    assert gone.returncode == 1 and "cannot reach" in gone.stderr
    bad = cli(core.url, "ls", "a//b")
    assert bad.returncode == 1 and "empty path segment" in bad.stderr
    for r in (denied, gone, bad):
        assert "Traceback" not in r.stderr and "wrong" not in r.stderr


def test_info_and_help(core: Core) -> None:
    info = cli_subprocess(core.url, "info")  # a fresh process: no core started by it
    assert info.returncode == 0 and "elastik 0.1.0" in info.stdout
    assert f"url:     {core.url} (default)" in info.stdout
    assert "approve: <set> (1 chars)" in info.stdout and APPROVE + "\n" not in info.stdout
    assert cli(core.url).returncode == 0
    assert cli(core.url, "coap").returncode == 2


def test_python_m_dispatch(core: Core, p: str) -> None:
    elastik.Elastik(core.url, bearer_token=APPROVE).put(f"{p}/x", "1")
    r = cli_subprocess(core.url, "ls", p)
    assert (r.returncode, r.stdout) == (0, f"home/{p}/x\n")
    r = cli_subprocess(core.url, "rm", "-r", "")
    assert r.returncode == 1 and "force=True" in r.stderr and "Traceback" not in r.stderr
