"""In-process throughput of the storage engine (no HTTP): ``python -m elastik.server.enginebench``.

Runs N concurrent clients doing durable PUTs (or POSTs) of small bodies against a fresh
data directory and prints writes/s plus the writer's batching counters, so the effect of
group commit is visible (ops per fsync).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from .engine import Engine
from .model import EngineConfig


async def run(concurrency: int, ops: int, size: int, worlds: int, method: str, data: Path) -> str:
    body = b"x" * size
    with Engine.open(EngineConfig(data=data, key=b"bench-key-" * 4)) as eng:
        if method == "post":
            await asyncio.gather(*[eng.put(f"home/b{i}", b"", "t", ()) for i in range(worlds)])
        before = {s.name: s.value for s in eng.pool_stats()}

        async def client(c: int) -> None:
            for i in range(ops // concurrency):
                world = f"home/b{(c * 7919 + i) % worlds}"
                if method == "post":
                    await eng.append(world, body)
                else:
                    await eng.put(world, body, "application/octet-stream", ())

        t0 = time.perf_counter()
        await asyncio.gather(*[client(c) for c in range(concurrency)])
        elapsed = time.perf_counter() - t0
        after = {s.name: s.value for s in eng.pool_stats()}
    done = ops // concurrency * concurrency
    fsyncs = after["writer_fsyncs"] - before["writer_fsyncs"]
    return (
        f"{method.upper()} concurrency={concurrency} ops={done} body={size}B: "
        f"{done / elapsed:.0f}/s, {fsyncs} fsyncs ({done / max(fsyncs, 1):.1f} ops per fsync), "
        f"max batch {after['writer_max_batch']}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m elastik.server.enginebench")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--ops", type=int, default=4000)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--worlds", type=int, default=1000)
    p.add_argument("--method", choices=["put", "post"], default="put")
    ns = p.parse_args(argv)
    for conc in ns.concurrency:
        with tempfile.TemporaryDirectory() as tmp:
            ops = ns.ops if conc > 1 else min(ns.ops, 500)
            line = asyncio.run(run(conc, ops, ns.size, ns.worlds, ns.method, Path(tmp) / "data"))
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
