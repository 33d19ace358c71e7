"""The engine benchmark runs and reports its batching counters (no timing asserted)."""

from __future__ import annotations

import re

import pytest
from elastik.server import enginebench


@pytest.mark.parametrize("method", ["put", "post"])
def test_enginebench_smoke(capsys: pytest.CaptureFixture[str], method: str):
    assert (
        enginebench.main(["--concurrency", "8", "--ops", "64", "--worlds", "4", "--method", method])
        == 0
    )
    out = capsys.readouterr().out
    m = re.fullmatch(
        rf"{method.upper()} concurrency=8 ops=64 body=100B: \d+/s, (\d+) fsyncs "
        r"\(([\d.]+) ops per fsync\), max batch \d+\n",
        out,
    )
    assert m is not None, out
    assert 1 <= int(m.group(1)) <= 64
