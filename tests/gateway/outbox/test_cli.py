"""``python -m gateway outbox ...``: output, bad input, and retry/purge with the gateway
stopped and running. Dead letters are made by drop-oldest with the core down."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.core_client import CoreClient
from gateway.flow import Request
from gateway.forwarder import StoreAndForward
from gateway.outbox import OutboxConfig
from gateway.outbox_cli import main as cli
from tests.support.servers import ROOT

DOWN = "http://127.0.0.1:9"
SECRET = "Bearer s3cret-device-token"


def saf(state: Path, **cfg: Any) -> StoreAndForward:
    config = OutboxConfig(**{"backoff_min_s": 0.05, "backoff_max_s": 0.2, **cfg})
    return StoreAndForward(CoreClient(DOWN, timeout=2), state, config)


async def fill(state: Path, n: int, **cfg: Any) -> dict[str, Any]:
    """n writes with the core down into a 4000-byte drop-oldest outbox: some become dead."""
    async with saf(state, max_bytes=4000, policy="drop-oldest", **cfg) as s:
        for i in range(n):
            req = Request("PUT", f"/home/c/{i % 3}", b"v%d" % i, {"authorization": SECRET})
            assert (await s.send(req)).status == 202
        return s.stats()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["status", "--bogus"],
        ["list", "--limit", "0"],
        ["list", "--limit", "many"],
        ["retry", "--id", "x"],
        ["purge-dead", "--reason", "bored"],
    ],
)
def test_bad_usage_exits_2_with_one_clear_line_and_no_traceback(capsys, args):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert "error:" in err and "Traceback" not in err


def test_missing_outbox_is_a_clear_error(capsys, tmp_path):
    for command in ("status", "list", "retry", "purge-dead"):
        code, out, err = run(capsys, command, "--state-dir", str(tmp_path / "nowhere"))
        assert code == 1 and out == ""
        assert err.startswith("outbox: no outbox in") and "Traceback" not in err


def test_corrupt_database_is_a_clear_error_and_is_left_alone(capsys, tmp_path):
    (tmp_path / "outbox.db").write_bytes(b"this is not sqlite" * 100)
    code, _, err = run(capsys, "status", "--state-dir", str(tmp_path))
    assert code == 1 and "cannot read" in err and "Traceback" not in err
    assert (tmp_path / "outbox.db").read_bytes() == b"this is not sqlite" * 100


async def test_status_and_list_show_counts_but_never_header_values(capsys, tmp_path):
    state = tmp_path / "s"
    st = await fill(state, 40)
    assert st["dropped_total"] > 0
    outputs = []
    for args in (
        ["status"],
        ["status", "--json"],
        ["list"],
        ["list", "--json"],
        ["list", "--dead"],
        ["list", "--dead", "--json"],
    ):
        code, out, err = run(capsys, *args, "--state-dir", str(state))
        assert code == 0 and err == ""
        outputs.append(out)
    assert all("s3cret" not in out for out in outputs)
    status = json.loads(outputs[1])
    assert status["running"] is False and status["depth"] == st["depth"]
    assert status["dead_by_reason"] == {"dropped": st["dropped_total"]}
    assert status["counters"]["queued_total"] == 40
    assert f"queued        {st['depth']} writes" in outputs[0]
    assert "gateway stopped" in outputs[0] and "dropped" in outputs[0]
    listed = json.loads(outputs[3])["items"]
    assert len(listed) == st["depth"] and listed == sorted(listed, key=lambda i: i["seq"])
    code, out, _ = run(capsys, "list", "--path", "/home/c/1", "--json", "--state-dir", str(state))
    assert {i["path"] for i in json.loads(out)["items"]} == {"/home/c/1"}


async def test_retry_with_gateway_stopped_queues_dead_letters_again(capsys, tmp_path):
    state = tmp_path / "s"
    st = await fill(state, 40)
    code, out, _ = run(capsys, "retry", "--path", "/home/c/0", "--state-dir", str(state))
    assert code == 0 and "queued again" in out
    code, out, _ = run(capsys, "status", "--json", "--state-dir", str(state))
    status = json.loads(out)
    moved = st["dropped_total"] - status["dead_letters"]
    assert moved > 0 and status["depth"] == st["depth"] + moved
    code, out, _ = run(capsys, "purge-dead", "--json", "--state-dir", str(state))
    assert code == 0 and json.loads(out) == {"purged": status["dead_letters"]}
    code, out, _ = run(capsys, "status", "--json", "--state-dir", str(state))
    assert json.loads(out)["dead_letters"] == 0 and json.loads(out)["depth"] == status["depth"]


async def test_retry_while_gateway_runs_is_picked_up_by_it(capsys, tmp_path):
    state = tmp_path / "s"
    async with saf(state, max_bytes=4000, policy="drop-oldest") as s:
        for i in range(40):
            req = Request("PUT", f"/home/c/{i % 3}", b"v%d" % i, {"authorization": SECRET})
            await s.send(req)
        before = s.stats()
        code, out, _ = run(
            capsys, "retry", "--json", "--reason", "dropped", "--state-dir", str(state)
        )
        result = json.loads(out)
        assert code == 0 and result["running"] is True and result["marked"] > 0
        for _ in range(60):
            if s.stats()["depth"] > before["depth"]:
                break
            await asyncio.sleep(0.05)
        after = s.stats()
        # Back in the queue (an operator's retry may take the outbox past max_bytes; the
        # next write then drops the oldest again).
        assert after["queued_total"] == before["queued_total"]
        assert after["depth"] + after["dropped_total"] == 40 + result["marked"]


def test_module_entry_point_runs_as_a_process(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "gateway.outbox_cli", "status", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "no outbox in" in res.stderr and "Traceback" not in res.stderr
    if (ROOT / "gateway" / "__main__.py").exists():
        res = subprocess.run(
            [sys.executable, "-m", "gateway", "outbox", "status", "--state-dir", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 1 and "no outbox in" in res.stderr
