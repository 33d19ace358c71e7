"""CoapClient and ``python -m elastik coap``: byte-exact encoding (checked with aiocoap),
and real exchanges with the reference core's CoAP surface and our gateway."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import elastik
import pytest
from elastik import CoapClient, Elastik
from elastik.sdk import coap
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sdk.conftest import APPROVE, WRITE, Core
from tests.sdk.helpers import CliResult, run_cli_in_process
from tests.support.servers import ROOT, free_udp_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import aiocoap
    from aiocoap.optiontypes import OpaqueOption


def _aiocoap_bytes(code: aiocoap.Code, segments: list[str], **kw: object) -> bytes:
    auth = kw.pop("auth", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m = aiocoap.Message(
            code=code, mtype=aiocoap.CON, mid=0xBEEF, token=b"\x2a", uri_path=segments, **kw
        )  # type: ignore[arg-type]
    if auth is not None:
        m.opt.add_option(OpaqueOption(coap.AUTH_OPTION, auth))  # type: ignore[arg-type]
    return m.encode()


@pytest.mark.parametrize(
    ("segments", "auth", "cf", "payload"),
    [
        (["home", "note"], None, None, b""),
        (["home", "sensor", "temp"], b"w" * 20, 0, b"23.5"),
        (["tmp", "x" * 12], b"t", 42, b"\x00\x01"),
        (["home", "y" * 13], b"a" * 300, 42, b"p" * 100),
        (["home", "z" * 269, "é"], b"k", None, b""),
    ],
)
def test_encoder_matches_aiocoap(
    segments: list[str], auth: bytes | None, cf: int | None, payload: bytes
) -> None:
    code = aiocoap.PUT if payload else aiocoap.GET
    kw: dict[str, object] = {"payload": payload}
    if cf is not None:
        kw["content_format"] = cf
    ours = coap.encode_request(
        int(code),
        [s.encode() for s in segments],
        message_id=0xBEEF,
        token=b"\x2a",
        payload=payload,
        content_format=cf,
        auth=auth,
    )
    assert ours == _aiocoap_bytes(code, segments, auth=auth, **kw)


def test_decoder_reads_aiocoap_responses() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m = aiocoap.Message(
            code=aiocoap.CONTENT,
            mtype=aiocoap.ACK,
            mid=7,
            token=b"\x01",
            content_format=42,
            payload=b"hello",
        )
    code, mid, token, cf, payload = coap.decode_response(m.encode())
    assert (code, mid, token, cf, payload) == (0x45, 7, b"\x01", 42, b"hello")
    assert coap.coap_code_text(code) == "2.05 Content"
    assert coap.coap_code_text(0x81) == "4.01 Unauthorized" and coap.coap_code_text(0x5F) == "2.31"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decoder_returns_or_raises_value_error(data: bytes) -> None:
    try:
        coap.decode_response(data)
    except ValueError:
        pass


def test_bad_requests_fail_before_sending() -> None:
    with pytest.raises(ValueError, match="content_type"):
        coap.put("127.0.0.1", 9, "home/x", "v", content_type="application/json")
    for bad in ("home", "a//b", "/proc/worlds"):
        with pytest.raises(ValueError):
            coap.get("127.0.0.1", 9, bad)


def test_own_request_echoed_back_is_not_an_answer() -> None:
    """A peer that echoes the request (or a UDP self-connect) must not count as a reply."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as echo:
        echo.bind(("127.0.0.1", 0))
        port = echo.getsockname()[1]

        def bounce() -> None:
            data, peer = echo.recvfrom(2048)
            echo.sendto(data, peer)

        import threading

        t = threading.Thread(target=bounce)
        t.start()
        with pytest.raises(TimeoutError):
            coap.get("127.0.0.1", port, "home/x", timeout=0.3)
        t.join()


def test_silence_is_a_timeout_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
        mute.bind(("127.0.0.1", 0))
        port = mute.getsockname()[1]
        with pytest.raises(TimeoutError, match=f"no CoAP answer from 127.0.0.1:{port} within 0.2s"):
            CoapClient("127.0.0.1", port, timeout=0.2).get("home/x")


# -- real CoAP surfaces ----------------------------------------------------------------


def _answers(port: int) -> bool:
    try:
        coap.get("127.0.0.1", port, "home/probe", timeout=0.3)
        return True
    except TimeoutError:
        return False


@pytest.fixture(scope="module")
def our_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Core, int]]:
    our: Core = request.getfixturevalue("our_core")
    port = free_udp_port()
    state: Path = tmp_path_factory.mktemp("gateway")
    log = open(state / "gateway.log", "wb")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--core-url",
            our.url,
            "--coap-bind",
            f"127.0.0.1:{port}",
            "--state-dir",
            str(state),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ELASTIK_NO_DOTENV": "1"},
    )
    deadline = time.monotonic() + 15
    while not _answers(port):
        time.sleep(0.05)
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip(
                "our gateway did not come up: "
                + (state / "gateway.log").read_text(errors="replace")[-500:]
            )
    yield our, port
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(params=["reference", "gateway", "ours-embedded"])
def coap_target(request: pytest.FixtureRequest) -> tuple[Core, int]:
    if request.param == "gateway":
        return request.getfixturevalue("our_gateway")
    name = "reference_core" if request.param == "reference" else "our_core"
    core: Core = request.getfixturevalue(name)
    assert core.coap_port is not None
    if request.param == "ours-embedded":
        # PROTOCOL D6: ELASTIK_COAP_PORT given to our core starts the gateway's CoAP front
        # door in-process; give it a moment after HTTP is up.
        deadline = time.monotonic() + 5
        while not _answers(core.coap_port) and time.monotonic() < deadline:
            time.sleep(0.05)
    return core, core.coap_port


