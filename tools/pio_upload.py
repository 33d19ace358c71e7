"""PlatformIO extra script (see platformio.ini): uploading deploys the MicroPython files.

PlatformIO runs this inside its SCons environment, where ``Import`` and ``env`` exist. It
turns ``pio run -t upload`` into ``python -m tools.deploy --port <upload port> --board
<custom_deploy_board> --mpy [--ssid ... --gateway ...]``, and adds a ``deploy`` target
that does the same with no build step at all (the boards run stock MicroPython). ``deploy_command`` is plain Python so tests can check
the command without PlatformIO.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable


def deploy_command(
    python: str, port: str, board: str, ssid: str = "", gateway: str = "", interval: str = ""
) -> list[str]:
    cmd = [python, "-m", "tools.deploy", "--port", port, "--board", board, "--mpy"]
    if ssid and gateway:
        cmd += ["--ssid", ssid, "--gateway", gateway]
    if interval:
        cmd += ["--interval", interval]
    return cmd


def _configure(env: object, getopt: Callable[[str, str], str]) -> None:
    board = getopt("custom_deploy_board", "esp32")

    def upload(*_: object, **__: object) -> int:
        import subprocess

        port = env.subst("$UPLOAD_PORT")  # type: ignore[attr-defined]
        if not port:
            print("pio_upload: give --upload-port (the board's serial port)", file=sys.stderr)
            return 2
        cmd = deploy_command(
            env.subst("$PYTHONEXE") or sys.executable,  # type: ignore[attr-defined]
            port,
            board,
            getopt("custom_wifi_ssid", ""),
            getopt("custom_gateway", ""),
            getopt("custom_interval", ""),
        )
        print("pio_upload:", shlex.join(cmd))
        return subprocess.call(cmd, cwd=env.subst("$PROJECT_DIR"))  # type: ignore[attr-defined]

    env.Replace(UPLOADCMD=upload)  # type: ignore[attr-defined]
    # `pio run -e <env> -t deploy --upload-port PORT`: the same, without any build step.
    env.AddCustomTarget(  # type: ignore[attr-defined]
        name="deploy",
        dependencies=None,
        actions=[upload],
        title="Deploy MicroPython files",
        description="copy elastik_micro and main.py with tools/deploy.py (mpremote)",
    )


try:  # inside PlatformIO
    Import("env")  # type: ignore[name-defined]
except NameError:  # imported by tests or tools
    pass
else:
    _env = env  # type: ignore[name-defined]  # noqa: F821
    _configure(_env, lambda name, default: _env.GetProjectOption(name, default))
