"""Real processes for tests: our core, the reference elastik-core 8.3.0, free ports.

Every server listens on a loopback port chosen at run time. ``Proc.stop()`` sends SIGTERM
and waits; ``Proc.kill()`` sends SIGKILL (crash tests).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REF_VENV = ROOT / ".ref-venv"
REF_VERSION = "8.3.0"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that was free on 127.0.0.1 a moment ago (TCP by default, UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def new_key() -> str:
    return secrets.token_hex(32)


def reference_python() -> Path:
    return REF_VENV / "bin" / "python"


def ensure_reference() -> Path:
    """Path to the reference ``elastik-core`` binary, installing the wheel into .ref-venv.

    The wheel goes into its own virtual environment, never the project's: its package
    name ``elastik`` is ours too.
    """
    override = os.environ.get("ELASTIK_REF_BIN")
    if override:
        return Path(override)
    py = reference_python()
    if not py.exists():
        venv.EnvBuilder(with_pip=True).create(REF_VENV)
    probe = [str(py), "-c", "import elastik, pathlib; print(pathlib.Path(elastik.__file__).parent)"]
    res = subprocess.run(probe, capture_output=True, text=True)
    if res.returncode != 0:
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", f"elastik=={REF_VERSION}"], check=True
        )
        res = subprocess.run(probe, capture_output=True, text=True, check=True)
    return Path(res.stdout.strip()) / "_bin" / "elastik-core"


@dataclass
class Proc:
    """A server process started by a test."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0, wait_path: str = "/proc/version") -> Proc:
        self.log_path = self.log_path or (self.cwd / f"proc-{self.port}.log")
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.argv[0]} exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=1)
                conn.request("GET", wait_path)
                conn.getresponse().read()
                conn.close()
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.argv} did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait; SIGKILL if it does not exit. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the crash a power cut looks like to the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, timeout: float = 20.0) -> Proc:
        self.stop()
        self.proc = None
        return self.start(timeout)


def core_env(
    data: Path,
    port: int,
    key: str,
    *,
    read_token: str | None = None,
    write_token: str | None = "w",
    approve_token: str | None = "a",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
    env.update(ELASTIK_KEY=key, ELASTIK_DATA=str(data), ELASTIK_PORT=str(port))
    env["ELASTIK_HOST"] = "127.0.0.1"
    for name, value in (
        ("ELASTIK_READ_TOKEN", read_token),
        ("ELASTIK_WRITE_TOKEN", write_token),
        ("ELASTIK_APPROVE_TOKEN", approve_token),
    ):
        if value is not None:
            env[name] = value
    if extra:
        env.update(extra)
    return env


def ours(workdir: Path, *, key: str | None = None, data: Path | None = None, **kw: object) -> Proc:
    """Our core, ``python -m elastik run``, configured like the reference (not started)."""
    port = free_port()
    data = data or workdir / f"data-ours-{port}"
    env = core_env(data, port, key or new_key(), **kw)  # type: ignore[arg-type]
    return Proc([sys.executable, "-m", "elastik", "run"], env, workdir, port)


def reference(
    workdir: Path, *, key: str | None = None, data: Path | None = None, **kw: object
) -> Proc:
    """The reference elastik-core 8.3.0 binary, same configuration surface (not started)."""
    binary = ensure_reference()
    port = free_port()
    data = data or workdir / f"data-ref-{port}"
    env = core_env(data, port, key or new_key(), **kw)  # type: ignore[arg-type]
    return Proc([str(binary)], env, workdir, port)


def core(impl: str, workdir: Path, **kw: object) -> Proc:
    """``ours(...)`` or ``reference(...)`` by name ("ours" / "reference")."""
    if impl == "ours":
        return ours(workdir, **kw)  # type: ignore[arg-type]
    if impl == "reference":
        return reference(workdir, **kw)  # type: ignore[arg-type]
    raise ValueError(f"unknown implementation {impl!r}")


@contextlib.contextmanager
def running(proc: Proc, timeout: float = 20.0) -> Iterator[Proc]:
    proc.start(timeout)
    try:
        yield proc
    finally:
        proc.stop()
