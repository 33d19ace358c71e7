"""Fixtures for the firmware tests (real MicroPython unix port, real UDP, real servers)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fw_support


@pytest.fixture(scope="session")
def mpy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """micro/*.py and the test driver compiled by mpy-cross, as deployed to a board."""
    return fw_support.compile_all(tmp_path_factory.mktemp("mpy"))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fw_support.Target]:
    """The CoAP server under test: our gateway in front of our core (or the reference
    binary with ELASTIK_FW_TARGET=reference), shared by the tests of one module."""
    with fw_support.fw_target(tmp_path_factory.mktemp("target")) as t:
        yield t


@pytest.fixture
def gateway_only(target: fw_support.Target) -> fw_support.Target:
    """For tests of what only our gateway does (POST, DELETE, Block2, dedup): skipped when
    ELASTIK_FW_TARGET=reference points the suite at the reference's CoAP surface."""
    if target.kind == "reference":
        pytest.skip("the reference's CoAP surface has no POST, DELETE, Block2 or dedup")
    return target


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """On a failure, attach whether the core and gateway are alive, and their log tails."""
    report = yield
    if report.failed and call.when in ("call", "setup"):
        funcargs = getattr(item, "funcargs", {})
        t = funcargs.get("target") or funcargs.get("gateway_only")
        if isinstance(t, fw_support.Target):
            report.sections.append(("elastik servers", t.diagnostics()))
    return report
