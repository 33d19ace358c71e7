"""The README's main job: core + CoAP gateway + simulated sensors, on embedded defaults.

    python -m tools.demo [--state-dir .edge-demo] [--duration S] [--devices N]

Starts the core (``python -m elastik run``) with a generated audit key kept in the state
directory, the gateway (``python -m gateway run``) forwarding to it, and a simulated sensor
fleet (``python -m tools.sensor_sim``). Prints what the store holds every few seconds.
Ctrl-C (or ``--duration``) stops everything in reverse order; exit status 0 when every part
ran and the store holds readings.
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PREFERRED_HTTP_PORT = 3105
PREFERRED_COAP_PORT = 5683


def _port_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pick_port(preferred: int, kind: int) -> int:
    if _port_free(preferred, kind):
        return preferred
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key(state: Path) -> str:
    path = state / "core.key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: the core exited with status {proc.returncode}")
        try:
            _get(port, "/proc/version")
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("demo: the core did not answer in time")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--state-dir", default=".edge-demo", type=Path)
    ap.add_argument(
        "--duration", type=float, default=0.0, help="stop after S seconds (0: run until Ctrl-C)"
    )
    ap.add_argument("--devices", type=int, default=3)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args(argv)

    state: Path = args.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    http_port = _pick_port(PREFERRED_HTTP_PORT, socket.SOCK_STREAM)
    coap_port = _pick_port(PREFERRED_COAP_PORT, socket.SOCK_DGRAM)
    write_token = "demo-write"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
    core_env = dict(
        env,
        ELASTIK_KEY=_key(state),
        ELASTIK_DATA=str(state / "core-data"),
        ELASTIK_PORT=str(http_port),
        ELASTIK_HOST="127.0.0.1",
        ELASTIK_WRITE_TOKEN=write_token,
        ELASTIK_APPROVE_TOKEN=secrets.token_hex(16),
    )
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    py = sys.executable
    try:
        core = subprocess.Popen([py, "-m", "elastik", "run"], env=core_env)
        procs.append(("core", core))
        _wait_http(http_port, core, 30)
        gw = subprocess.Popen(
            [
                py, "-m", "gateway", "run",
                "--core-url", f"http://127.0.0.1:{http_port}",
                "--coap-bind", f"127.0.0.1:{coap_port}",
                "--state-dir", str(state / "gateway"),
            ],
            env=env,
        )  # fmt: skip
        procs.append(("gateway", gw))
        time.sleep(1.0)
        sim = subprocess.Popen(
            [
                py, "-m", "tools.sensor_sim",
                "--gateway", f"127.0.0.1:{coap_port}",
                "--devices", str(args.devices),
                "--interval", str(args.interval),
                "--token", write_token,
            ],
            env=env,
        )  # fmt: skip
        procs.append(("sensors", sim))
        print(
            f"demo: core http://127.0.0.1:{http_port}/  gateway coap://127.0.0.1:{coap_port}/  "
            f"state {state}\ndemo: try  curl http://127.0.0.1:{http_port}/proc/du",
            file=sys.stderr,
        )
        started = time.monotonic()
        next_report = started + 3
        worlds: list[str] = []  # the store's worlds at the last report
        while not stopping:
            if args.duration and time.monotonic() - started >= args.duration:
                break
            for name, p in procs:
                if p.poll() is not None:
                    print(f"demo: {name} exited with status {p.returncode}", file=sys.stderr)
                    return 1
            if time.monotonic() >= next_report:
                next_report += 5
                try:
                    _, du = _get(http_port, "/proc/du")
                    worlds = du.decode().splitlines()
                    print(f"demo: {len(worlds)} worlds in the store", file=sys.stderr)
                    for line in worlds[:6]:
                        print("   ", line.replace("\t", "  "), file=sys.stderr)
                except OSError as exc:
                    print(f"demo: core not answering: {exc}", file=sys.stderr)
            time.sleep(0.2)
        try:
            _, du = _get(http_port, "/proc/du")
            worlds = du.decode().splitlines()
        except OSError:
            pass  # Ctrl-C reached the core as well (one process group): the last report
        readings = [ln for ln in worlds if ln.startswith("home/sensors/")]
        print(f"demo: stopping; {len(readings)} sensor worlds stored", file=sys.stderr)
        return 0 if readings else 1
    finally:
        for _name, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _name, p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
