"""A stand-in front door for the crash tests: StoreAndForward over the real core client.

Accepts requests over a local TCP line protocol, one JSON object per line:

    -> {"id": 7, "m": "POST", "p": "/home/a", "b": "7\\n", "k": "optional-key"}
    <- {"id": 7, "s": 202}                      (the status the front door would map)
    <- {"id": 7, "e": "OutboxFull"}             (a GatewayError)
    -> {"id": 8, "stats": 1}
    <- {"id": 8, "stats": {...}}                (StoreAndForward.stats())

Replies go out in completion order; an answer is only written once ``send`` returned, so an
ACK here means exactly what a CoAP 2.xx means in the real gateway. Prints ``READY <port>``
on stdout when it listens. SIGTERM closes cleanly (exit 0); the tests also SIGKILL it.

    python -m tests.gateway.outbox.harness --core URL --state-dir DIR [--outbox JSON]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from gateway.core_client import CoreClient
from gateway.flow import GatewayError, Request
from gateway.forwarder import StoreAndForward
from gateway.outbox import OutboxConfig


async def serve(ns: argparse.Namespace) -> int:
    config = OutboxConfig.from_mapping(json.loads(ns.outbox))
    saf = StoreAndForward(CoreClient(ns.core, timeout=ns.timeout), Path(ns.state_dir), config)
    await saf.start()

    async def one(msg: dict[str, object], writer: asyncio.StreamWriter) -> None:
        if "stats" in msg:
            reply: dict[str, object] = {"id": msg.get("id"), "stats": saf.stats()}
        else:
            headers = {"authorization": f"Bearer {ns.token}"}
            if msg.get("k"):
                headers["idempotency-key"] = str(msg["k"])
            request = Request(
                str(msg["m"]),  # type: ignore[arg-type]
                str(msg["p"]),
                str(msg.get("b", "")).encode(),
                headers,
                source="harness",
            )
            try:
                response = await saf.send(request)
                reply = {"id": msg["id"], "s": response.status}
            except GatewayError as exc:
                reply = {"id": msg["id"], "e": type(exc).__name__}
        if not writer.is_closing():
            writer.write((json.dumps(reply) + "\n").encode())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            while line := await reader.readline():
                # A task per request, created in arrival order: StoreAndForward decides
                # writes to one path in the order their tasks start.
                task = asyncio.create_task(one(json.loads(line), writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except ConnectionError:
            pass
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await saf.close()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness")
    parser.add_argument("--core", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--token", default="w")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--outbox", default="{}", help="OutboxConfig fields as a JSON object")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    return asyncio.run(serve(ns))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
