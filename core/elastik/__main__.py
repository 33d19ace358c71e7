"""``python -m elastik``: server commands (run, verify, decode-path, ls-data) and SDK tools."""

from __future__ import annotations

import sys

SERVER_COMMANDS = {"run", "verify", "decode-path", "ls-data"}
SDK_COMMANDS = {"info", "ls", "tree", "rm", "mv", "du", "coap"}

USAGE = """usage: python -m elastik COMMAND [ARGS...]

server (the core):
  run            serve the audited HTTP store (same env vars and flags as elastik-core)
  verify         replay every audit chain of a data directory and report per world
  decode-path    turn a reference on-disk directory name back into its world path
  ls-data        list the worlds of a data directory (ours or the reference's layout)

client (talks to ELASTIK_URL):
  info ls tree rm mv du    browse and manage worlds
  coap get|put             one CoAP request (option 65001 carries the token)

python -m elastik COMMAND --help shows the options of one command.
"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    if args[0] in SERVER_COMMANDS:
        from elastik.server.cli import main as server_main

        return server_main(args)
    if args[0] not in SDK_COMMANDS:
        sys.stderr.write(f"python -m elastik: unknown command {args[0]!r}\n\n{USAGE}")
        return 2
    from elastik.sdk_cli import main as sdk_main

    return sdk_main(args)


if __name__ == "__main__":
    sys.exit(main())
