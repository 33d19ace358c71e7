"""The benchmark scripts still run end to end (short settings; no figure is asserted).

Speed is measured by bench/, never asserted: these only check that each comparison starts
both systems, drives load through them without errors and prints its table, so a script
that rotted is noticed here rather than on the day someone needs the figures.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("bench-smoke")


def run(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_core_vs_reference_quick_runs_every_scenario_on_both_servers() -> None:
    res = run("bench/core_vs_reference.py", "--quick", "--client-procs", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [
        line for line in res.stdout.splitlines() if line.startswith("| ") and "|---" not in line
    ]
    assert len(rows) == 1 + 6, res.stdout  # header + six scenarios
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        ref, ours = (float(cells[i].replace(",", "")) for i in (1, 2))
        assert ref > 0 and ours > 0, row
    assert "warning:" not in res.stderr, res.stderr[-3000:]  # no error statuses


def test_gateway_coap_runs_every_cell_on_both_systems() -> None:
    res = run("bench/gateway_coap.py", "--seconds", "0.5", "--warmup", "0.2", "--rounds", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = re.findall(r"^\| (gateway \+ our core|reference built-in) \|.*$", res.stdout, re.M)
    assert len(rows) == 8, res.stdout
    for line in res.stdout.splitlines():
        if line.startswith(("| gateway", "| reference")):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert float(cells[3]) > 0, line  # PUT/s
            assert cells[6] == "0", line  # no non-2.xx answers
    assert "x the reference" in res.stdout
