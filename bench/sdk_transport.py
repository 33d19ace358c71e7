"""SDK transports: 1,000 sequential small PUTs and GETs, one-shot vs keep-alive, against
our core (started with ``elastik.start()``). Prints a Markdown table with the ratio.

    .venv/bin/python bench/sdk_transport.py [--n 1000] [--write-docs docs/benchmarks.md]

``--write-docs`` replaces only the region between ``<!-- sdk_transport:start -->`` and
``<!-- sdk_transport:end -->`` (appending the region if it is missing), re-reading the
file right before writing because other scripts own other regions.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import elastik

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import cpu_model, write_section

START, END = "<!-- sdk_transport:start -->", "<!-- sdk_transport:end -->"
BODY = b"x" * 64  # a small sensor-sized value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tally:
    """Totals and per-request latencies of one transport, accumulated over blocks."""

    def __init__(self) -> None:
        self.put_s = self.get_s = 0.0
        self.lat_put: list[float] = []
        self.lat_get: list[float] = []

    def block(self, e: elastik.Elastik, tag: str, start: int, count: int) -> None:
        """``count`` sequential PUTs, then the same ``count`` paths read back with GETs."""
        t0 = time.perf_counter()
        for i in range(start, start + count):
            t = time.perf_counter()
            e.put(f"tmp/bench/{tag}/{i}", BODY)
            self.lat_put.append(time.perf_counter() - t)
        t1 = time.perf_counter()
        for i in range(start, start + count):
            t = time.perf_counter()
            body = e.get(f"tmp/bench/{tag}/{i}")
            self.lat_get.append(time.perf_counter() - t)
            assert body == BODY
        t2 = time.perf_counter()
        self.put_s += t1 - t0
        self.get_s += t2 - t1

    @property
    def total(self) -> float:
        return self.put_s + self.get_s

    def p50_ms(self, which: list[float]) -> float:
        return statistics.median(which) * 1000


def measure(n: int, blocks: int) -> str:
    size = max(1, n // blocks)
    with tempfile.TemporaryDirectory() as data:
        e = elastik.start(key=secrets.token_hex(32), write_token="w", port=free_port(), data=data)
        try:
            one_client = elastik.Elastik(e.url, bearer_token="w")
            ka_client = elastik.Elastik(e.url, bearer_token="w", keep_alive=True)
            Tally().block(ka_client, "warmup", 0, 50)  # first requests pay imports/caches
            one, ka = Tally(), Tally()
            # Interleave the transports in blocks so that load changes on a shared machine
            # hit both alike; each still does n sequential PUTs and n sequential GETs.
            done = 0
            while done < n:
                count = min(size, n - done)
                one.block(one_client, "oneshot", done, count)
                ka.block(ka_client, "keepalive", done, count)
                done += count
            ka_client.close()
        finally:
            elastik.stop()
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [
        "## SDK transports (`bench/sdk_transport.py`)",
        "",
        f"Recorded {when} on {os.cpu_count()} CPUs, {cpu_model()}; Python "
        f"{platform.python_version()}; 1-minute load average {load:.1f} at the end. Our core"
        f" started with `elastik.start()` on loopback; per transport {n} sequential PUTs and"
        f" {n} sequential GETs of distinct {len(BODY)}-byte `tmp/` worlds from one thread,"
        f" run in {blocks} interleaved blocks.",
        "",
        "| Transport | PUT total | GET total | PUT p50 | GET p50 | requests/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in (("one-shot (default)", one), ("keep-alive", ka)):
        rows.append(
            f"| {name} | {r.put_s:.2f} s | {r.get_s:.2f} s | {r.p50_ms(r.lat_put):.2f} ms"
            f" | {r.p50_ms(r.lat_get):.2f} ms | {2 * n / r.total:.0f} |"
        )
    p50_ratio = (one.p50_ms(one.lat_put) + one.p50_ms(one.lat_get)) / (
        ka.p50_ms(ka.lat_put) + ka.p50_ms(ka.lat_get)
    )
    rows += [
        "",
        f"Keep-alive is **{one.total / ka.total:.2f}x** faster than one-shot over the"
        f" {2 * n} requests (PUT {one.put_s / ka.put_s:.2f}x, GET {one.get_s / ka.get_s:.2f}x;"
        f" median request {p50_ratio:.2f}x).",
    ]
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/sdk_transport.py")
    p.add_argument("--n", type=int, default=1000, help="requests of each kind per transport")
    p.add_argument("--blocks", type=int, default=10, help="interleaved blocks (default 10)")
    p.add_argument("--write-docs", type=Path, help="replace the sdk_transport region of this file")
    args = p.parse_args()
    if args.n < 1:
        p.error("--n must be at least 1")
    text = measure(args.n, max(1, args.blocks))
    print(text)
    if args.write_docs:
        write_section(args.write_docs, "sdk_transport", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
