"""Start, stop and describe the core this Python process launched.

``start()`` runs our core as ``sys.executable -m elastik run`` with the reference's
environment variables, waits until ``/proc/version`` answers ``elastik-core ...`` and
returns a client bound to it. One child per process, like the reference.
"""

from __future__ import annotations

import atexit
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elastik.sdk.client import Elastik

DEFAULT_PORT = 3105
# How long start() waits for the child to answer; our core starts in well under a second,
# the margin is for loaded CI machines.
START_TIMEOUT_S = 20.0
# The tail of the child's output kept for error messages: enough for a traceback or the
# fatal startup line, small enough that a chatty child cannot grow memory.
OUTPUT_TAIL_BYTES = 8192

_lock = threading.Lock()
_proc: subprocess.Popen[bytes] | None = None
_tail: _OutputTail | None = None
_live: dict[str, str] = {}
_last: dict[str, str] = {}
_atexit_registered = False


class _OutputTail:
    """Drains a pipe on a daemon thread, keeping only the last bytes."""

    def __init__(self, pipe: Any, limit: int = OUTPUT_TAIL_BYTES) -> None:
        self._buf = bytearray()
        self._limit = limit
        self._mutex = threading.Lock()
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: Any) -> None:
        try:
            for chunk in iter(lambda: pipe.read1(4096), b""):
                with self._mutex:
                    self._buf.extend(chunk)
                    del self._buf[: max(0, len(self._buf) - self._limit)]
        except (OSError, ValueError):
            pass

    def text(self) -> str:
        self._thread.join(timeout=0.5)
        with self._mutex:
            return bytes(self._buf).decode("utf-8", "replace").strip()


def _connect_host(host: str) -> str:
    bare = host.strip("[]")
    if bare in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bare == "::":
        return "::1"
    return bare


def client_url(host: str, port: int) -> str:
    h = _connect_host(host)
    return f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}"


def _parse_port(value: object, source: str) -> int:
    try:
        port = int(str(value))
    except ValueError:
        raise ValueError(f"{source} must be an integer port; got {value!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{source} must be between 1 and 65535; got {port}")
    return port


def _check_key(key: str | None, source: str) -> str:
    if key is None:
        raise RuntimeError(
            "audit key required: pass key=... to elastik.start(), set ELASTIK_KEY (shell or "
            ".env), or pass --key to python -m elastik run. Generate one with: "
            'python -c "import secrets; print(secrets.token_hex(32))"'
        )
    if not key.strip() or len(key.encode("utf-8", "surrogatepass")) < 32:
        raise RuntimeError(
            f"audit key is invalid: {source} must be at least 32 UTF-8 bytes and not all whitespace"
        )
    return key


def _port_in_use(host: str, port: int) -> bool:
    try:
        with socket.create_connection((_connect_host(host), port), timeout=0.2):
            return True
    except OSError:
        return False


def _probe(host: str, port: int) -> bool:
    """True when the port answers like an elastik core (``/proc/version`` is public)."""
    conn = http.client.HTTPConnection(_connect_host(host), port, timeout=2)
    try:
        conn.request("GET", "/proc/version")
        resp = conn.getresponse()
        return resp.status == 200 and resp.read(64).startswith(b"elastik-core ")
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def server_command() -> list[str]:
    return [sys.executable, "-m", "elastik", "run"]


