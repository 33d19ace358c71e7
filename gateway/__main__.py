"""python -m gateway run|coap|outbox ...

run     [--config gateway.toml] [--core-url URL] [--coap-bind HOST:PORT] [--state-dir DIR]
coap    get|put|post|delete|observe|decode ...   (see gateway/cli_coap.py)
outbox  ...                                      (see gateway/outbox_cli.py)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

USAGE = "usage: python -m gateway run|coap|outbox ...\n"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"gateway: {message}", file=sys.stderr)
        sys.exit(2)


def run_main(argv: list[str]) -> int:
    from . import config as config_mod
    from .runner import StartupError, serve, setup_logging

    p = _Parser(prog="python -m gateway run", description="Run the CoAP gateway.")
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument("--core-url", help="URL of the core (default: start an embedded core)")
    p.add_argument("--coap-bind", help="CoAP listen address HOST:PORT")
    p.add_argument("--state-dir", help="directory for the outbox and embedded core")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    args = p.parse_args(argv)
    try:
        cfg = config_mod.load(
            args.config,
            overrides={
                "core_url": args.core_url,
                "coap_bind": args.coap_bind,
                "state_dir": args.state_dir,
                "log_level": args.log_level,
            },
        )
    except config_mod.ConfigError as exc:
        print(f"gateway: config: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level)
    runner: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    try:
        import uvloop  # a faster event loop where available (not on Windows)

        runner = uvloop.run
    except ImportError:
        pass
    try:
        return runner(serve(cfg))
    except StartupError as exc:
        print(f"gateway: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stderr.write(USAGE)
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "run":
        return run_main(rest)
    if cmd == "coap":
        from . import cli_coap

        return cli_coap.main(rest)
    if cmd == "outbox":
        try:
            from . import outbox_cli  # type: ignore[attr-defined,unused-ignore]
        except ImportError:
            print("gateway: the outbox is not installed in this build", file=sys.stderr)
            return 2
        return int(outbox_cli.main(rest) or 0)
    print(f"gateway: unknown command {cmd!r}", file=sys.stderr)
    sys.stderr.write(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main())
