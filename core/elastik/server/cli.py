"""``python -m elastik run | verify | decode-path | ls-data`` (PROTOCOL §1, D5, D6, D7).

Everything goes to stderr except command results (verify reports, decoded names, data
listings), which go to stdout. Fatal errors print ``elastik-core: <msg>`` and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from elastik import __version__

from .config import CoreConfig
from .errors import FatalError

PREFIX = "elastik-core: "


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def banner(cfg: CoreConfig, port: int | None = None) -> list[str]:
    """The §1.2 banner lines (without the early warnings and the scoap lines)."""
    from .serve import display_host

    shown_port = cfg.port if port is None else port
    read = "token required" if cfg.read_token else "public (ELASTIK_READ_TOKEN not set)"
    write = "token required" if cfg.write_token else "disabled (ELASTIK_WRITE_TOKEN not set)"
    approve = "token required" if cfg.approve_token else "disabled (ELASTIK_APPROVE_TOKEN not set)"
    return [
        f"elastik-core v{__version__} (python) on http://{display_host(cfg.host)}:{shown_port}/",
        "auth:",
        f"  read:    {read}",
        f"  write:   {write}",
        f"  approve: {approve}",
        *cfg.warnings,
    ]


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if not args:
        _err("usage: python -m elastik run|verify|decode-path|ls-data ...")
        return 2
    command, rest = args[0], args[1:]
    try:
        if command == "run":
            return run(rest)
        if command == "verify":
            return verify(rest)
        if command == "decode-path":
            return decode_path(rest)
        if command == "ls-data":
            return ls_data(rest)
    except FatalError as exc:
        _err(PREFIX + exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    _err(f"unknown command {command!r}; expected run, verify, decode-path or ls-data")
    return 2


# ---------------------------------------------------------------------------- run
def run(argv: Sequence[str]) -> int:
    from . import config as config_mod

    cfg = config_mod.load(argv, warn=_err)
    if cfg.trace_pipeline:
        _err("elastik-core: pipeline trace ENABLED via ELASTIK_TRACE_PIPELINE")
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - Windows
        runner = asyncio.Runner()
    with runner:
        return runner.run(_serve(cfg))


def engine_config(cfg: CoreConfig) -> Any:
    from .model import EngineConfig

    return EngineConfig(
        data=cfg.data,
        key=cfg.key.encode(),
        max_world_bytes=cfg.max_world_bytes,
        max_memory_bytes=cfg.max_memory_bytes,
        max_storage_bytes=cfg.max_storage_bytes,
        read_cache_max_entries=cfg.read_cache_max_entries,
        idempotency_window_s=cfg.idempotency_window,
    )


async def _serve(cfg: CoreConfig) -> int:
    from ..runtime import tune_gc
    from .app import App
    from .engine import Engine
    from .serve import CoreServer, bind_socket, display_host, uvicorn_config

    engine = Engine.open(engine_config(cfg))
    coap: list[Any] = []  # the front door's handle, once started
    tasks: set[asyncio.Future[Any]] = set()
    try:
        sock = bind_socket(cfg.host, cfg.port)
        app = App(engine, cfg)
        for line in banner(cfg):
            _err(line)

        def on_signal() -> None:
            app.hub.close_all()  # end /listen streams so the drain can finish
            if coap:
                _err("scoap: shutdown signal received")
                task = asyncio.ensure_future(_close(coap.pop()))
                tasks.add(task)

        tune_gc()  # start-up is done (elastik/runtime.py)
        server = CoreServer(uvicorn_config(app), on_signal=on_signal)
        if cfg.coap_port is not None:
            url = f"http://{display_host(cfg.host)}:{sock.getsockname()[1]}"

            async def start_coap() -> None:
                while not server.started and not server.should_exit:
                    await asyncio.sleep(0.01)  # the front door talks to us over HTTP
                if not server.should_exit:
                    handle = await start_coap_frontdoor(cfg, url)
                    if handle is not None:
                        coap.append(handle)

            tasks.add(asyncio.ensure_future(start_coap()))
        await server.serve(sockets=[sock])
        for handle in coap:
            _err("scoap: shutdown signal received")
            await _close(handle)
        for task in tasks:
            await asyncio.gather(task, return_exceptions=True)
    finally:
        engine.close()
    return 0


async def start_coap_frontdoor(cfg: CoreConfig, app_url: str) -> Any:
    """D6: serve the gateway's CoAP front door in this process, talking to us at ``app_url``.

    Uses ``gateway.coap.server.start_frontdoor(core_url=, host=, port=)`` (sync or async,
    returning an object with ``close()``) when the gateway offers it, else builds the
    gateway's ``Gateway`` (no outbox: the core is right here). Without a gateway the core
    keeps serving HTTP and says why on stderr. Bind failures are not fatal (§1.1).
    """
    host, port = cfg.coap_host, cfg.coap_port
    try:
        module = importlib.import_module("gateway.coap.server")
        start = getattr(module, "start_frontdoor", None) or _gateway_frontdoor
    except ImportError:
        _err("scoap: CoAP front door unavailable (gateway package not installed)")
        return None
    try:
        handle = start(core_url=app_url, host=host, port=int(port or 0))
        if inspect.isawaitable(handle):
            handle = await handle
    except OSError as exc:
        from .serve import os_error_text

        _err(f"scoap: failed to bind coap://{host}:{port}/: {os_error_text(exc.errno or 0)}")
        return None
    except Exception as exc:  # the gateway's own startup errors: HTTP keeps running
        _err(f"scoap: failed to bind coap://{host}:{port}/: {exc}")
        return None
    _err(f"scoap: listening on coap://{host}:{port}/")
    _err("scoap: UDP curl surface; auth option 65001 maps to token tier")
    return handle


class _GatewayFrontDoor:
    def __init__(self, gateway: Any, state_dir: str) -> None:
        self.gateway = gateway
        self.state_dir = state_dir

    async def close(self) -> None:
        try:
            await self.gateway.shutdown()
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)


async def _gateway_frontdoor(*, core_url: str, host: str, port: int) -> _GatewayFrontDoor:
    from gateway.config import GatewayConfig
    from gateway.runner import Gateway

    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # The gateway wants a state directory; with no outbox it only creates it.
    state_dir = tempfile.mkdtemp(prefix="elastik-scoap-")
    gateway = Gateway(
        GatewayConfig(core_url=core_url, coap_bind=bind, state_dir=state_dir), use_outbox=False
    )
    try:
        await gateway.start()
    except BaseException:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    return _GatewayFrontDoor(gateway, state_dir)


async def _close(handle: Any) -> None:
    close = getattr(handle, "close", None)
    if close is None:
        return
    result = close()
    if inspect.isawaitable(result):
        await result


# ---------------------------------------------------------------------------- tools
def _key_from(ns_key: str | None) -> bytes:
    key = ns_key if ns_key is not None else os.environ.get("ELASTIK_KEY")
    if not key:
        raise FatalError("ELASTIK_KEY is required; the audit chain has no meaning without it")
    return key.encode()


def verify(argv: Sequence[str]) -> int:
    """Replay every event of every durable world; exit 1 if anything is broken."""
    p = argparse.ArgumentParser(prog="python -m elastik verify")
    p.add_argument("--data", default=os.environ.get("ELASTIK_DATA") or "data")
    p.add_argument("--key", default=None, help="defaults to ELASTIK_KEY")
    ns = p.parse_args(list(argv))
    key = _key_from(ns.key)
    from . import verifytool

    try:
        rows = verifytool.verify_data(Path(ns.data), key)
    except FileNotFoundError as exc:
        raise FatalError(str(exc)) from None
    broken = 0
    for row in rows:
        if row.ok:
            print(f"ok\t{row.world}\tevents={row.events}")
        else:
            broken += 1
            print(f"BROKEN\t{row.world}\tevents={row.events}\t{row.detail}")
    print(f"{len(rows)} world(s) checked, {broken} broken")
    return 1 if broken else 0


def decode_path(argv: Sequence[str]) -> int:
    """Print the world path of a reference-style disk name (``home%2Fnote%2Etxt``)."""
    p = argparse.ArgumentParser(prog="python -m elastik decode-path")
    p.add_argument("names", nargs="+")
    ns = p.parse_args(list(argv))
    from . import disknames

    status = 0
    for name in ns.names:
        try:
            print(disknames.decode(name))
        except ValueError as exc:
            _err(f"{PREFIX}cannot decode {name!r}: {exc}")
            status = 1
    return status


def ls_data(argv: Sequence[str]) -> int:
    """List the worlds of a reference data directory: world, size, events, content type."""
    p = argparse.ArgumentParser(prog="python -m elastik ls-data")
    p.add_argument("data")
    ns = p.parse_args(list(argv))
    from . import refdata

    try:
        rows = refdata.ls_data(Path(ns.data))
    except FileNotFoundError as exc:
        raise FatalError(str(exc)) from None
    for row in rows:
        print(f"{row.world}\t{row.size}\t{row.events}\t{row.content_type}")
    return 0
