"""Run ``python -m gateway run`` as a real process in tests (other components' tests may
use this too: the SDK's and the MicroPython firmware's).

    from tests.gateway.gwproc import GatewayProc
    with running(ours(tmp_path)) as core, GatewayProc(core.url, tmp_path / "gw") as gw:
        ...  # CoAP on 127.0.0.1:gw.port

``start()`` returns once the gateway printed its ready line; ``stop()`` sends SIGTERM and
returns the exit code (0 for a clean drain).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.servers import free_udp_port

READY = re.compile(r"^gateway: coap://(?P<host>[^ ]+):(?P<port>\d+)/ -> (?P<core>\S+)")


class GatewayProc:
    def __init__(
        self,
        core_url: str | None,
        state_dir: Path,
        *,
        port: int | None = None,
        config: Path | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_udp_port()
        self.argv = [
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--coap-bind",
            f"127.0.0.1:{self.port}",
        ]
        self.argv += ["--state-dir", str(state_dir)]
        if core_url:
            self.argv += ["--core-url", core_url]
        if config:
            self.argv += ["--config", str(config)]
        self.argv += extra_args or []
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.ready_line = ""
        self.core_url = ""
        self._ready = threading.Event()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            m = READY.match(line)
            if m and not self._ready.is_set():
                self.ready_line = line.rstrip("\n")
                self.core_url = m.group("core")
                self._ready.set()
        self._ready.set()

    def start(self, timeout: float = 40.0) -> GatewayProc:
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._ready.wait(0.05):
            pass
        if not self.ready_line:
            self.kill()
            raise RuntimeError("gateway did not start:\n" + self.output())
        return self

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout: float = 15.0) -> int | None:
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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> GatewayProc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
