"""``python -m elastik run`` as a real process: banner, fatal errors, signals, wire edges."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from elastik import __version__

from tests.support.servers import free_port, new_key

pytestmark = pytest.mark.xdist_group("core-cli")


def clean_env(**kw: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
    env.update(kw)
    return env


def run_fatal(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    res = subprocess.run(
        [sys.executable, "-m", "elastik", "run", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return res.returncode, res.stdout, res.stderr


class Server:
    def __init__(self, tmp: Path, **env: str) -> None:
        self.port = free_port()
        base = {
            "ELASTIK_KEY": new_key(),
            "ELASTIK_DATA": str(tmp / "data"),
            "ELASTIK_PORT": str(self.port),
            "ELASTIK_WRITE_TOKEN": "w",
            "ELASTIK_APPROVE_TOKEN": "a",
        }
        base.update(env)
        self.err_path = tmp / f"stderr-{self.port}.log"
        self.out_path = tmp / f"stdout-{self.port}.log"
        with open(self.err_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "elastik", "run"],
                env=clean_env(**base),
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("server did not start: " + self.stderr())

    def stderr(self) -> str:
        return self.err_path.read_text()

    def raw(self, request: bytes, timeout: float = 5.0) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(request)
            chunks = []
            while True:
                try:
                    data = s.recv(65536)
                except TimeoutError:
                    break
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(30)


def test_fatal_errors_exit_1_with_prefixed_message(tmp_path: Path) -> None:
    code, out, err = run_fatal(clean_env(ELASTIK_PORT="0"))
    assert (code, out) == (1, "")
    assert (
        err == "elastik-core: ELASTIK_KEY is required; the audit chain has no meaning without it\n"
    )
    code, _, err = run_fatal(clean_env(ELASTIK_KEY=new_key(), ELASTIK_PORT="70000"))
    assert code == 1
    assert err == 'elastik-core: ELASTIK_PORT must be a TCP port number; got "70000"\n'


def test_bind_failure_is_fatal(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_fatal(
            clean_env(
                ELASTIK_KEY=new_key(), ELASTIK_PORT=str(port), ELASTIK_DATA=str(tmp_path / "d")
            )
        )
    assert code == 1
    assert err.endswith(
        f"elastik-core: bind 127.0.0.1:{port} failed: Address in use (os error 98)\n"
    )


def test_invalid_coap_port_warns_before_banner_and_fatal_key_after(tmp_path: Path) -> None:
    code, _, err = run_fatal(clean_env(ELASTIK_KEY="x", ELASTIK_COAP_PORT="abc"))
    assert code == 1
    assert err.splitlines() == [
        '  warning: invalid ELASTIK_COAP_PORT="abc"; SCoAP/UDP surface disabled.',
        "elastik-core: ELASTIK_KEY is invalid: HMAC key must be at least 32 bytes; got 1",
    ]


def test_banner_signal_and_clean_exit(tmp_path: Path) -> None:
    srv = Server(tmp_path, ELASTIK_READ_TOKEN="", ELASTIK_APPROVE_TOKEN="")
    try:
        reply = srv.raw(b"GET /proc/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert reply.endswith(f"elastik-core {__version__} (python)\n".encode())
    finally:
        code = srv.stop()
    assert code == 0
    assert srv.out_path.read_text() == ""
    assert srv.stderr().splitlines() == [
        f"elastik-core v{__version__} (python) on http://127.0.0.1:{srv.port}/",
        "auth:",
        "  read:    public (ELASTIK_READ_TOKEN not set)",
        "  write:   token required",
        "  approve: disabled (ELASTIK_APPROVE_TOKEN not set)",
        "  warning: empty ELASTIK_READ_TOKEN treated as unset (reads public)",
        "  warning: empty ELASTIK_APPROVE_TOKEN treated as unset (DELETE/system writes disabled)",
        "  warning: ELASTIK_APPROVE_TOKEN not set; DELETE and system writes are disabled.",
        "elastik-core: shutdown signal received",
    ]


def test_sigint_drains_listen_streams_and_exits_0(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as listen:
        listen.sendall(b"GET /listen/* HTTP/1.1\r\nHost: x\r\n\r\n")
        assert listen.recv(4096).startswith(b"HTTP/1.1 200 OK")
        code = srv.stop(signal.SIGINT)
        rest = b""
        while chunk := listen.recv(4096):
            rest += chunk
    assert code == 0
    assert rest.endswith(b"0\r\n\r\n")  # the stream was ended, not cut


def test_wire_edges_over_a_real_socket(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    try:
        raw_utf8 = srv.raw(
            "GET /home/\u00e9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        assert raw_utf8.startswith(b"HTTP/1.1 404 ") and raw_utf8.endswith(b"world not found\n")
        star = srv.raw(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert star.startswith(b"HTTP/1.1 404 ") and b"\r\ncontent-type:" not in star
        long = srv.raw(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert long.startswith(b"HTTP/1.1 414 ") and b"x-request-id" not in long
        space = srv.raw(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert space.startswith(b"HTTP/1.1 400 ") and space.endswith(b"\r\n\r\n")
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(120))
        big = srv.raw(b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert big.startswith(b"HTTP/1.1 431 ")
        for method in (b"FOO", b"get", b"M-SEARCH"):
            ext = srv.raw(method + b" /home/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert ext.startswith(b"HTTP/1.1 405 "), ext
            assert b"\r\nallow: GET, HEAD, PUT, POST, DELETE, OPTIONS\r\n" in ext
            assert ext.endswith(b"method not allowed\n")
        big_body = srv.raw(
            b"PUT /tmp/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer w\r\n"
            b"Content-Length: 200000\r\nConnection: close\r\n\r\n" + b"z" * 200000
        )
        assert big_body.startswith(b"HTTP/1.1 201 ")
        got = srv.raw(b"GET /tmp/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert got.endswith(b"\r\n\r\n" + b"z" * 200000)
        part = srv.raw(
            b"GET /tmp/big HTTP/1.1\r\nHost: x\r\nRange: bytes=100-150099\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert (
            part.startswith(b"HTTP/1.1 206 ") and b"content-range: bytes 100-150099/200000" in part
        )
        assert part.endswith(b"\r\n\r\n" + b"z" * 150000)
        # A pipelined request whose body arrives in a later chunk keeps its bytes intact,
        # even when the chunk starts like an extension-method request line.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(
                b"GET /proc/version HTTP/1.1\r\nHost: x\r\n\r\n"
                b"PUT /home/split HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer w\r\n"
                b"Content-Length: 12\r\nConnection: close\r\n\r\n"
            )
            time.sleep(0.2)
            s.sendall(b"FOO /\xc3\xa9 bar!")
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert b"201 Created" in reply
        split = srv.raw(b"GET /home/split HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert split.endswith(b"\r\n\r\nFOO /\xc3\xa9 bar!")
        # Refused before the body was asked for (Expect: 100-continue): the connection closes.
        for target, length, status in ((b"/home/e", b"70000000", b"413"), (b"/home", b"5", b"400")):
            early = srv.raw(
                b"PUT " + target + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer w\r\n"
                b"Expect: 100-continue\r\nContent-Length: " + length + b"\r\n\r\n"
            )
            assert early.startswith(b"HTTP/1.1 " + status)
            assert b"\r\nconnection: close\r\n" in early and b"100 Continue" not in early
        # An endless head is cut off instead of buffered.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            cut, refused = b"", False
            try:
                for _ in range(200):
                    s.sendall(b"X-Fill: " + b"f" * 8000 + b"\r\n")
                    time.sleep(0.001)
            except (ConnectionResetError, BrokenPipeError):
                refused = True  # the server closed while we were still sending
            try:
                while chunk := s.recv(65536):
                    cut += chunk
            except ConnectionResetError:
                refused = True
        assert refused or cut.startswith(b"HTTP/1.1 431 "), cut[:100]
        assert srv.proc.poll() is None
        for version in (b"HTTP/2.0", b"HTTP/1.2"):  # only 1.0 and 1.1 are served
            v2 = srv.raw(
                b"PUT /home/v2 " + version + b"\r\nHost: x\r\nAuthorization: Bearer w\r\n"
                b"Content-Length: 1\r\n\r\nv"
            )
            assert v2.startswith(b"HTTP/1.1 400 ") and b"x-request-id" not in v2
        gone = srv.raw(b"GET /home/v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert gone.startswith(b"HTTP/1.1 404 ")
        http10 = srv.raw(b"GET /proc/version HTTP/1.0\r\n\r\n")
        assert http10.startswith(b"HTTP/1.0 200 ")
        h2c = srv.raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert h2c == b""
        pipelined = srv.raw(
            b"GET /proc/version HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /proc/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert pipelined.count(b"HTTP/1.1 200 OK") == 2
        assert pipelined.count(b"\r\ndate: ") == 2 and b"server:" not in pipelined.lower()
        put = srv.raw(
            b"PUT /home/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer w\r\n"
            b"Expect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
        )
        assert b"201 Created" in put
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize("ns", ["tmp", "home"])
def test_shutdown_signal_mid_body_finishes_the_request(tmp_path: Path, ns: str) -> None:
    """A request whose head is in but whose body is still arriving when SIGTERM comes is
    finished (answered with connection: close) before the process exits 0."""
    srv = Server(tmp_path)
    body = b"b" * 1000
    head = (
        f"PUT /{ns}/drain HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer w\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head + body[:400])
        time.sleep(0.2)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert srv.proc.poll() is None  # still draining: the request is in flight
        s.sendall(body[400:])
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 201 "), reply
    assert b"\r\nconnection: close\r\n" in reply
    assert srv.stop() == 0
