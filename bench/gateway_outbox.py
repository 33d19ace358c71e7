"""Store-and-forward throughput: pass-through, into the outbox, and replay after recovery.

    .venv/bin/python bench/gateway_outbox.py [--quick] [--write-docs docs/benchmarks.md]

Drives ``StoreAndForward`` (gateway/forwarder.py) over the real core client in this
process with C concurrent writers (PUTs of 64-byte bodies spread over 200 paths, like
sensors), against our core (``python -m elastik run``) in its own process:

1. core up: writes pass straight through (no outbox write): acknowledged writes/s;
2. core down (its port refuses connections): every write is committed to the outbox
   (SQLite WAL, synchronous=FULL, group commit) before it is acknowledged: writes/s, and
   how many writes shared one commit (one fsync);
3. core back: how fast the replay drains that backlog (replay_rate set high here; the
   default of 200/s deliberately leaves room for live traffic).

4. the same three through the whole gateway over CoAP (``--no-coap`` skips them).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from _report import fs_type, machine, write_section  # noqa: E402

from gateway.core_client import CoreClient  # noqa: E402
from gateway.flow import Request  # noqa: E402
from gateway.forwarder import StoreAndForward  # noqa: E402
from gateway.outbox import OutboxConfig  # noqa: E402
from tests.support import servers  # noqa: E402

MARK_START = "<!-- gateway_outbox:start -->"
MARK_END = "<!-- gateway_outbox:end -->"
PATHS = 200
AUTH = {"authorization": "Bearer w"}


@dataclass
class Row:
    label: str
    writes: int
    seconds: float
    p50_ms: float
    p99_ms: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.writes / self.seconds if self.seconds else 0.0


async def drive(saf: StoreAndForward, total: int, concurrency: int, tag: str) -> Row:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(total))

    async def writer() -> None:
        for i in counter:
            body = b"%-64d" % i
            request = Request("PUT", f"/home/bench/{tag}/s{i % PATHS}", body, AUTH)
            t0 = time.perf_counter()
            response = await saf.send(request)
            latencies.append(time.perf_counter() - t0)
            statuses[response.status] = statuses.get(response.status, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(concurrency)))
    seconds = time.perf_counter() - t0
    latencies.sort()
    bad = {s: n for s, n in statuses.items() if s not in (200, 201, 202)}
    if bad:
        raise SystemExit(f"unexpected answers: {bad}")
    return Row(
        "",
        len(latencies),
        seconds,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


FS = {"type": "unknown"}
LOAD = {"start": 0.0}


async def run(quick: bool) -> list[Row]:
    scale = 5 if quick else 1
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        work = Path(tmp)
        FS["type"] = fs_type(work)
        core = servers.ours(work)
        config = OutboxConfig(
            replay_rate=100_000, replay_concurrency=32, backoff_min_s=0.05, backoff_max_s=0.2
        )
        saf = StoreAndForward(CoreClient(core.url, timeout=5), work / "state", config)
        await saf.start()
        try:
            core.start()
            for c in (1, 32):
                row = await drive(saf, 8000 // scale // (4 if c == 1 else 1), c, f"up{c}")
                row.label = f"core up: pass-through, c={c}"
                row.note = f"outbox writes: {saf.stats()['store_ops']}"
                rows.append(row)
            await asyncio.to_thread(core.kill)
            await saf.send(Request("PUT", "/home/bench/probe", b"x", AUTH))  # notice it
            for c in (1, 64, 256):
                before = saf.stats()
                n = (1000 if c == 1 else 20000) // scale
                row = await drive(saf, n, c, f"down{c}")
                after = saf.stats()
                commits = after["group_commits"] - before["group_commits"]
                row.label = f"core down: into the outbox, c={c}"
                row.note = f"{row.writes / max(commits, 1):.1f} writes per commit (fsync)"
                rows.append(row)
            depth = saf.stats()["depth"]
            t0 = time.perf_counter()
            await asyncio.to_thread(core.start)
            started = time.perf_counter()
            while saf.stats()["depth"] or saf.stats()["inflight_replays"]:
                await asyncio.sleep(0.01)
            done = time.perf_counter()
            rows.append(
                Row(
                    "core back: replay of the backlog",
                    int(depth),
                    done - started,
                    0.0,
                    0.0,
                    f"replay_concurrency=32; core start took {started - t0:.1f} s (excluded)",
                )
            )
        finally:
            await saf.close()
            core.stop()
    return rows


def coap_rows(seconds: float) -> list[Row]:
    """The same through the whole gateway: ``python -m gateway run`` and CoAP over UDP,
    driven by the raw-UDP load generator of bench/gateway_coap.py in its own process (64
    lanes, each a device keeping one CON PUT outstanding on its own world)."""
    import sqlite3
    import subprocess

    sys.path.insert(0, str(HERE))
    from gateway_coap import run_load  # the CoAP load generator (child process)

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-outbox-coap-") as tmp:
        work = Path(tmp)
        core = servers.ours(work).start()
        udp = servers.free_udp_port()
        toml = work / "gateway.toml"
        toml.write_text("[outbox]\nreplay_rate = 100000.0\nreplay_concurrency = 32\n"
                        "backoff_min_s = 0.05\nbackoff_max_s = 0.2\n")  # fmt: skip
        gw = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--core-url", core.url, "--coap-bind",
             f"127.0.0.1:{udp}", "--state-dir", str(work / "gw"), "--config", str(toml),
             "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            assert gw.stderr is not None
            if not gw.stderr.readline().startswith("gateway: coap://"):
                raise SystemExit("gateway did not start")

            def load(label: str) -> Row:
                r = run_load(host="127.0.0.1", port=udp, namespace="home", concurrency=64,
                             seconds=seconds, warmup=1.0, token="w")  # fmt: skip
                return Row(label, int(r["ok"]), seconds, r["p50_ms"], r["p99_ms"],
                           f"codes {r['codes']}, retransmissions {r['retx']}")  # fmt: skip

            rows.append(load("CoAP: core up, pass-through, 64 devices"))
            core.kill()
            rows.append(load("CoAP: core down, into the outbox, 64 devices"))
            db = f"file:{work / 'gw' / 'outbox.db'}?mode=ro"

            def depth() -> int:
                conn = sqlite3.connect(db, uri=True, timeout=5)
                try:
                    return int(conn.execute("SELECT count(*) FROM pending").fetchone()[0])
                finally:
                    conn.close()

            backlog = depth()
            core.start()
            started = time.perf_counter()
            while depth():
                time.sleep(0.02)
            rows.append(Row("CoAP: core back, replay of the backlog", backlog,
                            time.perf_counter() - started, 0.0, 0.0, "replay_concurrency=32"))  # fmt: skip
        finally:
            gw.terminate()
            gw.wait(15)
            core.stop()
    return rows


def render(rows: list[Row]) -> str:
    out = [
        f"Recorded {dt.date.today().isoformat()} on {machine()}; 1-minute load average"
        f" {LOAD['start']:.1f} when the run started (the machine is shared: other work"
        " competes for the same CPUs, so treat the figures as lower bounds).",
        "Command: `.venv/bin/python bench/gateway_outbox.py --write-docs docs/benchmarks.md`",
        "",
        "First rows: StoreAndForward over the real core client, in-process writers (PUT,",
        "64-byte bodies, 200 paths); our core in its own process. Acknowledged = `send()`",
        f"returned: the core answered, or the outbox transaction was fsynced (state dir on {FS['type']}).",
        "CoAP rows: the whole gateway (`python -m gateway run`) driven over UDP by the load",
        "generator of bench/gateway_coap.py in another process (64 devices, one CON PUT",
        "outstanding each, 2.04 = acknowledged); Writes/s over the measured seconds.",
        "",
        "| Scenario | Writes | Writes/s | p50 ms | p99 ms | Notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        p50 = f"{r.p50_ms:.2f}" if r.p50_ms else "-"
        p99 = f"{r.p99_ms:.2f}" if r.p99_ms else "-"
        out.append(f"| {r.label} | {r.writes} | {r.rate:,.0f} | {p50} | {p99} | {r.note} |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the writes")
    parser.add_argument("--write-docs", type=Path, help="replace this file's outbox section")
    parser.add_argument("--no-coap", action="store_true", help="skip the CoAP end-to-end rows")
    ns = parser.parse_args()
    LOAD["start"] = os.getloadavg()[0]
    rows = asyncio.run(run(ns.quick))
    if not ns.no_coap:
        rows += coap_rows(2.0 if ns.quick else 5.0)
    text = render(rows)
    print(text)
    if ns.write_docs:
        write_section(ns.write_docs, "gateway_outbox", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
