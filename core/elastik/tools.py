"""``elastik.tools``: helpers for ``@listen`` workers that the reference SDK exports.

``TrustedShellPool`` keeps a few shells running and feeds them commands through stdin, so
a burst of events does not pay a process start per command. It is **not a sandbox**: only
run commands that come from trusted paths and trusted writers.

``encode_disk_name`` / ``decode_disk_name`` translate between a world name and its
directory name in a reference-layout data directory (they use the server's own codec).
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ShellPool",
    "ShellPoolError",
    "ShellResult",
    "TrustedShellPool",
    "decode_disk_name",
    "encode_disk_name",
]

# Output kept per command. Beyond it the rest is read and dropped (so the shell never
# blocks on a full pipe) and the result says ``truncated``; 16 MiB is far above what a
# handler should put into one world anyway.
MAX_OUTPUT_BYTES = 16 * 1024 * 1024


def encode_disk_name(world: str) -> str:
    """``home/note.txt`` -> ``home%2Fnote%2Etxt`` (PROTOCOL §14.1)."""
    from elastik.server.disknames import encode

    return encode(world)


def decode_disk_name(disk_name: str) -> str:
    """``home%2Fnote%2Etxt`` -> ``home/note.txt``."""
    from elastik.server.disknames import decode

    return decode(disk_name)


@dataclass(frozen=True)
class ShellResult:
    command: str
    stdout: str
    returncode: int
    duration_s: float
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class ShellPoolError(RuntimeError):
    def __init__(self, result: ShellResult) -> None:
        self.result = result
        what = "timed out" if result.timed_out else f"exited with {result.returncode}"
        super().__init__(f"shell command {what}: {result.command!r}")


class _Shell:
    """One warm shell; a thread moves its output lines into a queue."""

    def __init__(self, argv: list[str], cwd: str | None, env: dict[str, str] | None) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self.lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self.lines.put(None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            pass
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


class TrustedShellPool:
    """``size`` warm POSIX shells (``bash --noprofile --norc`` by default).

    ``run(command)`` sends the command to an idle shell, then a sentinel line carrying
    ``$?``; output (stderr merged into stdout) is collected until the sentinel. A shell
    that times out or dies is replaced. Thread-safe: each run owns one shell.
    """

    def __init__(
        self,
        size: int = 4,
        *,
        shell: str | Iterable[str] | None = None,
        timeout: float = 30.0,
        acquire_timeout: float | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        encoding: str = "utf-8",
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        if shell is None:
            self.argv = ["bash", "--noprofile", "--norc"]
        else:
            self.argv = [shell] if isinstance(shell, str) else list(shell)
        self.size = size
        self.timeout = timeout
        self.acquire_timeout = acquire_timeout
        self.cwd = os.fspath(cwd) if cwd is not None else None
        self.env = env
        self.encoding = encoding
        self._idle: queue.Queue[_Shell] = queue.Queue()
        self._closed = False
        for _ in range(size):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Shell:
        return _Shell(self.argv, self.cwd, self.env)

    def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        acquire_timeout: float | None = None,
        check: bool = False,
    ) -> ShellResult:
        if self._closed:
            raise RuntimeError("TrustedShellPool is closed")
        wait = self.acquire_timeout if acquire_timeout is None else acquire_timeout
        try:
            sh = self._idle.get(timeout=wait)
        except queue.Empty:
            raise TimeoutError(f"no shell became free within {wait}s") from None
        if not sh.alive():
            sh.stop()
            sh = self._spawn()
        limit = self.timeout if timeout is None else timeout
        marker = f"__elastik_done_{uuid.uuid4().hex}__".encode()
        started = time.monotonic()
        out = bytearray()
        truncated = timed_out = False
        returncode = -1
        reusable = False
        try:
            assert sh.proc.stdin is not None
            script = f"{command}\nprintf '\\n%s:%s\\n' '{marker.decode()}' \"$?\"\n"
            sh.proc.stdin.write(script.encode(self.encoding))
            sh.proc.stdin.flush()
            deadline = started + limit
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                try:
                    line = sh.lines.get(timeout=min(0.2, remaining))
                except queue.Empty:
                    continue
                if line is None:  # the shell itself exited (e.g. the command ran `exit`)
                    sh.proc.wait(2)
                    returncode = sh.proc.returncode if sh.proc.returncode is not None else -1
                    break
                if line.startswith(marker + b":"):
                    returncode = int(line[len(marker) + 1 :].strip() or b"1")
                    if out.endswith(b"\n"):
                        del out[-1:]  # the newline printf put before the marker
                    reusable = True
                    break
                if len(out) + len(line) > MAX_OUTPUT_BYTES:
                    truncated = True
                else:
                    out += line
        except (BrokenPipeError, OSError):
            returncode = -1
        finally:
            if reusable and not self._closed:
                self._idle.put(sh)
            else:
                sh.stop()
                if not self._closed:
                    self._idle.put(self._spawn())
        result = ShellResult(
            command=command,
            stdout=out.decode(self.encoding, "replace"),
            returncode=returncode,
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
            truncated=truncated,
        )
        if check and not result.ok:
            raise ShellPoolError(result)
        return result

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                return

    def __enter__(self) -> TrustedShellPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ShellPool = TrustedShellPool
