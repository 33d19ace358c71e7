"""tools/deploy.py (everything short of a board: plan, --mpy, config, errors), the
PlatformIO hook, and tools/sensor_sim.py against the real gateway and core."""

from __future__ import annotations

import configparser
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fw_support import ROOT, Target

pytestmark = pytest.mark.xdist_group("fw_gateway")


def tool(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def test_deploy_dry_run_prints_the_mpremote_command() -> None:
    res = tool("tools.deploy", "--port", "/dev/ttyUSB7", "--dry-run")
    assert res.returncode == 0, res.stderr
    cmd = res.stdout.splitlines()[-1]
    assert cmd.startswith("mpremote connect /dev/ttyUSB7 fs cp ")
    assert f"{ROOT}/micro/elastik_micro.py :elastik_micro.py +" in cmd
    assert f"{ROOT}/micro/examples/esp32_main.py :main.py + reset" in cmd
    assert "elastik_micro_async" not in cmd


def test_deploy_mpy_compiles_the_client(tmp_path: Path) -> None:
    res = tool(
        "tools.deploy", "--port", "/dev/ttyACM0", "--board", "async", "--mpy",
        "--build-dir", str(tmp_path), "--dry-run",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    built = sorted(p.name for p in tmp_path.glob("*.mpy"))
    assert built == ["elastik_micro.mpy", "elastik_micro_async.mpy"]
    assert (tmp_path / "elastik_micro.mpy").stat().st_size <= 6 * 1024
    cmd = res.stdout.splitlines()[-1]
    assert f"{tmp_path}/elastik_micro.mpy :elastik_micro.mpy" in cmd
    assert f"{tmp_path}/elastik_micro_async.mpy :elastik_micro_async.mpy" in cmd
    assert "async_main.py :main.py" in cmd


def test_deploy_writes_config_with_secrets_from_the_environment_only(tmp_path: Path) -> None:
    secrets = {"ELASTIK_WIFI_PASSWORD": "wifi-pass-9f3", "ELASTIK_TOKEN": "token-7c1"}
    res = tool(
        "tools.deploy", "--port", "/dev/ttyUSB0", "--board", "picow", "--ssid", "lab",
        "--gateway", "10.1.2.3:5999", "--interval", "30", "--build-dir", str(tmp_path),
        "--dry-run",
        env=secrets,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    for value in secrets.values():
        assert value not in res.stdout + res.stderr
    cfg = tmp_path / "config.py"
    assert cfg.stat().st_mode & 0o077 == 0  # only the owner can read the secrets
    ns: dict[str, object] = {}
    exec(cfg.read_text(), ns)
    assert (ns["WIFI_SSID"], ns["WIFI_PASSWORD"], ns["TOKEN"]) == ("lab", *secrets.values())
    assert (ns["GATEWAY_HOST"], ns["GATEWAY_PORT"], ns["INTERVAL_S"]) == ("10.1.2.3", 5999, 30)
    assert f"{cfg} :config.py" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--port"),
        (["--port", "p", "--board", "arduino"], "--board"),
        (["--port", "p", "--gateway", "host:99999", "--ssid", "s"], "--gateway"),
        (["--port", "p", "--gateway", ":5683", "--ssid", "s"], "--gateway"),
        (["--port", "p", "--interval", "0"], "--interval"),
        (["--port", "p", "--ssid", "lab", "--dry-run"], "--ssid and --gateway go together"),
        (["--port", "/dev/no-such-board"], "serial port /dev/no-such-board not found"),
    ],
)
def test_deploy_bad_arguments_exit_2_with_a_message(args: list[str], message: str) -> None:
    res = tool("tools.deploy", *args)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_platformio_envs_deploy_through_tools_deploy(tmp_path: Path) -> None:
    ini = configparser.ConfigParser()
    ini.read(ROOT / "platformio.ini")
    assert "pre:tools/pio_upload.py" in ini["env"]["extra_scripts"]
    assert (ROOT / "tools" / "pio_upload.py").exists()
    boards = {
        s.split(":", 1)[1]: ini[s]["custom_deploy_board"] for s in ini if s.startswith("env:")
    }
    assert boards == {"esp32": "esp32", "picow": "picow"}
    sys.path.insert(0, str(ROOT))
    from tools.pio_upload import deploy_command

    for board in boards.values():
        cmd = deploy_command(sys.executable, "/dev/ttyX", board, "lab", "10.0.0.1:5683", "60")
        res = subprocess.run(
            [*cmd, "--dry-run", "--build-dir", str(tmp_path / board)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        assert f"{board}_main.py :main.py" in res.stdout
        assert "elastik_micro.mpy" in res.stdout and ":config.py" in res.stdout


SUMMARY = re.compile(
    r"^sensor_sim: devices=(\d+) readings=(\d+) ok=(\d+) failed=(\d+) puts=(\d+) posts=(\d+) "
    r"elapsed=[\d.]+s rate=[\d.]+/s p50=\S+ p99=\S+ errors=(\S+)$"
)


def test_sensor_sim_devices_write_their_readings(gateway_only: Target) -> None:
    t = gateway_only
    res = tool(
        "tools.sensor_sim", "--gateway", f"{t.host}:{t.coap_port}", "--devices", "3",
        "--interval", "0.1", "--count", "2", "--token", t.write_token, "--ack-timeout-ms", "500",
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    m = SUMMARY.match(res.stdout.strip())
    assert m, res.stdout
    assert m.groups() == ("3", "6", "15", "0", "9", "6", "none")
    for i in range(3):
        status, _, body = t.http_request("GET", f"/home/sensors/sim-{i:03d}/log")
        assert status == 200
        lines = body.decode().splitlines()
        assert lines[0] == "seq,reading" and [x.split(",")[0] for x in lines[1:]] == ["0", "1"]
        status, _, temp = t.http_request("GET", f"/home/sensors/sim-{i:03d}/temp")
        assert (status, temp) == (200, lines[-1].split(",")[1].encode())


def test_sensor_sim_counts_refusals_and_exits_1(target: Target) -> None:
    t = target
    res = tool(
        "tools.sensor_sim", "--gateway", f"localhost:{t.coap_port}", "--devices", "1",
        "--interval", "0.05", "--count", "2", "--token", "not-the-token", "--no-log",
        "--prefix", "refused",
    )  # fmt: skip
    assert res.returncode == 1
    m = SUMMARY.match(res.stdout.strip())
    assert m and m.group(4) == "2" and m.group(7) == "coap-401:2", res.stdout
    assert "not-the-token" not in res.stdout + res.stderr


def test_sensor_sim_stops_on_sigterm_with_a_summary(target: Target) -> None:
    t = target
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
    env["ELASTIK_TOKEN"] = t.write_token
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tools.sensor_sim", "--gateway", f"{t.host}:{t.coap_port}",
            "--devices", "2", "--interval", "0.05", "--no-log", "--prefix", "term",
        ],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(200):
            if t.http_request("GET", "/home/sensors/term-001/temp")[0] == 200:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    m = SUMMARY.match(out.strip())
    assert m and int(m.group(3)) >= 2 and m.group(4) == "0", out


@pytest.mark.parametrize(
    "args",
    [
        ["--gateway", "localhost"],
        ["--gateway", "h:1", "--devices", "0"],
        ["--gateway", "h:1", "--interval", "-1"],
        ["--gateway", "h:1", "--count", "x"],
        [],
    ],
)
def test_sensor_sim_bad_arguments_exit_2(args: list[str]) -> None:
    res = tool("tools.sensor_sim", *args)
    assert res.returncode == 2
    assert "error:" in res.stderr and "Traceback" not in res.stderr
