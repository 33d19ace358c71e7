"""Fixtures for the black-box suite: real cores on loopback ports, one per configuration.

Every contract test takes ``impl`` (parametrized over the reference binary and our core)
and asks the session pool for a server in a named configuration; a server is started the
first time a test of that (implementation, configuration) pair runs in this worker and is
stopped at the end of the session. Tests use unique world names, so sharing is safe.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.core.blackbox.wire import Server
from tests.support import servers

# Configurations every implementation can be started in. Values are extra environment
# variables on top of the standard tokens (write "w", approve "a", no read token).
CONFIGS: dict[str, dict[str, str]] = {
    "default": {},
    "read": {"ELASTIK_READ_TOKEN": "r"},
    "persist": {
        "ELASTIK_PERSIST_HEADERS": " X-Meta-* , last-modified,,x-z*y,*,cache-*",
        "ELASTIK_DENY_HEADERS": "x-meta-secret*,*,content-language",
    },
    "quota": {
        "ELASTIK_MAX_WORLD_BYTES": "100",
        "ELASTIK_MAX_MEMORY_BYTES": "150",
        "ELASTIK_MAX_STORAGE_BYTES": "250",
    },
    "listen": {"ELASTIK_LISTEN_REPLAY_MAX": "4", "ELASTIK_MAX_LISTEN_CONNECTIONS": "3"},
}

IMPLS = [pytest.param("reference", marks=pytest.mark.reference), "ours"]


def command(impl: str) -> list[str]:
    if impl == "reference":
        return [str(servers.ensure_reference())]
    return [sys.executable, "-m", "elastik", "run"]


def make_proc(
    impl: str, workdir: Path, key: str, extra: Mapping[str, str] | None = None, **kw: object
) -> servers.Proc:
    return servers.core(impl, workdir, key=key, extra=dict(extra or {}), **kw)


class Pool:
    """Lazily started servers keyed by (implementation, configuration)."""

    def __init__(self, workdir: Path, key: str):
        self.workdir = workdir
        self.key = key
        self.procs: dict[tuple[str, str], servers.Proc] = {}
        self.failed: dict[tuple[str, str], str] = {}

    def get(self, impl: str, config: str = "default") -> Server:
        slot = (impl, config)
        if slot in self.failed:
            pytest.fail(f"{impl} core did not start in config {config}: {self.failed[slot]}")
        proc = self.procs.get(slot)
        if proc is None or proc.proc is None or proc.proc.poll() is not None:
            wd = self.workdir / f"{impl}-{config}"
            wd.mkdir(exist_ok=True)
            tokens = {"read_token": "r"} if config == "read" else {}
            extra = {k: v for k, v in CONFIGS[config].items() if k != "ELASTIK_READ_TOKEN"}
            proc = make_proc(impl, wd, self.key, extra, **tokens)
            try:
                proc.start()
            except RuntimeError as exc:
                self.failed[slot] = str(exc)[-2000:]
                pytest.fail(f"{impl} core did not start in config {config}: {exc}")
            self.procs[slot] = proc
        srv = Server(proc.host, proc.port, impl, self.key)
        srv.extra["proc"] = proc
        srv.extra["config"] = config
        return srv

    def close(self) -> None:
        for proc in self.procs.values():
            proc.stop()


@pytest.fixture(scope="session")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    p = Pool(tmp_path_factory.mktemp("cores"), servers.new_key())
    yield p
    p.close()


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def srv(pool: Pool, impl: str) -> Server:
    return pool.get(impl, "default")


@pytest.fixture
def srv_read(pool: Pool, impl: str) -> Server:
    return pool.get(impl, "read")


@pytest.fixture
def srv_persist(pool: Pool, impl: str) -> Server:
    return pool.get(impl, "persist")


@pytest.fixture
def srv_quota(pool: Pool, impl: str) -> Server:
    return pool.get(impl, "quota")


@pytest.fixture
def srv_listen(pool: Pool, impl: str) -> Server:
    return pool.get(impl, "listen")


@pytest.fixture
def ours(pool: Pool) -> Server:
    """Our core in the default configuration (for the ours-only D1-D7 tests)."""
    return pool.get("ours", "default")


@pytest.fixture
def uid() -> str:
    """A fresh name fragment so tests sharing a server never touch each other's worlds."""
    return "t" + secrets.token_hex(5)


@dataclass
class Run:
    rc: int | None
    stderr: str
    stdout: str


def run_briefly(
    impl: str,
    env_overrides: Mapping[str, str | None],
    cwd: Path,
    *,
    timeout: float = 8.0,
) -> Run:
    """Run a core that is expected to exit on its own (fatal startup errors)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
    env.update(ELASTIK_HOST="127.0.0.1", ELASTIK_PORT=str(servers.free_port()))
    env["ELASTIK_DATA"] = str(cwd / "data")
    for k, v in env_overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    res = subprocess.run(
        command(impl), env=env, cwd=cwd, capture_output=True, timeout=timeout, text=True
    )
    return Run(res.returncode, res.stderr, res.stdout)
