"""CoAP PUTs per second end to end: device -> gateway -> our core, side by side with the
reference elastik-core's built-in CoAP surface, on durable (home/) and memory (tmp/)
worlds, with 16 and 64 requests outstanding.

    .venv/bin/python bench/gateway_coap.py [--seconds 5] [--rounds 3] [--write-docs docs/benchmarks.md]

The load generator runs in its own process: one UDP socket, N lanes each keeping one CON
PUT outstanding (its own small encoder, no CoAP library), each lane writing its own world
(a sensor updating its reading). A request unanswered after 2 s is retransmitted with the
same MID (as a device would) and counted in ``retx``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

# -- load generator (runs in a child process) -------------------------------------------------


def con_put(mid: int, token: bytes, path: list[bytes], payload: bytes, auth: bytes) -> bytes:
    out = bytearray([0x40 | len(token), 3]) + mid.to_bytes(2, "big") + token
    prev = 0
    for number, value in [(11, p) for p in path] + [(65001, auth)]:
        delta = number - prev
        dn, dx = (
            (delta, b"")
            if delta < 13
            else (13, bytes([delta - 13]))
            if delta < 269
            else (14, (delta - 269).to_bytes(2, "big"))
        )
        ln, lx = (len(value), b"") if len(value) < 13 else (13, bytes([len(value) - 13]))
        out.append((dn << 4) | ln)
        out += dx + lx + value
        prev = number
    return bytes(out) + b"\xff" + payload


class _Gen(asyncio.DatagramProtocol):
    def __init__(self, scenario: dict) -> None:
        self.sc = scenario
        self.pending: dict[
            bytes, tuple[int, float, bytes, float]
        ] = {}  # token -> lane, t0, dgram, sent
        self.lat: list[float] = []
        self.codes: dict[str, int] = {}
        self.retx = 0
        self.mid = 0
        self.seq = 0
        self.stop_at = 0.0
        self.done = asyncio.get_running_loop().create_future()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def fire(self, lane: int) -> None:
        if time.perf_counter() >= self.stop_at:
            if not self.pending and not self.done.done():
                self.done.set_result(None)
            return
        self.mid = (self.mid + 1) & 0xFFFF
        self.seq += 1
        token = self.seq.to_bytes(4, "big")
        ns = self.sc["namespace"]
        path = [ns.encode(), b"bench", f"l{lane}".encode()]
        dgram = con_put(
            self.mid, token, path, b"%d" % self.seq + b"x" * 32, self.sc["token"].encode()
        )
        now = time.perf_counter()
        self.pending[token] = (lane, now, dgram, now)
        assert self.transport is not None
        self.transport.sendto(dgram)

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        tkl = data[0] & 15
        token = data[4 : 4 + tkl]
        entry = self.pending.pop(token, None)
        if entry is None or data[1] == 0:
            return
        lane, t0, _d, _s = entry
        now = time.perf_counter()
        if now >= self.stop_at - self.sc["seconds"] and now < self.stop_at:
            self.lat.append(now - t0)
            code = f"{data[1] >> 5}.{data[1] & 31:02d}"
            self.codes[code] = self.codes.get(code, 0) + 1
        self.fire(lane)

    async def retransmit(self) -> None:
        while not self.done.done():
            await asyncio.sleep(0.2)
            now = time.perf_counter()
            for token, (lane, t0, dgram, sent) in list(self.pending.items()):
                if now - sent > 2.0:
                    self.retx += 1
                    self.pending[token] = (lane, t0, dgram, now)
                    assert self.transport is not None
                    self.transport.sendto(dgram)
            if now > self.stop_at + 10:
                self.done.set_result(None)


async def _generate(sc: dict) -> dict:
    loop = asyncio.get_running_loop()
    transport, gen = await loop.create_datagram_endpoint(
        lambda: _Gen(sc), remote_addr=(sc["host"], sc["port"])
    )
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    warm = sc["warmup"]
    gen.stop_at = time.perf_counter() + warm + sc["seconds"]
    for lane in range(sc["concurrency"]):
        gen.fire(lane)
    task = asyncio.create_task(gen.retransmit())
    await gen.done
    task.cancel()
    transport.close()
    lat = sorted(gen.lat)
    n = len(lat)
    ok = sum(v for k, v in gen.codes.items() if k.startswith("2."))
    return {
        "requests": n,
        "ok": ok,
        "rps": ok / sc["seconds"],
        "p50_ms": lat[n // 2] * 1000 if n else 0.0,
        "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        "codes": gen.codes,
        "retx": gen.retx,
    }


def run_load(**scenario: object) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker"],
        input=json.dumps(scenario),
        capture_output=True,
        text=True,
        timeout=float(scenario["seconds"]) + float(scenario["warmup"]) + 60,  # type: ignore[arg-type]
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout)


# -- systems under test -------------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/proc/version")
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def core_env(data: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
    env.update(
        ELASTIK_KEY=secrets.token_hex(32),
        ELASTIK_DATA=str(data),
        ELASTIK_PORT=str(port),
        ELASTIK_HOST="127.0.0.1",
        ELASTIK_WRITE_TOKEN="w",
        ELASTIK_APPROVE_TOKEN="a",
    )
    env.update(extra or {})
    return env


def start_ours(work: Path) -> tuple[list[subprocess.Popen], int]:
    port = free_port()
    core = subprocess.Popen(
        [sys.executable, "-m", "elastik", "run"],
        env=core_env(work / "ours", port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=work,
    )
    wait_http(port, core)
    coap = free_port(socket.SOCK_DGRAM)
    gw = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--core-url",
            f"http://127.0.0.1:{port}",
            "--coap-bind",
            f"127.0.0.1:{coap}",
            "--state-dir",
            str(work / "gw"),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert gw.stderr is not None
    line = gw.stderr.readline()
    if not re.match(r"gateway: coap://", line):
        raise RuntimeError(f"gateway did not start: {line}")
    return [gw, core], coap


def start_reference(work: Path) -> tuple[list[subprocess.Popen], int]:
    from tests.support.servers import ensure_reference

    port, coap = free_port(), free_port(socket.SOCK_DGRAM)
    ref = subprocess.Popen(
        [str(ensure_reference())],
        env=core_env(work / "ref", port, {"ELASTIK_COAP_PORT": str(coap)}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=work,
    )
    wait_http(port, ref)
    return [ref], coap


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


# -- report ---------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=1, help="rounds per cell; the median is kept")
    ap.add_argument("--write-docs", default=None)
    ap.add_argument("--worker", action="store_true")
    args = ap.parse_args()
    if args.worker:
        # The load generator should cost as little as possible: the devices it stands for
        # would not run on the gateway's machine. So no cycle collection (as timeit) and
        # uvloop where available (as bench/_load.py).
        gc.disable()
        scenario = json.loads(sys.stdin.read())
        try:
            import uvloop

            result = uvloop.run(_generate(scenario))
        except ImportError:
            result = asyncio.run(_generate(scenario))
        print(json.dumps(result))
        return 0
    rows = []
    load_at_start = os.getloadavg()[0]
    systems = (("gateway + our core", start_ours), ("reference built-in", start_reference))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started: list[tuple[str, list[subprocess.Popen], int]] = []
        try:
            for system, starter in systems:
                procs, coap = starter(work)
                started.append((system, procs, coap))
            cells: dict[tuple[str, str, int], list[dict]] = {}
            for ns, label in (("home", "durable"), ("tmp", "memory")):
                for conc in (16, 64):
                    # Rounds alternate between the systems, so a drift of this shared
                    # machine's speed hits both alike; the median round is kept.
                    for _ in range(args.rounds):
                        for system, _procs, coap in started:
                            cells.setdefault((system, label, conc), []).append(
                                run_load(
                                    host="127.0.0.1",
                                    port=coap,
                                    namespace=ns,
                                    concurrency=conc,
                                    seconds=args.seconds,
                                    warmup=args.warmup,
                                    token="w",
                                )
                            )
                    for system, _procs, _coap in started:
                        runs = cells[(system, label, conc)]
                        r = sorted(runs, key=lambda x: x["rps"])[len(runs) // 2]
                        rows.append((system, label, conc, r))
                        print(
                            f"{system:20} {label:8} c={conc:<3} {r['rps']:9.0f} PUT/s  "
                            f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
                            f"codes {r['codes']} retx {r['retx']}",
                            file=sys.stderr,
                        )
        finally:
            for _system, procs, _coap in started:
                stop(procs)
    order = {name: i for i, (name, _s) in enumerate(systems)}
    rows.sort(key=lambda row: (order[row[0]], row[1] != "durable", row[2]))
    table = render(rows, args.seconds, args.rounds, load_at_start)
    print(table)
    if args.write_docs:
        write_section(Path(args.write_docs), "gateway_coap", table)
    return 0


def render(rows: list, seconds: float, rounds: int = 1, load: float = 0.0) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = [
        "### CoAP PUTs end to end (`bench/gateway_coap.py`)",
        "",
        f"Machine: {os.cpu_count()} CPUs, {cpu}, Python {platform.python_version()}. "
        f"{seconds:.0f} s per cell after 1 s warm-up; both systems run side by side and the "
        f"{rounds} round(s) of each cell alternate between them (median kept); each of N "
        "lanes keeps one CON PUT (~40-byte payload) outstanding on its own world; load "
        "generator in its own process. Load average when the run started: "
        f"{load:.1f} (other work on the machine competes for its CPUs).",
        "",
        "| system | worlds | outstanding | PUT/s | p50 ms | p99 ms | non-2.xx | retransmits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for system, label, conc, r in rows:
        bad = sum(v for k, v in r["codes"].items() if not k.startswith("2."))
        out.append(
            f"| {system} | {label} | {conc} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {bad} | {r['retx']} |"
        )
    ours = {(lab, c): r["rps"] for s, lab, c, r in rows if s.startswith("gateway")}
    ref = {(lab, c): r["rps"] for s, lab, c, r in rows if s.startswith("reference")}
    for c in (16, 64):
        if ref.get(("durable", c)):
            out.append("")
            out.append(
                f"Durable, {c} outstanding: gateway + our core = "
                f"{ours[('durable', c)] / ref[('durable', c)]:.1f} x the reference."
            )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
