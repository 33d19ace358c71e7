"""Start and stop the gateway: core client (or an embedded core), the store-and-forward
layer when it is installed, the request flow and the CoAP front door.

``Gateway.start()`` returns when the CoAP socket is bound and the core answers;
``shutdown()`` always runs, drains in-flight requests, then closes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from elastik.runtime import tune_gc

from .auth import Authorizer
from .coap.idemkeys import ExchangeKeys
from .coap.journal import ExchangeJournal
from .coap.server import CoapSite
from .coap.transport import create_context
from .config import GatewayConfig
from .core_client import CoreClient
from .counters import Counters
from .flow import Upstream
from .observe import ObserveHub
from .pipeline import RequestFlow

log = logging.getLogger("gateway")

# How long SIGTERM waits for in-flight CoAP requests before closing anyway.
DRAIN_SECONDS = 5.0
# How long the embedded core may take to answer /proc/version after it is started.
EMBEDDED_START_SECONDS = 30.0


class StartupError(Exception):
    """The gateway cannot start (bind failure, embedded core failed, ...)."""


class BindError(StartupError, OSError):
    """The CoAP socket could not be bound; ``errno`` is the OS error (an embedding core
    prints it the reference's way)."""

    def __init__(self, bind: str, exc: OSError) -> None:
        OSError.__init__(self, exc.errno, exc.strerror or str(exc))
        self.bind = bind

    def __str__(self) -> str:
        return f"coap_bind {self.bind}: {self.strerror}"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _read_or_create(path: Path, make: Any) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    value = make()
    _write_private(path, value + "\n")
    return str(value)


class EmbeddedCore:
    """``python -m elastik run`` as a child process, its data and key in the state dir."""

    def __init__(self, cfg: GatewayConfig, state_dir: Path) -> None:
        self.cfg = cfg
        self.dir = state_dir / "core"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.tokens: dict[str, str] = {}

    async def start(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        key = _read_or_create(self.dir / "key", lambda: secrets.token_hex(32))
        # Generated tokens are hex: they never start with '-', so `--token T` works on any
        # command line (argparse would take a leading '-' for an option).
        tokens = {
            "write": self.cfg.core_write_token
            or _read_or_create(self.dir / "write-token", lambda: secrets.token_hex(24)),
            "approve": self.cfg.core_approve_token
            or self.cfg.upstream_token
            or _read_or_create(self.dir / "approve-token", lambda: secrets.token_hex(24)),
        }
        self.tokens = tokens
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
        env.update(
            ELASTIK_KEY=key,
            ELASTIK_DATA=str(self.dir / "data"),
            ELASTIK_HOST="127.0.0.1",
            ELASTIK_PORT=str(port),
            ELASTIK_WRITE_TOKEN=tokens["write"],
            ELASTIK_APPROVE_TOKEN=tokens["approve"],
        )
        if self.cfg.core_read_token:
            env["ELASTIK_READ_TOKEN"] = self.cfg.core_read_token
        argv = list(self.cfg.core_command) or [sys.executable, "-m", "elastik", "run"]
        logf = open(self.dir / "core.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(argv, env=env, stdout=logf, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise StartupError(f"cannot start the embedded core ({argv[0]}): {exc}") from None
        finally:
            logf.close()
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + EMBEDDED_START_SECONDS
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    tail = (self.dir / "core.log").read_text(errors="replace")[-600:]
                    raise StartupError(
                        f"embedded core exited with {self.proc.returncode}; log tail:\n{tail}"
                    )
                try:
                    async with session.get(self.url + "/proc/version") as r:
                        if r.status == 200:
                            return self.url
                except (aiohttp.ClientError, OSError):
                    pass
                await asyncio.sleep(0.1)
        await self.stop()
        raise StartupError(f"embedded core did not answer within {EMBEDDED_START_SECONDS:.0f}s")

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.05)
        proc.kill()
        proc.wait()


async def wrap_with_outbox(core: Upstream, cfg: GatewayConfig, state_dir: Path) -> Upstream:
    """The store-and-forward layer (gateway/forwarder.py) around the core client, started.

    Imported lazily so the front door also runs in a build without it (bare core client).
    """
    try:
        forwarder = importlib.import_module("gateway.forwarder")
        outbox = importlib.import_module("gateway.outbox")
    except ImportError:
        log.warning("store-and-forward layer not installed: forwarding straight to the core")
        return core
    try:
        settings = outbox.OutboxConfig(**dict(cfg.outbox))
    except TypeError as exc:
        raise StartupError(f"outbox: {exc}") from None
    except ValueError as exc:  # OutboxConfigError names the key
        raise StartupError(str(exc)) from None
    try:
        saf = forwarder.StoreAndForward(core, state_dir, settings)
        await saf.start()
    except Exception as exc:
        raise StartupError(f"outbox in {str(state_dir)!r}: {exc}") from None
    return saf  # type: ignore[no-any-return,unused-ignore]


class Gateway:
    def __init__(self, cfg: GatewayConfig, *, use_outbox: bool = True) -> None:
        self.cfg = cfg
        self.use_outbox = use_outbox
        self.counters = Counters()
        self.state_dir = Path(cfg.state_dir)
        self.embedded: EmbeddedCore | None = None
        self.core: CoreClient | None = None
        self.upstream: Upstream | None = None
        self.hub: ObserveHub | None = None
        self.site: CoapSite | None = None
        self.journal: ExchangeJournal | None = None
        self.context: Any = None
        self.port = 0
        self.core_url = cfg.core_url

    @property
    def coap_url(self) -> str:
        host = self.cfg.coap_host
        if ":" in host:
            host = f"[{host}]"
        return f"coap://{host}:{self.port}/"

    async def start(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"state_dir {str(self.state_dir)!r}: {exc.strerror}") from None
        cfg = self.cfg
        if not cfg.core_url:
            self.embedded = EmbeddedCore(cfg, self.state_dir)
            self.core_url = await self.embedded.start()
            if cfg.device_mode and not cfg.upstream_token:
                cfg = replace(cfg, upstream_token=self.embedded.tokens["approve"])
        self.core = CoreClient(
            self.core_url, timeout=cfg.request_timeout, connections=cfg.core_connections
        )
        self.upstream = self.core
        if self.use_outbox:
            self.upstream = await wrap_with_outbox(self.core, cfg, self.state_dir)
        stats = getattr(self.upstream, "stats", None)
        if callable(stats):
            self.counters.source("outbox", stats)
        self.hub = ObserveHub(self.core, self.counters)
        flow = RequestFlow(self.upstream, Authorizer(cfg), self.counters)
        # First sightings of CoAP exchanges, so a restart keeps their Idempotency-Keys.
        self.journal = journal = ExchangeJournal(self.state_dir)
        keys = ExchangeKeys(on_new=journal.record)
        keys.restore(journal.load(), time.time())
        self.counters.gauge("exchange_journal_errors", lambda: journal.errors)
        self.site = CoapSite(
            flow,
            self.hub,
            self.counters,
            max_in_flight=cfg.max_in_flight,
            max_observations=cfg.max_observations,
            max_block1_bytes=cfg.max_block1_bytes,
            max_block_transfers=cfg.max_block_transfers,
            retry_after=cfg.retry_after,
            exchange_keys=keys,
        )
        try:
            self.context, _mman, self.port = await create_context(
                self.site,
                cfg.coap_host,
                cfg.coap_port,
                counters=self.counters,
                exchange_cache=cfg.exchange_cache,
            )
        except OSError as exc:
            await self._close_upstream()
            raise BindError(cfg.coap_bind, exc) from None

    async def shutdown(self, drain: float = DRAIN_SECONDS) -> None:
        if self.site is not None:
            await self.site.drain(drain)
        if self.context is not None:
            with contextlib.suppress(Exception):
                await self.context.shutdown()
            self.context = None
        if self.hub is not None:
            await self.hub.close()
        if self.journal is not None:
            self.journal.close()
        await self._close_upstream()

    async def _close_upstream(self) -> None:
        if self.upstream is not None and self.upstream is not self.core:
            with contextlib.suppress(Exception):
                await self.upstream.close()
        if self.core is not None:
            await self.core.close()
        if self.embedded is not None:
            await self.embedded.stop()


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="gateway: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiocoap logs every odd datagram; the pre-filter counts them instead.
    logging.getLogger("gateway.coap.aiocoap").setLevel(logging.CRITICAL)
    logging.getLogger("coap").setLevel(logging.CRITICAL)
    logging.getLogger("coap-server").setLevel(logging.CRITICAL)


async def serve(cfg: GatewayConfig) -> int:
    """Run until SIGTERM/SIGINT; 0 on a clean stop."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gw = Gateway(cfg)
    try:
        await gw.start()
    except StartupError:
        await gw.shutdown(drain=0)
        raise
    extra = ""
    if gw.embedded is not None:
        extra = f" (embedded core, tokens in {gw.embedded.dir})"
    print(f"gateway: {gw.coap_url} -> {gw.core_url}{extra}", file=sys.stderr, flush=True)
    tune_gc()  # start-up is done (elastik/runtime.py)
    await stop.wait()
    print("gateway: shutdown signal received", file=sys.stderr, flush=True)
    await gw.shutdown()
    return 0
