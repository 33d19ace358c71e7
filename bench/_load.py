"""A small HTTP/1.1 load generator on raw asyncio streams (keep-alive, one request in flight
per connection), meant to cost the client as little as possible.

Use it in a separate process from the servers it measures (``run_in_subprocess``), so the
load generator and the server do not share one interpreter or one GIL:

    from _load import Scenario, run_in_subprocess   # with bench/ on sys.path
    result = run_in_subprocess(Scenario(host, port, kind="put", concurrency=16, total=4000))

Request kinds (every body is ``body_size`` bytes):

- ``put``:    PUT  {prefix}/{i}          distinct paths, one per request
- ``post``:   POST {prefix}/c{conn}      one pre-created world per connection (appends)
- ``get``:    GET  {prefix}              one world, created beforehand by the caller
- ``put_mem``:PUT  /tmp/... {prefix}/{i % 1000} (memory worlds when the prefix is under /tmp)
- ``put_idem``: as ``put``, each request with its own Idempotency-Key (as the gateway sends)

Run directly (``python bench/_load.py [SCENARIO-JSON [RESULT-FILE]]``) it reads one JSON
scenario from its argument (or stdin) and writes one JSON result to RESULT-FILE (or stdout).
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Scenario:
    host: str
    port: int
    kind: str  # put | post | get | put_mem | put_idem
    concurrency: int
    total: int  # requests to send (upper bound)
    prefix: str = "/home/bench"
    body_size: int = 256
    token: str = "w"
    max_seconds: float = 30.0  # stop early when this is exceeded (bounded run time)
    warmup: int = 0  # requests per connection not measured
    keep_latencies: bool = False  # return every latency (to merge several processes)
    conn_offset: int = 0  # first connection number (distinct POST worlds across processes)
    index_offset: int = 0  # first request index (distinct PUT paths across processes)


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_us: list[int] = field(default_factory=list)  # only with keep_latencies


def _request_bytes(sc: Scenario, i: int, conn: int, body: bytes) -> bytes:
    if sc.kind == "get":
        method, target, payload = "GET", sc.prefix, b""
    elif sc.kind == "post":
        method, target, payload = "POST", f"{sc.prefix}/c{conn}", body
    elif sc.kind == "put_mem":
        method, target, payload = "PUT", f"{sc.prefix}/{i % 1000}", body
    else:
        method, target, payload = "PUT", f"{sc.prefix}/{i}", body
    head = f"{method} {target} HTTP/1.1\r\nHost: {sc.host}:{sc.port}\r\n"
    if sc.kind == "put_idem":
        head += f"Idempotency-Key: {sc.prefix}/{i}/{i * 2654435761 % 2**32:08x}\r\n"
    if method != "GET":
        head += f"Authorization: Bearer {sc.token}\r\nContent-Length: {len(payload)}\r\n"
    return head.encode() + b"\r\n" + payload


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value)
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def run(sc: Scenario) -> Result:
    body = (b"0123456789abcdef" * (sc.body_size // 16 + 1))[: sc.body_size]
    next_index = 0
    latencies: list[int] = []
    statuses: dict[str, int] = {}
    errors = 0
    deadline = time.monotonic() + sc.max_seconds

    async def worker(conn: int) -> None:
        nonlocal next_index, errors
        reader, writer = await asyncio.open_connection(sc.host, sc.port)
        try:
            for _ in range(sc.warmup):
                writer.write(_request_bytes(sc, -1 - conn, conn, body))
                await _read_response(reader)
            await start.wait()
            while next_index < sc.total and time.monotonic() < deadline:
                i = next_index + sc.index_offset
                next_index += 1
                data = _request_bytes(sc, i, conn + sc.conn_offset, body)
                t0 = time.perf_counter_ns()
                writer.write(data)
                status = await _read_response(reader)
                latencies.append(time.perf_counter_ns() - t0)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status >= 400:
                    errors += 1
        finally:
            writer.close()

    start = asyncio.Event()
    tasks = [asyncio.create_task(worker(c)) for c in range(sc.concurrency)]
    await asyncio.sleep(0)
    await asyncio.sleep(0.2)  # let every connection open (and warm up) before the clock starts
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - t0
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p * n))] / 1e6 if n else 0.0

    kept = [x // 1000 for x in latencies] if sc.keep_latencies else []
    rps = n / seconds if seconds else 0.0
    return Result(n, errors, seconds, rps, pct(0.50), pct(0.99), statuses, kept)


def run_in_subprocess(sc: Scenario, timeout: float = 300.0) -> Result:
    """Run one scenario in a fresh interpreter (its own CPU time, its own event loop)."""
    res = subprocess.run(
        [sys.executable, str(Path(__file__).resolve())],
        input=json.dumps(asdict(sc)),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return Result(**json.loads(res.stdout))


def run_parallel(sc: Scenario, procs: int, timeout: float = 300.0) -> Result:
    """Split the connections of one scenario over ``procs`` load-generator processes (when
    one client process would be the bottleneck) and merge their figures."""
    if procs <= 1:
        return run_in_subprocess(sc, timeout)
    children = []
    per_conn, per_total = max(1, sc.concurrency // procs), sc.total // procs
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        for k in range(procs):
            part = Scenario(**{**asdict(sc), "concurrency": per_conn, "total": per_total,
                               "keep_latencies": True, "conn_offset": k * per_conn,
                               "index_offset": k * per_total})  # fmt: skip
            out = Path(tmp) / f"result-{k}.json"
            # Results go through a file: a result of ~100 KB through a pipe was seen cut at
            # the pipe's 64 KiB (the event loop leaves the inherited descriptor non-blocking).
            child = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), json.dumps(asdict(part)), str(out)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            children.append((child, out))
        parts = []
        for child, out in children:
            _, err = child.communicate(timeout=timeout)
            if child.returncode != 0 or not out.exists():
                raise RuntimeError(
                    f"load generator exited {child.returncode}: {err.strip()[-2000:]}"
                )
            parts.append(Result(**json.loads(out.read_text())))
    lat = sorted(x for p in parts for x in p.latencies_us)
    n = len(lat)
    seconds = max(p.seconds for p in parts)
    statuses: dict[str, int] = {}
    for res in parts:
        for code, count in res.statuses.items():
            statuses[code] = statuses.get(code, 0) + count

    def pct(q: float) -> float:
        return lat[min(n - 1, int(q * n))] / 1e3 if n else 0.0

    return Result(n, sum(p.errors for p in parts), seconds, n / seconds if seconds else 0.0,
                  pct(0.50), pct(0.99), statuses)  # fmt: skip


def main() -> None:
    # Like timeit: no cycle collection while measuring. This process lives seconds and makes
    # little cyclic garbage; the collector would only take CPU from the servers measured
    # (the devices or clients it stands for would not run on the server's machine).
    gc.disable()
    sc = Scenario(**json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()))
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio works, a little slower
        pass
    result = json.dumps(asdict(asyncio.run(run(sc))))
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(result)
    else:
        print(result)


if __name__ == "__main__":
    main()