def start(
    port: int | None = None,
    host: str | None = None,
    key: str | None = None,
    read_token: str | None = None,
    write_token: str | None = None,
    approve_token: str | None = None,
    data: str | os.PathLike[str] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    quiet: bool = True,
    keep_alive: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = START_TIMEOUT_S,
    debug: bool | str = False,
) -> Elastik:
    """Launch our core as a child process and return a client bound to it.

    Arguments left as None come from ``ELASTIK_*`` environment variables (and ``.env``).
    ``env`` adds extra variables for the child (e.g. ``ELASTIK_PERSIST_HEADERS``).
    """
    global _proc, _tail, _atexit_registered
    from elastik.sdk.client import Elastik

    if debug:
        warnings.warn(
            "debug= (the reference SDK's request tracing) is not implemented; ignored",
            stacklevel=3,
        )
    with _lock:
        if _proc is not None and _proc.poll() is None:
            raise RuntimeError("elastik already running in this process; call elastik.stop() first")
        host = host or os.getenv("ELASTIK_HOST") or "127.0.0.1"
        port = _parse_port(
            os.getenv("ELASTIK_PORT", str(DEFAULT_PORT)) if port is None else port,
            "ELASTIK_PORT" if port is None else "port",
        )
        key = _check_key(
            os.getenv("ELASTIK_KEY") if key is None else key,
            "ELASTIK_KEY" if key is None else "key=",
        )
        read_token = os.getenv("ELASTIK_READ_TOKEN", "") if read_token is None else read_token
        if write_token is None:
            write_token = os.getenv("ELASTIK_WRITE_TOKEN", "")
            if not write_token and os.getenv("ELASTIK_TOKEN"):
                warnings.warn(
                    "ELASTIK_TOKEN is deprecated; rename it to ELASTIK_WRITE_TOKEN.",
                    UserWarning,
                    stacklevel=3,
                )
                write_token = os.getenv("ELASTIK_TOKEN", "")
        if approve_token is None:
            approve_token = os.getenv("ELASTIK_APPROVE_TOKEN", "")
        folder = data if data is not None else data_dir
        folder = folder if folder is not None else os.getenv("ELASTIK_DATA")
        if _port_in_use(host, port):
            raise RuntimeError(f"port already in use before elastik start: {host}:{port}")

        child_env = dict(os.environ)
        child_env.pop("ELASTIK_TOKEN", None)  # resolved above; avoid a second warning
        child_env.update(ELASTIK_HOST=host, ELASTIK_PORT=str(port), ELASTIK_KEY=key)
        for name, value in (
            ("ELASTIK_READ_TOKEN", read_token),
            ("ELASTIK_WRITE_TOKEN", write_token),
            ("ELASTIK_APPROVE_TOKEN", approve_token),
            ("ELASTIK_DATA", str(folder) if folder else ""),
        ):
            if value:
                child_env[name] = value
            else:
                child_env.pop(name, None)
        child_env.update(env or {})
        child_env["ELASTIK_NO_DOTENV"] = "1"  # the child gets its config from us, not .env

        proc = subprocess.Popen(
            server_command(),
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
        )
        tail = _OutputTail(proc.stdout) if quiet else None
        _proc, _tail = proc, tail
        if not _atexit_registered:
            atexit.register(stop)
            _atexit_registered = True
        deadline = time.monotonic() + timeout
        while not _probe(host, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = (
                    f"exited with code {proc.returncode}"
                    if proc.poll() is not None
                    else f"did not answer within {timeout:g}s"
                )
                output = tail.text() if tail else ""
                _stop_locked()
                raise RuntimeError(
                    f"elastik core on {host}:{port} {why}"
                    + (f"\nchild output:\n{output}" if output else "")
                )
            time.sleep(0.05)
        url = client_url(host, port)
        _live.clear()
        _live.update(url=url, state="running", pid=str(proc.pid))
        if folder:
            _live["data_dir"] = str(folder)
        _last.clear()
        _last.update(_live)
    client = Elastik(
        url, bearer_token=approve_token or write_token or read_token, keep_alive=keep_alive
    )
    return client


def _stop_locked() -> None:
    global _proc
    proc = _proc
    _proc = None
    _live.clear()
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if _last:
        _last["state"] = "stopped"


def stop() -> None:
    """Stop the core started by ``start()`` (SIGTERM, then SIGKILL). Safe to call twice."""
    with _lock:
        _stop_locked()


def is_running() -> bool:
    return _proc is not None and _proc.poll() is None


def live_info() -> dict[str, str]:
    """url/data_dir/state/pid of the child this process started (or last started)."""
    if is_running():
        return dict(_live)
    return dict(_last)


def default_url() -> str:
    """``ELASTIK_URL``, else ``http://ELASTIK_HOST:ELASTIK_PORT`` (127.0.0.1:3105)."""
    explicit = os.getenv("ELASTIK_URL")
    if explicit:
        return explicit.rstrip("/")
    host = os.getenv("ELASTIK_HOST", "127.0.0.1")
    return client_url(
        host, _parse_port(os.getenv("ELASTIK_PORT", str(DEFAULT_PORT)), "ELASTIK_PORT")
    )


def binary_info() -> dict[str, Any]:
    """What ``start()`` runs: our Python core (``python -m elastik run``)."""
    import elastik

    package = Path(elastik.__file__).resolve().parent
    server = package / "server"
    return {
        "path": sys.executable,
        "command": server_command(),
        "implementation": "python",
        "server_package": str(server),
        "exists": (server / "__init__.py").exists(),
        "version": elastik.__version__,
        "platform": sys.platform,
    }
