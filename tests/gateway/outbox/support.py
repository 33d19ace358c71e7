"""Test support for the outbox tests: the harness process, a load generator whose payloads
make loss, duplicates and reordering visible, and the check against the core.

Payload design: path ``p`` gets ops 0, 1, 2, ... in order, one at a time (the next only
after the previous was acknowledged, like a device with CoAP NSTART=1). Op k is a PUT when
k % 10 == 0, with the whole history "0\\n1\\n...k\\n" as body, else a POST appending
"k\\n". So the final body is exactly "0\\n..n-1\\n" if and only if nothing was lost or
reordered after the last PUT, and the audit event count (one event per applied write) is
exactly n if and only if nothing was applied twice or lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiocoap.numbers.constants import TransportTuning

from tests.support import servers

ROOT = servers.ROOT
ACK_STATUSES = (200, 201, 202, 204)


def pick_core(workdir: Path, **kw: Any) -> servers.Proc:
    """Our core (it honours Idempotency-Key); OUTBOX_TEST_CORE=reference for comparison."""
    if os.environ.get("OUTBOX_TEST_CORE") == "reference":
        return servers.reference(workdir, **kw)
    return servers.ours(workdir, **kw)


class Harness:
    """The harness process (tests/gateway/outbox/harness.py)."""

    def __init__(self, workdir: Path, core_url: str, state_dir: Path, outbox: dict[str, Any]):
        self.workdir = workdir
        self.argv = [
            sys.executable,
            "-m",
            "tests.gateway.outbox.harness",
            "--core",
            core_url,
            "--state-dir",
            str(state_dir),
            "--outbox",
            json.dumps(outbox),
        ]
        self.log_path = workdir / "harness.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 20.0) -> Harness:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, env=dict(os.environ)
        )
        log.close()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(b"READY "):
                self.port = int(line.split()[1])
                return self
            if not line and self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"harness did not start: {line!r}\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Client:
    """One pipelined connection to the harness; answers matched by id."""

    def __init__(self) -> None:
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._reader_task: asyncio.Task[None] | None = None
        self.up = asyncio.Event()

    async def connect(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader))
        self.up.set()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                fut = self._waiting.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (ConnectionError, ValueError):
            pass
        finally:
            self.up.clear()
            waiting, self._waiting = self._waiting, {}
            for fut in waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("harness connection lost"))

    async def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        if not self.up.is_set() or self._writer is None:
            raise ConnectionError("not connected")
        self._next += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = fut
        self._writer.write((json.dumps({**msg, "id": self._next}) + "\n").encode())
        return await fut

    async def stats(self) -> dict[str, Any]:
        return (await self.request({"stats": 1}))["stats"]  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            with contextlib.suppress(Exception):
                await self._reader_task


def op_for(k: int) -> tuple[str, str]:
    if k % 10 == 0:
        return "PUT", "".join(f"{j}\n" for j in range(k + 1))
    return "POST", f"{k}\n"


@dataclass
class Load:
    """Path workers sending ordered ops through a Client until ``stop`` is set."""

    client: Any  # Client, or CoapClient; per_path overrides it (one device per path)
    paths: list[str]
    run_id: str
    pace_s: float
    per_path: dict[str, Any] | None = None
    acked: dict[str, int] = field(default_factory=dict)  # path -> ops acknowledged
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    resent: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        for path in self.paths:
            self.acked[path] = 0
            self._tasks.append(asyncio.create_task(self._worker(path)))

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self._tasks)

    @property
    def total(self) -> int:
        return sum(self.acked.values())

    async def _worker(self, path: str) -> None:
        client = self.per_path[path] if self.per_path else self.client
        k = 0
        while not self.stop.is_set():
            method, body = op_for(k)
            key = f"{self.run_id}:{path}:{k}"
            while True:  # until acknowledged: a device retransmits with the same key
                try:
                    reply = await client.request({"m": method, "p": path, "b": body, "k": key})
                except ConnectionError:
                    self.resent += 1
                    await client.up.wait()
                    continue
                if reply.get("s") in ACK_STATUSES:
                    self.statuses[reply["s"]] = self.statuses.get(reply["s"], 0) + 1
                    break
                name = str(reply.get("e") or reply.get("s"))
                self.errors[name] = self.errors.get(name, 0) + 1
                await asyncio.sleep(0.05)
            k += 1
            self.acked[path] = k
            await asyncio.sleep(self.pace_s)


async def reconnecting(client: Client, port_of: Any, stop: asyncio.Event) -> None:
    """Keep ``client`` connected to the harness whose port ``port_of()`` gives."""
    while not stop.is_set():
        if not client.up.is_set():
            with contextlib.suppress(OSError):
                await client.connect(port_of())
        await asyncio.sleep(0.05)


def http_get(url: str, path: str) -> tuple[int, dict[str, str], bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def check_exactly_once(core_url: str, acked: dict[str, int]) -> list[str]:
    """Problems found (empty list: every acknowledged write is in the core exactly once,
    in order). ``acked[path]`` ops were acknowledged; none was sent beyond them."""
    problems = []
    for path, n in sorted(acked.items()):
        if n == 0:
            continue
        status, _, body = http_get(core_url, path)
        expected = "".join(f"{j}\n" for j in range(n)).encode()
        if status != 200 or body != expected:
            got = body.decode(errors="replace").split()
            problems.append(f"{path}: body has {len(got)} lines, expected {n}: tail {got[-5:]}")
        status, headers, _ = http_get(core_url, f"/proc/audit{path}/verify")
        events = int(headers.get("x-audit-events", "-1"))
        if status != 200 or headers.get("x-audit-valid") != "true" or events != n:
            problems.append(f"{path}: verify {status}, {events} audit events, expected {n}")
    return problems


async def wait_drained(client: Client, timeout: float) -> dict[str, Any]:
    """Poll the harness until its outbox is empty; returns the last stats."""
    deadline = time.monotonic() + timeout
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stats = await client.stats()
        if stats["depth"] == 0 and stats["inflight_replays"] == 0:
            return stats
        await asyncio.sleep(0.2)
    raise AssertionError(f"outbox did not drain in {timeout}s: {stats}")


class _QuickRetransmit(TransportTuning):  # type: ignore[misc]
    # Retransmit after 0.5 s instead of 2 s (and a little more often), so that a device
    # finds a restarted gateway within a second or two; same message id as always.
    ACK_TIMEOUT = 0.5
    MAX_RETRANSMIT = 6


class CoapClient:
    """One device: its own aiocoap context (UDP socket), so CoAP's NSTART=1 applies per
    device, not to the whole load. Requests are CON; aiocoap retransmits them with the
    same message id (the gateway derives the Idempotency-Key from it), and raises after
    MAX_RETRANSMIT, which becomes ConnectionError here (the worker then sends again)."""

    def __init__(self, port: int, token: str = "w") -> None:
        self.port = port
        self.token = token
        self.ctx: Any = None
        self.up = asyncio.Event()

    async def connect(self) -> CoapClient:
        from aiocoap import Context

        self.ctx = await Context.create_client_context()
        self.up.set()
        return self

    async def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        from aiocoap.error import Error as CoapError

        from tests.gateway.conftest import coap_message

        req = coap_message(msg["m"], self.port, msg["p"], str(msg["b"]).encode(), token=self.token)
        req.transport_tuning = _QuickRetransmit()
        try:
            resp = await self.ctx.request(req).response
        except CoapError as exc:
            raise ConnectionError(f"no answer: {exc!r}") from None
        if resp.code.is_successful():
            return {"s": 200}
        return {"e": str(resp.code)}

    async def close(self) -> None:
        if self.ctx is not None:
            await self.ctx.shutdown()


def outbox_depth(state_dir: Path) -> int:
    """Queued entries in a gateway's outbox, read like the CLI does (read-only)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{state_dir / 'outbox.db'}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM pending").fetchone()[0])
    finally:
        conn.close()


def outbox_counter(state_dir: Path, name: str) -> int:
    """A lifetime counter as the gateway last flushed it (about once a second)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{state_dir / 'outbox.db'}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()
