"""Simulate N CoAP sensor devices against a gateway, with the MicroPython client.

    python -m tools.sensor_sim --gateway HOST:PORT --devices N --interval S
        [--count K] [--token T] [--ack-timeout-ms MS] [--no-log] [--seed N] [--prefix P]

Each device <id> (sim-000, sim-001, ... with the default --prefix) runs elastik_micro.Client (the same code the
boards run, here on CPython) in its own thread: every S seconds it PUTs a reading to
home/sensors/<id>/temp and POSTs a "<seq>,<reading>" line to home/sensors/<id>/log
(created by a PUT first). Devices start spread over the first interval. Without --count
it runs until SIGINT/SIGTERM. At the end it prints one summary line to stdout; the exit
status is 0 when every request succeeded, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "micro"))

import elastik_micro  # noqa: E402  (micro/ is not a package: it is what boards import)


def _gateway(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = 0.0
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return x


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.sensor_sim", description=__doc__.split("\n")[0]
    )
    p.add_argument("--gateway", type=_gateway, required=True, help="gateway HOST:PORT (CoAP)")
    p.add_argument("--devices", type=_positive_int, default=1, help="number of devices")
    p.add_argument("--interval", type=_positive_float, default=5.0, help="seconds per reading")
    p.add_argument("--count", type=_positive_int, help="readings per device (default: forever)")
    p.add_argument("--token", help="write token (default: $ELASTIK_TOKEN)")
    p.add_argument("--ack-timeout-ms", type=_positive_int, default=2000, help="CoAP ACK_TIMEOUT")
    p.add_argument("--no-log", action="store_true", help="only PUT readings, no POST log")
    p.add_argument("--seed", type=int, default=1, help="seed for the simulated readings")
    p.add_argument("--prefix", default="sim", help="device ids are <prefix>-000, -001, ...")
    return p


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    readings: int = 0
    puts: int = 0
    posts: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    def record(self, kind: str, started: float, error: str | None) -> None:
        with self.lock:
            if error is None:
                if kind == "put":
                    self.puts += 1
                else:
                    self.posts += 1
                self.latencies_ms.append((time.monotonic() - started) * 1000)
            else:
                self.failed += 1
                self.errors[error] = self.errors.get(error, 0) + 1


def _request(stats: Stats, kind: str, call: Any, *args: Any) -> bool:
    started = time.monotonic()
    error = None
    try:
        call(*args)
    except elastik_micro.CoapError as exc:
        error = f"coap-{exc.code}"
    except OSError as exc:
        error = "timeout" if exc.args and exc.args[0] == 110 else "network"
    stats.record(kind, started, error)
    return error is None


def resolve(host: str) -> str:
    """IPv4 first: a gateway bound to 127.0.0.1 does not answer on ::1, which is what
    "localhost" often resolves to first. Other names are left to the client."""
    try:
        return str(socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0])
    except OSError:
        return host


def device(
    index: int, args: argparse.Namespace, token: str | None, stats: Stats, stop: threading.Event
) -> None:
    host, port = args.gateway
    ident = f"{args.prefix}-{index:03d}"
    rng = random.Random(args.seed * 1000 + index)
    value = 18 + rng.random() * 6
    client = elastik_micro.Client(host, port, token=token, timeout_ms=args.ack_timeout_ms)
    log_ready = False
    try:
        if stop.wait(args.interval * index / args.devices):  # spread the first readings
            return
        seq = 0
        next_at = time.monotonic()
        while args.count is None or seq < args.count:
            value += rng.uniform(-0.25, 0.25)
            reading = f"{value:.2f}"
            _request(stats, "put", client.put, f"sensors/{ident}/temp", reading)
            if not args.no_log:
                log = f"sensors/{ident}/log"
                if not log_ready:
                    log_ready = _request(stats, "put", client.put, log, "seq,reading\n")
                if log_ready:
                    _request(stats, "post", client.post, log, f"{seq},{reading}\n")
            with stats.lock:
                stats.readings += 1
            seq += 1
            next_at += args.interval
            if stop.wait(max(0.0, next_at - time.monotonic())):
                return
    finally:
        client.close()


def summary(stats: Stats, devices: int, elapsed: float) -> str:
    lat = sorted(stats.latencies_ms)

    def pct(q: float) -> str:
        return f"{lat[min(len(lat) - 1, int(q * len(lat)))]:.1f}ms" if lat else "-"

    ok = stats.puts + stats.posts
    errors = ",".join(f"{k}:{v}" for k, v in sorted(stats.errors.items())) or "none"
    return (
        f"sensor_sim: devices={devices} readings={stats.readings} ok={ok} "
        f"failed={stats.failed} puts={stats.puts} posts={stats.posts} "
        f"elapsed={elapsed:.2f}s rate={ok / elapsed if elapsed else 0:.1f}/s "
        f"p50={pct(0.5)} p99={pct(0.99)} errors={errors}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    token = args.token or os.environ.get("ELASTIK_TOKEN") or None
    args.gateway = (resolve(args.gateway[0]), args.gateway[1])  # once, not per device
    stats = Stats()
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    threads = [
        threading.Thread(target=device, args=(i, args, token, stats, stop), daemon=True)
        for i in range(args.devices)
    ]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)
    print(summary(stats, args.devices, time.monotonic() - started), flush=True)
    return 0 if stats.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
