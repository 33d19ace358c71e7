"""Our core vs the reference elastik-core 8.3.0, side by side in one run.

    .venv/bin/python bench/core_vs_reference.py [--quick] [--write-docs docs/benchmarks.md]

Starts both cores (ours: ``python -m elastik run``; the reference binary from
``ensure_reference()``) with the same ELASTIK_KEY on loopback ports, then for each scenario
loads one server at a time with the asyncio load generator of ``bench/_load.py`` running in
a separate process (keep-alive connections, one request in flight per connection), and
prints requests/s, p50 and p99 latency and the ratio ours/reference. Request counts and the
time per scenario are bounded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from _load import Result, Scenario, run_parallel  # noqa: E402
from _report import fs_type, machine, write_section  # noqa: E402

from tests.support import servers  # noqa: E402

MARK_START = "<!-- core_vs_reference:start -->"
MARK_END = "<!-- core_vs_reference:end -->"


@dataclass(frozen=True)
class Case:
    label: str
    kind: str
    concurrency: int


CASES = [
    Case("durable PUT, distinct paths, c=1", "put", 1),
    Case("durable PUT, distinct paths, c=16", "put", 16),
    Case("durable PUT, distinct paths, c=64", "put", 64),
    Case("durable POST append, c=16", "post", 16),
    Case("GET durable world (1 KiB), c=16", "get", 16),
    Case("memory PUT, c=16", "put_mem", 16),
]
# Requests per measurement are bounded by time (--seconds), not by count: a fixed count
# made the fast cases last a fraction of a second, where start-up effects dominate.
MAX_REQUESTS = 10_000_000


def prepare(srv: servers.Proc, case: Case, prefix: str) -> None:
    """Create the worlds a scenario reads or appends to."""
    import http.client

    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    auth = {"Authorization": "Bearer w"}
    targets: list[tuple[str, bytes]] = []
    if case.kind == "get":
        targets = [(prefix, b"g" * 1024)]
    elif case.kind == "post":
        targets = [(f"{prefix}/c{c}", b"") for c in range(case.concurrency)]
    for target, body in targets:
        conn.request("PUT", target, body=body, headers=auth)
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (200, 201), (target, resp.status)
    conn.close()


def measure(proc: servers.Proc, case: Case, seconds: float, tag: str, client_procs: int) -> Result:
    base = "/tmp/bench" if case.kind == "put_mem" else "/home/bench"
    prefix = f"{base}/{tag}"
    prepare(proc, case, prefix)
    sc = Scenario(
        proc.host, proc.port, case.kind, case.concurrency, MAX_REQUESTS, prefix=prefix,
        max_seconds=seconds, warmup=2 if case.kind in ("get", "put_mem") else 0,
    )  # fmt: skip
    return run_parallel(sc, min(client_procs, case.concurrency))


def median_round(results: list[Result]) -> Result:
    """The round with the median rate (this machine is shared; one round can be unlucky)."""
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


def table(rows: list[tuple[Case, Result, Result]]) -> str:
    head = (
        "| scenario | reference req/s | ours req/s | ours/ref | ref p50 ms | ours p50 ms "
        "| ref p99 ms | ours p99 ms |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for case, ref, ours in rows:
        ratio = ours.rps / ref.rps if ref.rps else float("nan")
        lines.append(
            f"| {case.label} | {ref.rps:,.0f} | {ours.rps:,.0f} | {ratio:.2f} | "
            f"{ref.p50_ms:.2f} | {ours.p50_ms:.2f} | {ref.p99_ms:.2f} | {ours.p99_ms:.2f} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one 1-second round per scenario")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of one measurement")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per scenario; median kept")
    ap.add_argument("--write-docs", type=Path, help="replace the Core vs reference section")
    ap.add_argument("--data-root", type=Path, help="where the data dirs go (default: temp dir)")
    ap.add_argument(
        "--client-procs", type=int, default=2,
        help="load-generator processes per scenario (connections are split between them)",
    )  # fmt: skip
    args = ap.parse_args()
    seconds, rounds = (1.0, 1) if args.quick else (args.seconds, args.rounds)
    load_before = os.getloadavg()[0]
    key = servers.new_key()
    rows: list[tuple[Case, Result, Result]] = []
    with tempfile.TemporaryDirectory(prefix="bench-core-", dir=args.data_root) as tmp:
        work = Path(tmp)
        fs = fs_type(work.resolve())
        ref = servers.reference(work, key=key)
        ours = servers.ours(work, key=key)
        with servers.running(ref), servers.running(ours):
            for n, case in enumerate(CASES):
                refs, ourses = [], []
                for k in range(rounds):  # alternate, so drifts of the machine hit both
                    procs = args.client_procs
                    refs.append(measure(ref, case, seconds, f"ref{n}r{k}", procs))
                    ourses.append(measure(ours, case, seconds, f"ours{n}r{k}", procs))
                r, o = median_round(refs), median_round(ourses)
                for name, res in (("reference", r), ("ours", o)):
                    if res.errors:
                        print(f"warning: {name} {case.label}: {res.statuses}", file=sys.stderr)
                rows.append((case, r, o))
                print(
                    f"{case.label:38s} ref {r.rps:8.0f}/s  ours {o.rps:8.0f}/s  "
                    f"ratio {o.rps / r.rps if r.rps else 0:5.2f}",
                    flush=True,
                )
    result = table(rows)
    print()
    print(result)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = (
        (" --quick" if args.quick else "")
        + (f" --seconds {args.seconds:g}" if args.seconds != 3.0 and not args.quick else "")
        + (f" --rounds {args.rounds}" if args.rounds != 3 and not args.quick else "")
        + (f" --client-procs {args.client_procs}" if args.client_procs != 2 else "")
    )
    text = (
        "## Core vs reference\n\n"
        f"Command: `.venv/bin/python bench/core_vs_reference.py{mode} --write-docs docs/benchmarks.md`  \n"
        f"Date: {now}  \nMachine: {machine()}; data directories on {fs}  \n"
        f"Load average (1 min) when the run started: {load_before:.2f}\n\n"
        "Both cores run side by side with the same ELASTIK_KEY on loopback; each scenario loads\n"
        f"one server at a time for {seconds:g} s, {rounds} round(s) alternating between the two\n"
        "servers, and keeps the median round of each; the load comes\n"
        f"from {args.client_procs} load-generator process(es) separate from\n"
        "the servers (raw asyncio streams on uvloop, keep-alive, one request in flight per\n"
        "connection, 256-byte bodies; the connections are split between the processes).\n"
        "`ours/ref` is the ratio of requests per second; latencies are per request, measured\n"
        "by the client.\n\n" + result
    )
    if args.write_docs:
        write_section(args.write_docs, "core_vs_reference", text)
        print(f"wrote {args.write_docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
