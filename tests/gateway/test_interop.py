"""Interop both ways with the reference elastik-core 8.3.0:

- the reference SDK's CoapClient and ``python -m elastik coap`` (run with the reference
  virtualenv's Python) work against our gateway;
- our gateway works with the reference binary as its core;
- the same hand-built datagrams get the same code, payload and Content-Format from our
  gateway as from the reference's built-in CoAP surface (§18 as the floor).
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from tests.gateway.coapwire import UdpClient, build, parse, path_options
from tests.gateway.conftest import coap, coap_message, core_http
from tests.support.servers import (
    ensure_reference,
    free_udp_port,
    reference,
    reference_python,
    running,
)

pytestmark = pytest.mark.reference


def dotted(msg) -> str:
    c = int(msg.code)
    return f"{c >> 5}.{c & 31:02d}"


def ref_py(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    ensure_reference()  # creates .ref-venv with the reference SDK when missing
    return subprocess.run(
        [str(reference_python()), "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


SDK_SCRIPT = r"""
import json, sys
from elastik._coap_client import CoapClient
port = int(sys.argv[1])
c = CoapClient("127.0.0.1", port, token="w", timeout=5)
out = []
r = c.put("interop/sdk", "hello from the sdk"); out.append([r.code, r.payload.decode()])
r = c.put("interop/sdk", "again"); out.append([r.code, r.payload.decode()])
r = c.get("interop/sdk"); out.append([r.code, r.payload.decode(), r.content_format])
r = c.put("interop/bin", b"\x00\x01", content_type="application/octet-stream")
out.append([r.code, r.payload.decode()])
r = c.get("interop/bin"); out.append([r.code, r.payload.hex(), r.content_format])
r = c.get("interop/missing"); out.append([r.code, r.payload.decode(), r.content_format])
r = CoapClient("127.0.0.1", port, token="bad").put("interop/sdk", "x")
out.append([r.code, r.payload.decode()])
try:
    c.get("interop/missing", raise_errors=True)
except Exception as e:
    out.append(type(e).__name__)