def test_put_and_get_round_trip_over_coap(coap_target: tuple[Core, int], p: str) -> None:
    core, port = coap_target
    c = CoapClient("127.0.0.1", port, token=WRITE)
    r = c.put(f"home/{p}/temp", "23.5")
    assert r.ok and r.code == 0x41 and r.status == "2.01 Created"
    r.raise_for_status()
    assert c.put(f"home/{p}/temp", "24.0").code == 0x44
    got = c.get(f"home/{p}/temp")
    assert got.ok and got.payload == b"24.0" and got.content_format == 0
    e = Elastik(core.url, bearer_token=APPROVE)
    assert e.get(f"{p}/temp") == b"24.0"
    assert e.head(f"{p}/temp")["content-type"] == "text/plain; charset=utf-8"
    c.put(f"{p}/raw", b"\x00\xff")  # str/bytes picks the content format; path defaults home/
    assert e.head(f"{p}/raw")["content-type"] == "application/octet-stream"
    assert c.get(f"{p}/raw").content_format == 42


def test_coap_errors_map_to_sdk_exceptions(coap_target: tuple[Core, int], p: str) -> None:
    _core, port = coap_target
    bad = CoapClient("127.0.0.1", port, token="wrong")
    r = bad.put(f"home/{p}/x", "v")
    assert r.code == 0x81 and not r.ok
    with pytest.raises(elastik.Unauthorized):
        r.raise_for_status(method="COAP PUT", path=f"home/{p}/x")
    with pytest.raises(elastik.Unauthorized):
        CoapClient("127.0.0.1", port, token="wrong", raise_errors=True).put(f"{p}/x", "v")
    with pytest.raises(elastik.NotFound):
        CoapClient("127.0.0.1", port, token=WRITE).get(f"home/{p}/missing", raise_errors=True)


def test_datagram_limit_is_exactly_1152(coap_target: tuple[Core, int], p: str) -> None:
    _core, port = coap_target
    c = CoapClient("127.0.0.1", port, token=WRITE)
    path = f"home/{p}/edge"
    overhead = (
        len(
            coap.encode_request(
                coap.PUT,
                [s.encode() for s in path.split("/")],
                message_id=0,
                token=b"\x00",
                payload=b"x",
                content_format=42,
                auth=WRITE.encode(),
            )
        )
        - 1
    )
    assert c.put(path, b"x" * (1152 - overhead)).ok
    with pytest.raises(ValueError, match="1153 bytes"):
        c.put(path, b"x" * (1153 - overhead))


def _cli(*args: str, stdin: bytes = b"") -> CliResult:
    """``python -m elastik coap ...`` in-process (the dispatch itself is checked below)."""
    return run_cli_in_process(list(args), {}, stdin)


def test_python_m_elastik_coap_dispatch(reference_core: Core) -> None:
    env = {**os.environ, "ELASTIK_NO_DOTENV": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "elastik",
            "coap",
            "get",
            "127.0.0.1",
            str(reference_core.coap_port),
            "home/none",
        ],
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=30,
    )
    assert r.returncode == 1 and r.stderr.startswith(b"coap: 4.04 Not Found")


def test_cli_coap_put_and_get(coap_target: tuple[Core, int], p: str) -> None:
    _core, port = coap_target
    put = _cli(
        "coap", "put", "127.0.0.1", str(port), f"home/{p}/t", "23.5", "--token", WRITE, "--verbose"
    )
    assert put.returncode == 0 and b"2.01 Created" in put.stderr
    get = _cli("coap", "get", "127.0.0.1", str(port), f"home/{p}/t")
    assert (get.returncode, get.stdout) == (0, b"23.5")
    piped = _cli(
        "coap",
        "put",
        "127.0.0.1",
        str(port),
        f"home/{p}/bin",
        "-",
        "--token",
        WRITE,
        "--content-type",
        "application/octet-stream",
        stdin=b"\x01\x02",
    )
    assert piped.returncode == 0
    assert _cli("coap", "get", "127.0.0.1", str(port), f"home/{p}/bin").stdout == b"\x01\x02"


def test_cli_coap_errors_are_one_line(coap_target: tuple[Core, int], p: str) -> None:
    _core, port = coap_target
    denied = _cli("coap", "put", "127.0.0.1", str(port), f"home/{p}/t", "x", "--token", "bad")
    assert denied.returncode == 1 and denied.stderr.startswith(b"coap: 4.01 Unauthorized")
    big = _cli("coap", "put", "127.0.0.1", str(port), f"home/{p}/t", "x" * 1200)
    assert big.returncode == 1 and b"datagram limit" in big.stderr
    assert b"Traceback" not in big.stderr + denied.stderr
    missing = _cli("coap", "get", "127.0.0.1", str(port), f"home/{p}/none")
    assert missing.returncode == 1 and b"4.04" in missing.stderr
