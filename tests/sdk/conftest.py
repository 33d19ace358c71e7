"""Servers shared by the SDK suite: our core (started with ``elastik.start()``) and the
reference binary, both with the same tokens and ``ELASTIK_PERSIST_HEADERS=x-meta-*``.

``core`` is parametrized over both, so every client test runs against each server and a
divergence shows up as a failure on one side only.
"""

from __future__ import annotations

import importlib.util
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import elastik
import pytest
from elastik.sdk import listen as listen_mod

from tests.support.servers import Proc, free_port, free_udp_port, reference

WRITE, APPROVE = "w", "a"
EXTRA_ENV = {"ELASTIK_PERSIST_HEADERS": "x-meta-*"}


@dataclass
class Core:
    kind: str  # "ours" | "reference"
    url: str
    coap_port: int | None = None
    proc: Proc | None = None


def our_core_available() -> bool:
    return importlib.util.find_spec("elastik.server.cli") is not None


@pytest.fixture(scope="session")
def our_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    if not our_core_available():
        pytest.skip("our core (elastik.server.cli) is not written yet")
    data = tmp_path_factory.mktemp("ours") / "data"
    coap_port = free_udp_port()
    e = elastik.start(
        key=secrets.token_hex(32),
        write_token=WRITE,
        approve_token=APPROVE,
        port=free_port(),
        data=data,
        env={**EXTRA_ENV, "ELASTIK_COAP_PORT": str(coap_port)},
    )
    try:
        yield Core("ours", e.url, coap_port)
    finally:
        elastik.stop()


@pytest.fixture(scope="session")
def reference_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    work = tmp_path_factory.mktemp("ref")
    coap_port = free_udp_port()
    proc = reference(
        work,
        write_token=WRITE,
        approve_token=APPROVE,
        extra={**EXTRA_ENV, "ELASTIK_COAP_PORT": str(coap_port)},
    )
    proc.start()
    try:
        yield Core("reference", proc.url, coap_port, proc)
    finally:
        proc.stop()


@pytest.fixture(params=["ours", "reference"])
def core(request: pytest.FixtureRequest) -> Core:
    name = "our_core" if request.param == "ours" else "reference_core"
    return request.getfixturevalue(name)


@pytest.fixture
def e(core: Core) -> Elastik:
    """An approve-token client (it may write and delete everywhere)."""
    return elastik.Elastik(core.url, bearer_token=APPROVE)


@pytest.fixture
def p(request: pytest.FixtureRequest) -> str:
    """A fresh path prefix for this test, so tests can share a server."""
    name = request.node.name.split("[")[0].removeprefix("test_")[:40]
    return f"sdk/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _clean_routes() -> Iterator[None]:
    listen_mod.clear_routes()
    listen_mod.clear_lifecycle_hooks()
    yield
    listen_mod.clear_routes()
    listen_mod.clear_lifecycle_hooks()


Elastik = elastik.Elastik
ROOT = Path(__file__).resolve().parents[2]