print(json.dumps(out))
"""


async def test_reference_sdk_coap_client_against_our_gateway(make_gateway, our_core):
    gw = await make_gateway(our_core.url)
    res = await asyncio.to_thread(ref_py, SDK_SCRIPT, str(gw.port))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out == [
        [65, ""],
        [68, ""],
        [69, "again", 0],
        [65, ""],
        [69, "0001", 42],
        [132, "not found\n", 0],
        [129, "error\n"],
        "NotFound",
    ]


async def test_reference_cli_against_our_gateway(make_gateway, our_core):
    gw = await make_gateway(our_core.url)
    await asyncio.to_thread(ensure_reference)
    py = str(reference_python())

    def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [py, "-m", "elastik", "coap", *args], input=stdin, capture_output=True, timeout=60
        )

    put = await asyncio.to_thread(
        cli, "put", "127.0.0.1", str(gw.port), "interop/cli", "via cli", "--token", "w", "--verbose"
    )
    assert put.returncode == 0, put.stderr
    assert b"2.01" in put.stderr
    get = await asyncio.to_thread(cli, "get", "127.0.0.1", str(gw.port), "interop/cli")
    assert get.returncode == 0 and get.stdout.strip() == b"via cli"
    stdin_put = await asyncio.to_thread(
        cli,
        "put",
        "127.0.0.1",
        str(gw.port),
        "interop/cli",
        "-",
        "--token",
        "w",
        stdin=b"from stdin",
    )
    assert stdin_put.returncode == 0
    assert core_http(our_core, "GET", "/home/interop/cli")[2] == b"from stdin"


async def test_our_gateway_with_the_reference_binary_as_core(make_gateway, ref_core, client):
    gw = await make_gateway(ref_core.url)
    p = gw.port
    assert dotted(await coap(client, "PUT", p, "ri/a", b"1", token="w", cf=50)) == "2.01"
    r = await coap(client, "GET", p, "ri/a")
    assert (dotted(r), r.payload, r.opt.content_format) == ("2.05", b"1", 50)
    assert dotted(await coap(client, "POST", p, "ri/a", b"2", token="w")) == "2.04"
    body = b"0123456789" * 2048
    assert dotted(await coap(client, "PUT", p, "ri/big", body, token="w")) == "2.01"
    r = await coap(client, "GET", p, "ri/big")
    assert r.payload == body
    # Observe is fed by the reference's /listen stream.
    req = client.request(coap_message("GET", p, "ri/a", observe=0))
    first = await asyncio.wait_for(req.response, 10)
    assert first.payload == b"12"
    it = req.observation.__aiter__()
    core_http(ref_core, "PUT", "/home/ri/a", b"3", authorization="Bearer w")
    assert (await asyncio.wait_for(it.__anext__(), 10)).payload == b"3"
    req.observation.cancel()
    # Conditionals work although the reference's CoAP surface has none.
    etag = (await coap(client, "GET", p, "ri/a")).opt.etag
    assert dotted(await coap(client, "PUT", p, "ri/a", b"4", token="w", if_match=[etag])) == "2.04"
    assert dotted(await coap(client, "PUT", p, "ri/a", b"5", token="w", if_match=[etag])) == "4.12"
    assert dotted(await coap(client, "DELETE", p, "ri/a", token="a")) == "2.02"


FLOOR_CASES = [
    (
        "put create",
        lambda: build(
            3, mid=1, options=[*path_options("floor/a"), (12, b""), (65001, b"w")], payload=b"hi"
        ),
    ),
    (
        "put replace",
        lambda: build(3, mid=2, options=[*path_options("floor/a"), (65001, b"w")], payload=b"bin"),
    ),
    ("get octet", lambda: build(1, mid=3, options=path_options("floor/a"))),
    ("get missing", lambda: build(1, mid=4, options=path_options("floor/none"))),
    ("put no token", lambda: build(3, mid=5, options=path_options("floor/b"), payload=b"x")),
    (
        "put bad token",
        lambda: build(3, mid=6, options=[*path_options("floor/b"), (65001, b"Bearer w")]),
    ),
    ("get bad token", lambda: build(1, mid=7, options=[*path_options("floor/a"), (65001, b"zzz")])),
    ("bad path", lambda: build(1, mid=8, options=[(11, b"a"), (11, b"")])),
    ("reserved root", lambda: build(1, mid=9, options=[(11, b"tmp")])),
    ("proc", lambda: build(1, mid=10, options=[(11, b"proc"), (11, b"worlds")])),
    ("no path", lambda: build(1, mid=11)),
    ("oversize", lambda: build(3, mid=12, options=path_options("floor/c"), payload=b"x" * 1200)),
    (
        "put 1144 text",
        lambda: build(
            3, mid=13, options=[*path_options("floor/d"), (65001, b"w")], payload=b"q" * 1144
        ),
    ),
    ("get 1144", lambda: build(1, mid=14, options=path_options("floor/d"))),
    (
        "tmp put",
        lambda: build(3, mid=15, options=[*path_options("tmp/floor"), (65001, b"w")], payload=b"m"),
    ),
    ("tmp get", lambda: build(1, mid=16, options=path_options("tmp/floor"))),
    ("bad version", lambda: b"\x81\x01\x00\x11\x01"),
    ("tkl 9", lambda: b"\x49\x01\x00\x12" + b"t" * 9),
    ("truncated option", lambda: b"\x41\x01\x00\x13\x01\xb5ho"),
]


async def test_floor_cases_match_the_reference_coap_surface(make_gateway, tmp_path):
    coap_port = free_udp_port()
    ref = reference(
        tmp_path, extra={"ELASTIK_COAP_PORT": str(coap_port), "ELASTIK_COAP_HOST": "127.0.0.1"}
    )
    # Two reference cores with their own data: one serves its own CoAP surface, the other
    # is our gateway's core, so both sides see the same sequence of writes.
    with running(ref), running(reference(tmp_path)) as behind_gateway:
        gw = await make_gateway(behind_gateway.url)
        theirs = await UdpClient.open(coap_port)
        mine = await UdpClient.open(gw.port)
        try:
            for name, make in FLOOR_CASES:
                a = await theirs.request(make(), timeout=0.6)
                b = await mine.request(make(), timeout=0.6)
                if a is None or b is None:
                    assert a is None and b is None, name
                    continue
                if len(a) == 4:
                    assert a == b, name  # the bare RST, byte for byte
                    continue
                pa, pb = parse(a), parse(b)
                assert (pb.mtype, pb.dotted, pb.mid, pb.token) == (
                    pa.mtype,
                    pa.dotted,
                    pa.mid,
                    pa.token,
                ), name
                assert pb.payload == pa.payload, name
                assert pb.opt(12) == pa.opt(12), name
                # Our only extra option on these answers: the 8-byte ETag (§5.10.6).
                assert {n for n, _ in pb.options} - {n for n, _ in pa.options} <= {4}, name
        finally:
            theirs.close()
            mine.close()
