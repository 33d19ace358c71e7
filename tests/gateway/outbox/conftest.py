"""Fixtures for the outbox tests: real cores and harness processes, always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.outbox.support import Harness, pick_core
from tests.support import servers


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    """Processes registered here are stopped at the end of the test, even on failure."""
    started: list[Any] = []
    yield started
    for proc in reversed(started):
        try:
            proc.stop()
        except Exception:
            proc.kill()


@pytest.fixture
def core(tmp_path: Path, procs: list[Any]) -> servers.Proc:
    proc = pick_core(tmp_path).start()
    procs.append(proc)
    return proc


@pytest.fixture
def make_harness(tmp_path: Path, procs: list[Any]) -> Any:
    def make(core_url: str, outbox: dict[str, Any], state: str = "state") -> Harness:
        harness = Harness(tmp_path, core_url, tmp_path / state, outbox)
        procs.append(harness)
        return harness.start()

    return make
