"""The board-facing parts under the MicroPython unix port: wifi_connect and the examples.

No board runs in CI, so `machine`, `network` and `esp32` are stand-ins (mp/fakeboard/);
everything past them is real: the examples' code, elastik_micro, UDP, the gateway and
the core they write to."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from fw_support import MICRO, MP_DIR, Target, micropython_bin

pytestmark = pytest.mark.xdist_group("fw_gateway")

FAKEBOARD = MP_DIR / "fakeboard"


def run_board_script(
    script: Path, tmp: Path, *, wifi: str = "ok", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROPY")}
    env["MICROPYPATH"] = os.pathsep.join([str(tmp), str(FAKEBOARD), str(MICRO), ".frozen"])
    env["FAKE_WIFI"] = wifi
    return subprocess.run(
        [str(micropython_bin()), str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


WIFI_SCRIPT = """
import elastik_micro as em
import errno, network
try:
    print("ip", em.wifi_connect("lab", "secret-pass", {timeout}))
except OSError as e:
    print("error", e.args[0] == errno.ETIMEDOUT, e.args[1])
print("active", network.WLAN(network.STA_IF).active())
"""


@pytest.mark.parametrize(
    ("wifi", "want"),
    [
        ("ok", ["ip 10.0.0.42", "active True"]),
        ("slow", ["ip 10.0.0.42", "active True"]),
        ("never", ["error True wifi status 1", "active False"]),
    ],
)
def test_wifi_connect(tmp_path: Path, wifi: str, want: list[str]) -> None:
    script = tmp_path / "wifi.py"
    script.write_text(WIFI_SCRIPT.format(timeout=300))
    res = run_board_script(script, tmp_path, wifi=wifi)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "connect lab"
    assert lines[1:] == want
    assert "secret-pass" not in res.stdout + res.stderr


def test_client_module_imports_where_network_does_not_exist() -> None:
    res = subprocess.run(
        [str(micropython_bin()), "-c", "import elastik_micro; print('ok')"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"MICROPYPATH": f"{MICRO}:.frozen"},
    )
    assert res.stdout.strip() == "ok", res.stderr


def write_config(tmp: Path, t: Target, interval: int = 60) -> None:
    (tmp / "config.py").write_text(
        f'WIFI_SSID = "lab"\nWIFI_PASSWORD = "pw"\nGATEWAY_HOST = "{t.host}"\n'
        f"GATEWAY_PORT = {t.coap_port}\nTOKEN = {t.write_token!r}\nINTERVAL_S = {interval}\n"
        "DEVICE_ID = None\nADC_PIN = 26\nLED_PIN = 'LED'\n"
    )


def test_esp32_example_puts_a_reading_then_deep_sleeps(tmp_path: Path, target: Target) -> None:
    write_config(tmp_path, target)
    res = run_board_script(MICRO / "examples" / "esp32_main.py", tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == "deepsleep 60000"
    status, _, body = target.http_request("GET", "/home/sensors/face0001/temp")
    assert (status, body) == (200, b"41.00")


def test_picow_example_puts_the_adc_temperature(tmp_path: Path, target: Target) -> None:
    write_config(tmp_path, target, interval=5)
    res = run_board_script(MICRO / "examples" / "picow_main.py", tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == "deepsleep 5000"
    status, _, body = target.http_request("GET", "/home/sensors/face0001/temp")
    volts = 14000 * 3.3 / 65535
    assert (status, body) == (200, b"%.2f" % (27 - (volts - 0.706) / 0.001721))


def test_async_example_reports_while_other_tasks_run(tmp_path: Path, target: Target) -> None:
    write_config(tmp_path, target, interval=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROPY")}
    env["MICROPYPATH"] = os.pathsep.join([str(tmp_path), str(FAKEBOARD), str(MICRO), ".frozen"])
    proc = subprocess.Popen(
        [str(micropython_bin()), str(MICRO / "examples" / "async_main.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(200):
            status, _, body = target.http_request("GET", "/home/sensors/face0001/adc")
            if status == 200 or proc.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        out = proc.communicate()[0].decode()
    assert (status, body) == (200, b"14000"), out
