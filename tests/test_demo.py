"""The README's main command: core + gateway + simulated sensors, for real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.xdist_group("demo")
def test_demo_runs_core_gateway_and_sensors_and_stores_readings(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--duration", "6", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "sensor worlds stored" in res.stderr
    stored = [ln for ln in res.stderr.splitlines() if ln.strip().startswith("home/sensors/")]
    assert stored, res.stderr[-3000:]
    # The audit key is generated once and kept private in the state directory.
    key = tmp_path / "core.key"
    assert key.stat().st_mode & 0o077 == 0
    assert key.read_text().strip() not in res.stderr
    assert "Traceback" not in res.stderr


def test_demo_rejects_bad_arguments() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--duration", "soon"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "--duration" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.xdist_group("demo")
def test_ctrl_c_stops_the_demo_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole process group: the core, gateway and sensors
    get SIGINT at the same moment as the demo itself."""
    import os
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.demo", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    try:
        for line in proc.stderr:  # until the first report with sensor worlds in it
            lines.append(line)
            if line.strip().startswith("home/sensors/") or time.monotonic() > deadline:
                break
        os.killpg(proc.pid, signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = "".join(lines) + rest
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert "sensor worlds stored" in out
