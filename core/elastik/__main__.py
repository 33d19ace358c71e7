"""``python -m elastik``: server commands (run, verify, decode-path, ls-data) and SDK tools."""

from __future__ import annotations

import sys

SERVER_COMMANDS = {"run", "verify", "decode-path", "ls-data"}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SERVER_COMMANDS:
        from elastik.server.cli import main as server_main

        return server_main(args)
    from elastik.sdk_cli import main as sdk_main  # SDK tools: ls, tree, rm, mv, du, coap

    return sdk_main(args)


if __name__ == "__main__":
    sys.exit(main())
