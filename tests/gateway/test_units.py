"""Pure parts of the gateway, no sockets: datagram pre-filter, CoAP mapping, SSE parser,
block-wise state, authorization, configuration and its documentation."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from aiocoap import Message
from aiocoap.error import UnparsableMessage
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import config as config_mod
from gateway.auth import Authorizer, Forbidden, RateLimited, TokenBucket, Unauthorized
from gateway.coap import datagram, mapping
from gateway.coap.blockwise import Block1Spool, Block2Cache, BlockError, block_slice
from gateway.config import ConfigError, Device, GatewayConfig
from gateway.core_client import encode_path
from gateway.sse import SSEParser

ROOT = Path(__file__).resolve().parents[2]


def aiocoap_bytes(**kw) -> bytes:
    m = Message(mid=kw.pop("mid", 1), token=kw.pop("token", b"\x01"), mtype=Type.CON, **kw)
    return m.encode()


# -- datagram pre-filter -----------------------------------------------------------------


def test_well_formed_messages_from_aiocoap_pass():
    for msg in (
        aiocoap_bytes(code=Code.GET, uri_path=("home", "x")),
        aiocoap_bytes(code=Code.PUT, uri_path=("é",), payload=b"p", content_format=60),
        aiocoap_bytes(code=Code.GET, uri_path=("a",) * 20, observe=0, block2=(3, False, 6)),
        aiocoap_bytes(code=Code.POST, uri_path=("x" * 300,), payload=b"y" * 100),
    ):
        assert datagram.inspect(msg) is None


def test_rst_for_oversize_uses_the_mid():
    big = b"\x40\x03\xab\xcd" + b"x" * 1149
    assert len(big) == 1153
    verdict = datagram.inspect(big)
    assert verdict is not None and verdict.reply == b"\x70\x00\xab\xcd"
    assert datagram.inspect(big[:1152]) is None or datagram.inspect(big[:1152]).reply is None


@given(st.binary(max_size=1300))
@settings(max_examples=400, deadline=None)
def test_inspect_never_raises_and_what_passes_is_parsed_or_counted(data):
    verdict = datagram.inspect(data)
    if verdict is None:
        try:
            Message.decode(data)
        except (UnparsableMessage, ValueError, UnicodeDecodeError):
            pass  # the transport drops these as drop.unparsable
    else:
        assert verdict.reason and (verdict.reply is None or len(verdict.reply) == 4)


# -- mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segments", "world"),
    [
        (("note",), "home/note"),
        (("home", "x"), "home/x"),
        (("tmp", "x"), "tmp/x"),
        (("", "home", "x"), "home/x"),
        (("a/b",), "home/a/b"),
        (("u%2Fv",), "home/u%2Fv"),
        (("listen", "x"), "home/listen/x"),
        (("HOME", "x"), "home/HOME/x"),
        (("var", "log", "x"), "var/log/x"),
        (("é", "\u00a0"), "home/é/\u00a0"),
    ],
)
def test_world_from_uri_path(segments, world):
    assert mapping.world_from_uri_path(segments) == world


@pytest.mark.parametrize(
    "segments",
    [
        (),
        ("",),
        ("a", ""),
        ("home",),
        ("var", "log"),
        ("proc", "worlds"),
        ("a", "."),
        ("..",),
        ("a\\b",),
        ("a\x00",),
        ("a\x7f",),
        ("a\u0085",),
        ("home", "", "x"),
    ],
)
def test_bad_world_names(segments):
    with pytest.raises(mapping.BadWorldName):
        mapping.world_from_uri_path(segments)


def test_content_formats():
    assert mapping.content_type_for_format(0) == "text/plain; charset=utf-8"
    assert mapping.content_type_for_format(None) == "application/octet-stream"
    assert mapping.content_type_for_format(256) == "application/octet-stream"
    assert mapping.format_for_content_type("Text/Plain; charset=utf-8") == 0
    assert mapping.format_for_content_type("application/cbor") == 60
    assert mapping.format_for_content_type("text/html") is None
    assert mapping.parse_format_name("json") == 50
    with pytest.raises(ValueError):
        mapping.parse_format_name("yaml")


@pytest.mark.parametrize(
    ("status", "method", "code"),
    [
        (200, "GET", "2.05"),
        (201, "PUT", "2.01"),
        (200, "PUT", "2.04"),
        (202, "PUT", "2.04"),
        (200, "POST", "2.04"),
        (202, "POST", "2.04"),
        (204, "DELETE", "2.02"),
        (202, "DELETE", "2.02"),
        (401, "GET", "4.01"),
        (404, "GET", "4.04"),
        (412, "PUT", "4.12"),
        (413, "PUT", "4.13"),
        (507, "PUT", "5.07"),
        (500, "PUT", "5.00"),
        (502, "GET", "5.03"),
        (503, "PUT", "5.03"),
        (504, "DELETE", "5.03"),
        (422, "PUT", "4.22"),
        (414, "GET", "4.00"),
        (418, "GET", "4.00"),
    ],
)
def test_status_mapping(status, method, code):
    assert mapping.code_for_status(status, method)[0] == code


def test_short_etag_is_8_bytes_and_quote_insensitive():
    assert len(mapping.short_etag('"hmac-ab"')) == 8
    assert mapping.short_etag('"hmac-ab"') == mapping.short_etag("hmac-ab")
    assert mapping.http_etag_from_option(b"12345678") is None
    assert mapping.http_etag_from_option(b"hmac-" + b"a" * 64) == '"hmac-' + "a" * 64 + '"'


def test_encode_path_keeps_pchars_and_escapes_the_rest():
    assert encode_path("/home/a b%/é?#") == "/home/a%20b%25/%C3%A9%3F%23"
    assert encode_path("/home/x!$&'()*+,;=:@~") == "/home/x!$&'()*+,;=:@~"


# -- SSE -----------------------------------------------------------------------------------

STREAM = (
    b"event: put\nid: 7\ndata: path: /home/x\ndata: method: PUT\ndata: etag: hmac-1\n\n"
    b": keepalive\n\n"
    b"event: lag\r\ndata: missed: 3\r\n\r\n"
    b"event: delete\rid: 9\rdata: path: /home/x\rdata: method: DELETE\r\r"
)


def test_sse_parser_at_every_split_point():
    whole = SSEParser().feed(STREAM)
    assert [(e.event, e.id, e.fields.get("path")) for e in whole] == [
        ("put", "7", "/home/x"),
        ("lag", None, None),
        ("delete", "9", "/home/x"),
    ]
    assert whole[0].fields["etag"] == "hmac-1" and whole[1].data == "missed: 3"
    for cut in range(1, len(STREAM)):
        p = SSEParser()
        evs = p.feed(STREAM[:cut]) + p.feed(STREAM[cut:])
        assert [(e.event, e.id, e.data) for e in evs] == [(e.event, e.id, e.data) for e in whole], (
            cut
        )
    bytewise = SSEParser()
    evs = [e for i in range(len(STREAM)) for e in bytewise.feed(STREAM[i : i + 1])]
    assert len(evs) == 3 and bytewise.last_event_id == "9"


def test_sse_parser_bounds_a_runaway_line():
    p = SSEParser()
    p.feed(b"data: " + b"x" * 100_000)
    assert len(p._buf) == 0
    assert [e.event for e in p.feed(b"\n\nevent: put\ndata: a\n\n")] == ["put"]


# -- block-wise ----------------------------------------------------------------------------


def test_block1_spool_reassembles_and_bounds():
    s = Block1Spool(2, 100)
    assert s.feed("k", 0, True, 16, b"a" * 16) is None
    assert s.feed("k", 1, False, 16, b"b" * 5) == b"a" * 16 + b"b" * 5
    assert len(s) == 0
    with pytest.raises(BlockError) as e:
        s.feed("k", 2, True, 16, b"x" * 16)
    assert e.value.code == "4.08"
    s.feed("k", 0, True, 16, b"a" * 16)
    with pytest.raises(BlockError) as e:
        s.feed("k", 2, True, 16, b"x" * 16)  # gap
    assert e.value.code == "4.08"
    for i in range(10):
        s.feed(i, 0, True, 16, b"a" * 16)
    assert len(s) == 2
    s.feed("big", 0, True, 64, b"a" * 64)
    with pytest.raises(BlockError) as e:
        s.feed("big", 1, True, 64, b"a" * 64)
    assert e.value.code == "4.13"


def test_block1_spool_expires():
    now = [0.0]
    s = Block1Spool(8, 100, clock=lambda: now[0])
    s.feed("k", 0, True, 16, b"a" * 16)
    now[0] = 1000.0
    with pytest.raises(BlockError):
        s.feed("k", 1, False, 16, b"b")
    assert len(s) == 0


def test_block2_cache_bounds_and_slices():
    now = [0.0]
    c = Block2Cache(3, clock=lambda: now[0])
    for i in range(10):
        c.put(i, i)
    assert len(c) == 3 and c.get(9) == 9 and c.get(0) is None
    now[0] = 1000.0
    assert c.get(9) is None
    assert block_slice(b"x" * 1500, 0, 6) == (b"x" * 1024, True)
    assert block_slice(b"x" * 1500, 1, 6) == (b"x" * 476, False)
    with pytest.raises(ValueError):
        block_slice(b"x" * 1500, 2, 6)


# -- authorization ---------------------------------------------------------------------------


def test_passthrough_forwards_only_header_safe_tokens():
    a = Authorizer(GatewayConfig())
    assert a.authorize("PUT", "home/x", b"w").headers == {"authorization": "Bearer w"}
    assert a.authorize("PUT", "home/x", None).headers == {}
    assert a.authorize("PUT", "home/x", b"w ").headers == {}
    assert a.authorize("PUT", "home/x", b"a\r\nX-Evil: 1").headers == {}
    assert a.authorize("PUT", "home/x", b"\xff").headers == {}


def test_device_table_decisions():
    now = [0.0]
    cfg = GatewayConfig(
        upstream_token="up",
        devices=(Device("d", "tok", ("home/d/",), ("GET", "PUT"), rate=1.0, burst=2),),
    )
    a = Authorizer(cfg, clock=lambda: now[0])
    g = a.authorize("PUT", "home/d/x", b"tok")
    assert g.headers == {"authorization": "Bearer up"} and g.device == "d"
    with pytest.raises(Forbidden):
        a.authorize("DELETE", "home/d/x", b"tok")
    with pytest.raises(RateLimited) as e:
        a.authorize("GET", "home/d/x", b"tok")
    assert e.value.max_age == 1
    now[0] = 1.0
    with pytest.raises(Forbidden):
        a.authorize("GET", "home/e/x", b"tok")
    for bad in (b"", b"to", b"tok ", b"TOK", None):
        with pytest.raises(Unauthorized):
            a.authorize("GET", "home/d/x", bad)


def test_token_bucket():
    b = TokenBucket(rate=2.0, burst=2, now=0.0)
    assert b.take(0.0) == 0 and b.take(0.0) == 0
    assert b.take(0.0) == pytest.approx(0.5)
    assert b.take(0.5) == 0


# -- configuration -------------------------------------------------------------------------


def test_config_layers(tmp_path):
    f = tmp_path / "g.toml"
    f.write_text(
        '[gateway]\ncore_url = "http://a:1"\nrequest_timeout = 2\n[outbox]\nmax_bytes = 5\n'
    )
    cfg = config_mod.load(f, env={"GATEWAY_REQUEST_TIMEOUT": "3.5", "GATEWAY_MAX_IN_FLIGHT": "7"})
    assert (cfg.core_url, cfg.request_timeout, cfg.max_in_flight) == ("http://a:1", 3.5, 7)
    assert cfg.outbox == {"max_bytes": 5}
    cfg = config_mod.load(f, env={}, overrides={"core_url": "http://b:2", "state_dir": None})
    assert cfg.core_url == "http://b:2" and cfg.state_dir == "./gateway-state"


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("max_in_flight = true\n", "max_in_flight: must be an integer"),
        ('coap_bind = "[::1]5683"\n', "coap_bind: expected [IPV6]:PORT"),
        ('coap_bind = "host.example:5683"\n', "coap_bind: host must be an IP address"),
        ('log_level = "loud"\n', "log_level: must be one of"),
        ("retry_after = -1\n", "retry_after: must be >= 0"),
        ("devices = 3\n", "devices: must be an array of tables"),
        (
            'upstream_token = "u"\n[[devices]]\nid = "a"\ntoken = "t"\nrate = -1\n',
            "devices[0].rate",
        ),
        (
            'upstream_token = "u"\n[[devices]]\nid = "a"\ntoken = "t"\nburst = 0\n',
            "devices[0].burst",
        ),
        (
            'upstream_token = "u"\n[[devices]]\nid = "a"\ntoken = "t"\ncolour = 1\n',
            "devices[0].colour: unknown key",
        ),
        (
            'upstream_token = "u"\n[[devices]]\nid = "a"\ntoken = "t"\n[[devices]]\nid = "a"\ntoken = "s"\n',
            "duplicate device id",
        ),
        (
            'upstream_token = "u"\n[[devices]]\nid = "a"\ntoken = "t"\n[[devices]]\nid = "b"\ntoken = "t"\n',
            "share a token",
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, msg):
    f = tmp_path / "g.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(msg)):
        config_mod.load(f, env={})


def test_outbox_table_is_validated_on_load(tmp_path):
    pytest.importorskip("gateway.outbox")
    f = tmp_path / "g.toml"
    f.write_text("[outbox]\ncolour = 1\n")
    with pytest.raises(ConfigError, match=r"outbox\.colour: unknown key"):
        config_mod.load(f, env={})
    f.write_text("[outbox]\nmax_bytes = -1\n")
    with pytest.raises(ConfigError, match=r"outbox\.max_bytes"):
        config_mod.load(f, env={})


def test_config_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        config_mod.load("/nonexistent/g.toml", env={})


def test_every_config_field_is_documented():
    doc = (ROOT / "docs" / "gateway-config.md").read_text()
    for f in dataclasses.fields(GatewayConfig):
        assert f"| `{f.name}` |" in doc, f.name
    for f in dataclasses.fields(Device):
        assert f"| `{f.name}` |" in doc, f.name


def test_tokens_do_not_appear_in_repr():
    cfg = GatewayConfig(upstream_token="UPSECRET", devices=(Device("d", "DEVSECRET"),))
    assert "SECRET" not in repr(cfg)
