"""Footprint of the MicroPython client, measured under the MicroPython unix port.

    .venv/bin/python bench/micro_footprint.py [--write-docs docs/benchmarks.md]

Starts our core and gateway, then reports: the .mpy sizes (mpy-cross, default flags); the
RAM the compiled module takes once imported; 100 put/get round trips in a 24 KB heap; the
heap allocated by one put (gc.mem_alloc before/after, no collection in between); and the
put latency through the gateway. The limits (6 KB, 24 KB, 256 bytes) are asserted by
firmware-tests/; this script only prints the figures (and writes them into the docs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "firmware-tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fw_support  # noqa: E402
from _report import machine as host_machine  # noqa: E402
from _report import write_section  # noqa: E402

IMPORT_PROBE = """
import gc
gc.collect()
a = gc.mem_alloc()
import elastik_micro
gc.collect()
b = gc.mem_alloc()
c = elastik_micro.Client("127.0.0.1", 9)
gc.collect()
print(b - a, gc.mem_alloc() - b)
"""

LATENCY_PROBE = """
import sys, time
import elastik_micro as em
c = em.Client("127.0.0.1", int(sys.argv[1]), token=sys.argv[2], timeout_ms=1000)
c.put("bench/micro", "0")
out = []
for i in range(200):
    t = time.ticks_us()
    c.put("bench/micro", "%d" % i)
    out.append(time.ticks_diff(time.ticks_us(), t))
print(" ".join(str(x) for x in out))
"""


def mp(args: list[str], mpy_dir: Path, heap: str | None = None) -> str:
    argv = [str(fw_support.micropython_bin())]
    if heap:
        argv += ["-X", f"heapsize={heap}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROPY")}
    env["MICROPYPATH"] = str(mpy_dir)
    res = subprocess.run(argv + args, capture_output=True, text=True, env=env, timeout=120)
    if res.returncode != 0:
        raise SystemExit(f"micropython failed: {res.stdout}{res.stderr}")
    return res.stdout


def machine() -> str:
    mpv = subprocess.run(
        [
            str(fw_support.micropython_bin()),
            "-c",
            "import sys; v = sys.implementation.version; print('MicroPython %d.%d.%d' % v[:3])",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{host_machine()}; {mpv} (unix port)"


def measure() -> str:
    with tempfile.TemporaryDirectory(prefix="micro-footprint-") as tmp_s:
        tmp = Path(tmp_s)
        mpy_dir = fw_support.compile_all(tmp / "mpy")
        sizes = {p.name: p.stat().st_size for p in sorted(mpy_dir.glob("elastik_micro*.mpy"))}
        src = {p.name: p.stat().st_size for p in sorted(fw_support.MICRO.glob("*.py"))}
        (tmp / "probe.py").write_text(IMPORT_PROBE)
        module_ram, client_ram = map(int, mp([str(tmp / "probe.py")], mpy_dir).split())
        (tmp / "latency.py").write_text(LATENCY_PROBE)
        with fw_support.fw_target(tmp / "target", "gateway") as t:
            rt = fw_support.run_board(
                mpy_dir, "24k", t.host, t.coap_port, t.write_token, "roundtrips", 100
            )
            alloc = fw_support.run_board(
                mpy_dir, "24k", t.host, t.coap_port, t.write_token, "alloc", 50
            )["alloc"]
            lat_us = [
                int(x)
                for x in mp(
                    [str(tmp / "latency.py"), str(t.coap_port), t.write_token], mpy_dir
                ).split()
            ]
    lat_ms = sorted(x / 1000 for x in lat_us)
    rows = [
        "| Figure | Value | Limit (asserted in firmware-tests/) |",
        "|---|---|---|",
    ]
    for name, size in sizes.items():
        limit = "≤ 6144 bytes" if name == "elastik_micro.mpy" else "(optional module)"
        py = src[name.replace(".mpy", ".py")]
        rows.append(
            f"| `{name}` (mpy-cross, default flags; source {py} bytes) | {size} bytes | {limit} |"
        )
    rows += [
        f"| RAM taken by importing `elastik_micro.mpy` | {module_ram} bytes | – |",
        f"| RAM taken by one `Client` (1152-byte buffer, socket, poll) | {client_ram} bytes | – |",
        f"| 100 put+get round trips in `-X heapsize=24k` | {rt['ok'][0]}/100 ok, "
        f"{rt['free'][0]} bytes free after setup | 100/100 |",
        f"| heap allocated per put (50 puts, min / median / max) | {min(alloc)} / "
        f"{int(statistics.median(alloc))} / {max(alloc)} bytes | ≤ 256 bytes |",
        f"| put latency through gateway + core (200 puts, p50 / p99) | "
        f"{lat_ms[len(lat_ms) // 2]:.2f} / {lat_ms[int(len(lat_ms) * 0.99)]:.2f} ms | – |",
    ]
    return (
        "## MicroPython client footprint (`bench/micro_footprint.py`)\n\n"
        f"Recorded {time.strftime('%Y-%m-%d', time.gmtime())} on {machine()}.\n"
        "The unix port is a 64-bit build (8-byte pointers, 32-byte GC blocks), so its\n"
        "RAM figures are an upper bound for 32-bit boards (ESP32, RP2040), where objects are\n"
        "about half the size. Nothing here was measured on a real board.\n\n" + "\n".join(rows)
    )


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/micro_footprint.py")
    p.add_argument("--write-docs", type=Path, help="replace the micro region of this file")
    args = p.parse_args()
    text = measure()
    print(text)
    if args.write_docs:
        write_section(args.write_docs, "micro", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
