"""python -m gateway coap ... -- a debugging CoAP client built on aiocoap.

    get|put|post|delete|observe HOST[:PORT] PATH [PAYLOAD|-] [--token T]
        [--content-format N|type] [--non] [--timeout S] [--count N] [--verbose]
    decode HEX

The payload goes to stdout, the response code to stderr. Exit status: 0 for 2.xx, 1 for
4.xx, 2 for 5.xx, no answer, or bad command-line input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from .coap import datagram
from .coap.mapping import parse_format_name

AUTH_OPTION = 65001
DEFAULT_PORT = 5683


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def parse_target(value: str) -> tuple[str, int]:
    v = value.strip()
    if v.startswith("["):
        host, sep, rest = v[1:].partition("]")
        if not sep:
            raise UsageError(f"bad host {value!r}: missing ']'")
        port_s = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise UsageError(f"bad host {value!r}")
    elif v.count(":") == 1:
        host, _, port_s = v.partition(":")
    else:
        host, port_s = v, ""
    if not host:
        raise UsageError(f"bad host {value!r}: empty host")
    if port_s == "":
        return host, DEFAULT_PORT
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise UsageError(f"bad port in {value!r}: must be 1-65535")
    return host, int(port_s)


def code_class(code: int) -> int:
    return code >> 5


def exit_status(code: int | None) -> int:
    if code is None:
        return 2
    cls = code_class(code)
    return 0 if cls == 2 else 1 if cls == 4 else 2


def _build_parser() -> _Parser:
    p = _Parser(prog="python -m gateway coap", add_help=True)
    sub = p.add_subparsers(dest="cmd")
    for name in ("get", "put", "post", "delete", "observe"):
        s = sub.add_parser(name)
        s.add_argument("target", metavar="HOST[:PORT]")
        s.add_argument("path", metavar="PATH")
        if name in ("put", "post"):
            s.add_argument("payload", nargs="?", default=None, metavar="PAYLOAD|-")
        s.add_argument("--token", default=None)
        s.add_argument("--content-format", default=None)
        s.add_argument("--non", action="store_true", help="send as NON (default CON)")
        s.add_argument("--timeout", type=float, default=None)
        s.add_argument("--verbose", action="store_true")
        if name == "observe":
            s.add_argument("--count", type=int, default=0, help="stop after N notifications")
    d = sub.add_parser("decode")
    d.add_argument("hex", nargs="+", metavar="HEX")
    d.add_argument("--show-token", action="store_true", help="print option 65001 in clear")
    return p


def main(argv: list[str]) -> int:
    try:
        args = _build_parser().parse_args(argv)
        if args.cmd is None:
            raise UsageError("missing command: get, put, post, delete, observe or decode")
        if args.cmd == "decode":
            return decode_cmd(args)
        host, port = parse_target(args.target)
        cf = parse_format_name(args.content_format) if args.content_format else None
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError("--timeout must be > 0")
        payload = b""
        if getattr(args, "payload", None) == "-":
            payload = sys.stdin.buffer.read()
        elif getattr(args, "payload", None) is not None:
            payload = args.payload.encode("utf-8")
    except UsageError as exc:
        print(f"coap: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"coap: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(request_cmd(args, host, port, cf, payload))
    except KeyboardInterrupt:
        return 0


def _segments(path: str) -> list[str]:
    p = path.lstrip("/")
    return p.split("/") if p else []


async def request_cmd(args: Any, host: str, port: int, cf: int | None, payload: bytes) -> int:
    import logging

    from aiocoap import Context, Message
    from aiocoap.numbers.codes import Code
    from aiocoap.numbers.constants import TransportTuning
    from aiocoap.optiontypes import OpaqueOption

    logging.getLogger("coap").setLevel(logging.CRITICAL)
    method = {"get": Code.GET, "observe": Code.GET, "put": Code.PUT, "post": Code.POST}.get(
        args.cmd, Code.DELETE
    )

    class _NonTuning(TransportTuning):
        reliability = False

    msg = Message(
        code=method,
        payload=payload,
        transport_tuning=_NonTuning() if args.non else None,
    )
    h = f"[{host}]" if ":" in host else host
    msg.set_request_uri(f"coap://{h}:{port}/")
    msg.opt.uri_path = _segments(args.path)
    if cf is not None:
        msg.opt.content_format = cf
    if args.token is not None:
        msg.opt.add_option(OpaqueOption(AUTH_OPTION, args.token.encode("utf-8")))
    if args.cmd == "observe":
        msg.opt.observe = 0
    ctx = await Context.create_client_context()
    try:
        req = ctx.request(msg)
        try:
            resp = await asyncio.wait_for(req.response, args.timeout or 60)
        except TimeoutError:
            print("coap: no answer (timeout)", file=sys.stderr)
            return 2
        except Exception as exc:
            print(f"coap: no answer ({type(exc).__name__}: {exc})", file=sys.stderr)
            return 2
        _print(resp, args.verbose)
        code = int(resp.code)
        if args.cmd != "observe" or req.observation is None or code_class(code) != 2:
            return exit_status(code)
        seen = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.timeout):
                async for note in req.observation:
                    _print(note, args.verbose)
                    seen += 1
                    if args.count and seen >= args.count:
                        break
        req.observation.cancel()
        return exit_status(code)
    finally:
        with contextlib.suppress(Exception):
            await ctx.shutdown()


def _print(resp: Any, verbose: bool) -> None:
    code = int(resp.code)
    name = str(resp.code).split(" ", 1)[-1] if " " in str(resp.code) else ""
    print(f"{code >> 5}.{code & 31:02d} {name}".rstrip(), file=sys.stderr)
    if verbose:
        for opt in resp.opt.option_list():
            print(f"  {_option_name(int(opt.number))}: {_option_value(opt)}", file=sys.stderr)
    out = sys.stdout.buffer
    out.write(bytes(resp.payload))
    if resp.payload and not bytes(resp.payload).endswith(b"\n") and resp.opt.observe is not None:
        out.write(b"\n")
    out.flush()


def _option_name(number: int) -> str:
    from aiocoap.numbers.optionnumbers import OptionNumber

    if number == AUTH_OPTION:
        return "Elastik-Auth (65001)"
    try:
        name = OptionNumber(number).name
    except ValueError:
        name = None
    return f"{name} ({number})" if name and not name.startswith("<") else f"Option {number}"


def _option_value(opt: Any) -> str:
    value = opt.value
    if isinstance(value, bytes | bytearray):
        return value.hex() or "(empty)"
    return str(value)


def decode_cmd(args: Any) -> int:
    from aiocoap import Message

    text = "".join(args.hex).replace(":", "").replace(" ", "").removeprefix("0x")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        print("coap: decode: not a hex string", file=sys.stderr)
        return 2
    verdict = datagram.inspect(data)
    if verdict is not None:
        extra = f"; the gateway answers {verdict.reply.hex()}" if verdict.reply else ""
        print(f"coap: decode: not a valid CoAP message ({verdict.reason}){extra}", file=sys.stderr)
        return 2
    try:
        msg = Message.decode(data)
    except Exception as exc:
        print(f"coap: decode: {exc}", file=sys.stderr)
        return 2
    types = ("CON", "NON", "ACK", "RST")
    code = data[1]
    print(f"version: {data[0] >> 6}")
    print(f"type:    {types[(data[0] >> 4) & 3]}")
    print(f"code:    {code >> 5}.{code & 31:02d} {str(msg.code).split(' ', 1)[-1]}")
    print(f"mid:     {int.from_bytes(data[2:4], 'big')}")
    print(f"token:   {bytes(msg.token).hex() or '(empty)'}")
    for opt in msg.opt.option_list():
        number = int(opt.number)
        if number == AUTH_OPTION and not args.show_token:
            shown = f"({len(bytes(opt.value))} bytes, hidden; --show-token prints it)"
        else:
            shown = _option_value(opt)
        print(f"option:  {_option_name(number)}: {shown}")
    payload = bytes(msg.payload)
    if payload:
        try:
            shown_payload = repr(payload.decode("utf-8"))
        except UnicodeDecodeError:
            shown_payload = payload.hex()
        print(f"payload: {len(payload)} bytes {shown_payload}")
    else:
        print("payload: (none)")
    return 0
