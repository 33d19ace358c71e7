"""``python -m elastik ls|tree|rm|mv|du|info|coap get|coap put``: SDK tools for a running core.

The HTTP commands talk to ``ELASTIK_URL`` (or ELASTIK_HOST/PORT) with the strongest
``ELASTIK_*_TOKEN``. Errors print one line to stderr and exit 1; no tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from elastik.sdk import coap
from elastik.sdk.client import Elastik
from elastik.sdk.errors import ElastikError


def _positive_int(value: str) -> int:
    try:
        parsed = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if parsed < 1:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return parsed


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(
        prog="python -m elastik",
        description="Elastik tools. Server: run, verify, decode-path, ls-data. "
        "SDK (talk to ELASTIK_URL): ls, tree, rm, mv, du, coap, info.",
    )
    sub = parser.add_subparsers(dest="cmd")
    sub.add_parser("info", help="show what elastik.start() runs and the SDK configuration")

    p = sub.add_parser("ls", help="list virtual children of a prefix")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("--all", action="store_true", help="every descendant, not only children")

    p = sub.add_parser("tree", help="show a virtual tree of a prefix")
    p.add_argument("prefix", nargs="?", default="")

    p = sub.add_parser("rm", help="delete a path, or a prefix with -r")
    p.add_argument("path")
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("--force", action="store_true", help="allow '' or a namespace root with -r")

    p = sub.add_parser("mv", help="move (copy+delete) a path, or a prefix with -r")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace existing destinations")

    p = sub.add_parser("du", help="Content-Length of every path under a prefix")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("--max-workers", type=_positive_int, default=4)

    p_coap = sub.add_parser("coap", help="send one CoAP GET or PUT datagram")
    coap_sub = p_coap.add_subparsers(dest="coap_cmd")
    for name in ("get", "put"):
        c = coap_sub.add_parser(name, help=f"CoAP {name.upper()} HOST PORT PATH")
        c.add_argument("host")
        c.add_argument("port", type=int)
        c.add_argument("path")
        if name == "put":
            c.add_argument(
                "payload", nargs="?", default=None, help="UTF-8 text; '-' or none: stdin"
            )
            c.add_argument("--content-type", default=None)
            c.add_argument("--verbose", action="store_true", help="print the CoAP code to stderr")
        c.add_argument("--token", default=None, help="auth token, sent in CoAP option 65001")
        c.add_argument("--timeout", type=float, default=2.0)
    return parser, p_coap


def _coap(args: argparse.Namespace) -> int:
    try:
        if args.coap_cmd == "get":
            response = coap.get(
                args.host, args.port, args.path, token=args.token, timeout=args.timeout
            )
        else:
            payload: bytes | str = (
                sys.stdin.buffer.read()
                if args.payload is None or args.payload == "-"
                else args.payload
            )
            response = coap.put(
                args.host,
                args.port,
                args.path,
                payload,
                token=args.token,
                content_type=args.content_type,
                timeout=args.timeout,
            )
    except (TimeoutError, ValueError, OSError) as exc:
        print(f"coap: {exc}", file=sys.stderr)
        return 1
    if not response.ok:
        print(f"coap: {response.status}", file=sys.stderr)
        if response.payload:
            sys.stderr.write(response.payload.decode("utf-8", "replace"))
        return 1
    if getattr(args, "verbose", False):
        print(response.status, file=sys.stderr)
    sys.stdout.buffer.write(response.payload)
    sys.stdout.flush()
    return 0


def _info() -> int:
    import elastik

    elastik.show_config()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser, coap_parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.cmd is None:
        parser.print_help()
        return 0
    if args.cmd == "info":
        return _info()
    if args.cmd == "coap":
        if args.coap_cmd is None:
            coap_parser.print_help(sys.stderr)
            return 2
        return _coap(args)

    commands: dict[str, Callable[[Elastik], None]] = {
        "ls": lambda e: print(*e.ls(args.prefix, depth=-1 if args.all else 1), sep="\n"),
        "tree": lambda e: print(e.tree(args.prefix)),
        "rm": lambda e: print(e.rm(args.path, recursive=args.recursive, force=args.force)),
        "mv": lambda e: print(
            e.mv(args.src, args.dst, recursive=args.recursive, overwrite=args.overwrite)
        ),
        "du": lambda e: print(
            *(
                f"{size}\t{path}"
                for path, size in e.du(args.prefix, max_workers=args.max_workers).items()
            ),
            sep="\n",
        ),
    }
    try:
        commands[args.cmd](Elastik())
    except (ElastikError, OSError, ValueError) as exc:
        print(f"elastik {args.cmd}: {exc}", file=sys.stderr)
        return 1
    return 0
