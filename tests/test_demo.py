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
