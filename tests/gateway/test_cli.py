"""The command line: ``python -m gateway run`` (ready line, SIGTERM, config errors,
embedded core) and ``python -m gateway coap ...`` (exit codes, decode, bad input)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time

import pytest

from tests.gateway.conftest import core_http
from tests.gateway.gwproc import GatewayProc


def gw_cli(
    *args: str, stdin: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True, timeout=timeout
    )


@pytest.fixture
def cli(capfdbinary, monkeypatch):
    """The same entry point (gateway.__main__.main) in this process: much faster."""
    from gateway.__main__ import main

    def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        capfdbinary.readouterr()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capfdbinary.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def test_run_prints_ready_line_and_sigterm_exits_0(our_core, tmp_path):
    gw = GatewayProc(our_core.url, tmp_path / "state").start()
    try:
        assert gw.ready_line == f"gateway: coap://127.0.0.1:{gw.port}/ -> {our_core.url}"
        r = gw_cli("coap", "put", f"127.0.0.1:{gw.port}", "cli/a", "v", "--token", "w")
        assert r.returncode == 0, r.stderr
        assert r.stderr.decode().startswith("2.01")
    finally:
        code = gw.stop()
    assert code == 0
    assert "shutdown signal received" in gw.output()
    assert "Bearer" not in gw.output() and " w " not in gw.output()
    assert "Traceback" not in gw.output()


def test_config_file_and_flag_override(cli, our_core, tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        'core_url = "http://127.0.0.1:1"\nrequest_timeout = 3.5\nupstream_token = "w"\n'
        '[[devices]]\nid = "d"\ntoken = "dt"\npaths = ["home/cli/"]\n'
    )
    with GatewayProc(our_core.url, tmp_path / "s", config=cfg) as gw:
        assert gw.core_url == our_core.url  # the flag wins over the file
        r = cli("coap", "put", f"127.0.0.1:{gw.port}", "cli/dev", "x", "--token", "dt")
        assert r.returncode == 0, r.stderr
        r = cli("coap", "put", f"127.0.0.1:{gw.port}", "other", "x", "--token", "dt")
        assert (r.returncode, r.stderr.decode().split()[0]) == (1, "4.03")


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('request_timeout = "soon"\n', "request_timeout: must be a number"),
        ("max_in_flight = 0\n", "max_in_flight: must be at least 1"),
        ("nonsense = 1\n", "nonsense: unknown key"),
        ('coap_bind = "localhost"\n', "coap_bind: expected HOST:PORT"),
        ('core_url = "ftp://x"\n', "core_url: must be an http:// or https:// URL"),
        ('[[devices]]\nid = "a"\n', "devices[0].token: must be a non-empty string"),
        ('[[devices]]\nid = "a"\ntoken = "t"\n', "upstream_token: is required"),
        (
            '[[devices]]\nid = "a"\ntoken = "t"\nmethods = ["PATCH"]\n',
            "devices[0].methods: unknown method",
        ),
        ("this is not toml", "invalid TOML"),
    ],
)
def test_bad_config_names_the_key(cli, tmp_path, toml, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    r = cli("run", "--config", str(cfg), "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 2
    err = r.stderr.decode()
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_flags_and_env(cli, tmp_path):
    r = cli("run", "--coap-bind", "1.2.3.4:99999", "--state-dir", str(tmp_path))
    assert r.returncode == 2 and b"coap_bind: port must be 0-65535" in r.stderr
    r = cli("run", "--bogus")
    assert r.returncode == 2 and b"unrecognized arguments" in r.stderr
    r = cli("frobnicate")
    assert r.returncode == 2 and b"unknown command" in r.stderr
    # The real process: an environment variable, one line, no traceback.
    env = dict(os.environ, GATEWAY_REQUEST_TIMEOUT="x")
    r = subprocess.run(
        [sys.executable, "-m", "gateway", "run"], env=env, capture_output=True, timeout=30
    )
    assert r.returncode == 2
    assert r.stderr == b"gateway: config: GATEWAY_REQUEST_TIMEOUT: must be a number, got 'x'\n"


def test_port_in_use_is_one_line_exit_1(cli, tmp_path):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        r = cli(
            "run",
            "--core-url",
            "http://127.0.0.1:9",
            "--coap-bind",
            f"127.0.0.1:{port}",
            "--state-dir",
            str(tmp_path / "s"),
        )
    assert r.returncode == 1
    assert r.stderr.decode().startswith(f"gateway: cannot start: coap_bind 127.0.0.1:{port}: ")
    assert b"Traceback" not in r.stderr


def test_a_second_gateway_on_the_same_port_is_refused(cli, our_core, tmp_path):
    with GatewayProc(our_core.url, tmp_path / "a") as first:
        r = cli(
            "run",
            "--core-url",
            our_core.url,
            "--coap-bind",
            f"127.0.0.1:{first.port}",
            "--state-dir",
            str(tmp_path / "b"),
        )
        assert r.returncode == 1 and b"Address already in use" in r.stderr


def test_embedded_core_on_a_fresh_state_dir(cli, tmp_path):
    state = tmp_path / "fresh"
    with GatewayProc(None, state) as gw:
        assert gw.core_url.startswith("http://127.0.0.1:")
        key = state / "core" / "key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert len(key.read_text().strip()) == 64
        token = (state / "core" / "write-token").read_text().strip()
        assert stat.S_IMODE((state / "core" / "write-token").stat().st_mode) == 0o600
        r = cli("coap", "put", f"127.0.0.1:{gw.port}", "emb/x", "kept", "--token", token)
        assert r.returncode == 0, r.stderr
        assert token not in gw.output() and key.read_text().strip() not in gw.output()
    first_key = key.read_text()
    # A restart reuses the key (the audit chain still verifies) and the data.
    with GatewayProc(None, state) as gw:
        assert key.read_text() == first_key
        r = cli("coap", "get", f"127.0.0.1:{gw.port}", "emb/x")
        assert (r.returncode, r.stdout) == (0, b"kept")


def test_coap_cli_methods_and_exit_codes(cli, our_core, tmp_path):
    with GatewayProc(our_core.url, tmp_path / "s") as gw:
        t = f"127.0.0.1:{gw.port}"
        r = cli(
            "coap",
            "put",
            t,
            "cli/m",
            "-",
            "--token",
            "w",
            "--content-format",
            "json",
            stdin=b'{"a":1}',
        )
        assert (r.returncode, r.stderr.decode().split()[0]) == (0, "2.01")
        r = cli("coap", "get", t, "cli/m", "--verbose")
        assert r.returncode == 0 and r.stdout == b'{"a":1}'
        assert b"CONTENT_FORMAT" in r.stderr and b"ETAG" in r.stderr
        r = cli("coap", "post", t, "cli/m", "+", "--token", "w", "--non")
        assert r.returncode == 0
        assert core_http(our_core, "GET", "/home/cli/m")[2] == b'{"a":1}+'
        r = cli("coap", "delete", t, "cli/m", "--token", "w")
        assert (r.returncode, r.stderr.decode().split()[0]) == (1, "4.01")
        r = cli("coap", "delete", t, "cli/m", "--token", "a")
        assert (r.returncode, r.stderr.decode().split()[0]) == (0, "2.02")
        r = cli("coap", "get", t, "cli/m")
        assert (r.returncode, r.stdout) == (1, b"not found\n")
        core_http(our_core, "PUT", "/home/cli/o", b"0", authorization="Bearer w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "coap",
                "observe",
                t,
                "cli/o",
                "--count",
                "1",
                "--timeout",
                "20",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(100):
            if b"observations 1" in cli("coap", "get", t, ".well-known/gateway/stats").stdout:
                break
            time.sleep(0.1)
        core_http(our_core, "PUT", "/home/cli/o", b"1", authorization="Bearer w")
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and out == b"0\n1\n", err


def test_coap_cli_5xx_is_exit_2(cli, tmp_path):
    from tests.support.servers import free_port

    with GatewayProc(f"http://127.0.0.1:{free_port()}", tmp_path / "s") as gw:
        r = cli("coap", "get", f"127.0.0.1:{gw.port}", "x")
        assert (r.returncode, r.stdout) == (2, b"core unavailable\n")
        assert r.stderr.decode().startswith("5.03")


def test_coap_cli_no_answer_is_exit_2(cli):
    from tests.support.servers import free_udp_port

    r = cli("coap", "get", f"127.0.0.1:{free_udp_port()}", "x", "--timeout", "0.5")
    assert r.returncode == 2 and b"no answer" in r.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["coap", "get", "127.0.0.1:abc", "x"], b"bad port"),
        (["coap", "get", "127.0.0.1:0", "x"], b"bad port"),
        (["coap", "put", "h", "x", "--content-format", "yaml"], b"unknown content format"),
        (["coap", "get", "h"], b"required"),
        (["coap", "fetch", "h", "x"], b"invalid choice"),
        (["coap"], b"missing command"),
        (["coap", "get", "h", "x", "--timeout", "-1"], b"--timeout must be > 0"),
        (["coap", "decode", "zz"], b"not a hex string"),
        (["coap", "decode", "81010001"], b"bad_version"),
    ],
)
def test_coap_cli_bad_input_is_one_line_exit_2(cli, args, needle):
    r = cli(*args)
    assert r.returncode == 2, r
    assert needle in r.stderr and b"Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_coap_decode_pretty_prints_every_option(cli):
    from tests.gateway.coapwire import build

    dgram = build(
        3,
        mid=0x1234,
        token=b"\xab\xcd",
        options=[(11, b"home"), (11, b"x"), (12, b"\x32"), (65001, b"secret"), (27, b"\x0e")],
        payload=b"hi",
    )
    r = cli("coap", "decode", dgram.hex())
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    for needle in (
        "type:    CON",
        "code:    0.03 PUT",
        "mid:     4660",
        "token:   abcd",
        "URI_PATH (11): home",
        "URI_PATH (11): x",
        "CONTENT_FORMAT (12)",
        "BLOCK1 (27)",
        "Elastik-Auth (65001): (6 bytes, hidden",
        "payload: 2 bytes 'hi'",
    ):
        assert needle in text, (needle, text)
    assert "secret" not in text
    r = cli("coap", "decode", "70 00 ca fe")
    assert r.returncode == 0 and "type:    RST" in r.stdout.decode()


def test_main_entry_point_usage(cli):
    r = cli()
    assert r.returncode == 2 and b"usage" in r.stderr
    r = cli("outbox", "--help")
    assert b"Traceback" not in r.stderr
