"""The sans-IO codec of elastik_micro: byte-exact against aiocoap's encoder and decoder,
round trips over random messages (hypothesis), and a fuzz loop where decode either returns
or raises ValueError. The same aiocoap vectors also run under the MicroPython unix port."""

from __future__ import annotations

import json
import random
import subprocess
import warnings
from pathlib import Path
from typing import Any

import aiocoap
import elastik_micro as em
import pytest
from aiocoap import numbers as coap_numbers
from aiocoap import optiontypes
from aiocoap.numbers.optionnumbers import OptionNumber
from fw_support import MICRO, MP_DIR, micropython_bin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

Option = tuple[int, bytes | int]
# Numbers aiocoap knows decode into typed values (UTF-8 strings, blocks); random values go
# to the other numbers, which aiocoap treats as opaque. Known ones are in handmade vectors.
KNOWN = frozenset(int(o) for o in OptionNumber)


def unknown_number(rng: random.Random, top: int) -> int:
    while True:
        n = rng.randrange(0, top)
        if n not in KNOWN:
            return n


def aiocoap_encode(
    mtype: int, c: int, mid: int, token: bytes, options: list[Option], payload: bytes
) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m = aiocoap.Message(
            mtype=coap_numbers.types.Type(mtype),
            code=coap_numbers.codes.Code(c),
            mid=mid,
            token=token,
            payload=payload,
        )
    for num, value in options:
        if isinstance(value, int):
            m.opt.add_option(optiontypes.UintOption(num, value))
        else:
            m.opt.add_option(optiontypes.OpaqueOption(num, value))
    return bytes(m.encode())


def aiocoap_raw_options(wire: bytes) -> list[tuple[int, bytes]]:
    m = aiocoap.Message.decode(wire)
    return [(int(o.number), bytes(o.encode())) for o in m.opt.option_list()]


# Every delta and length encoding: nibble, 1 extension byte (13..268), 2 bytes (269..).
BOUNDARY_LENGTHS = [0, 1, 12, 13, 14, 268, 269, 270, 600]
BOUNDARY_NUMBERS = [1, 12, 13, 14, 268, 269, 270, 1000, 65000, 65001, 65535]


def handmade_vectors() -> list[tuple[int, int, int, bytes, list[Option], bytes]]:
    vs: list[tuple[int, int, int, bytes, list[Option], bytes]] = [
        (0, 3, 0x1234, b"\x01\x02\x03\x04", [(11, b"sensor"), (11, b"temp"), (12, 0)], b"21.5"),
        (0, 1, 0, b"", [(11, b"a")], b""),
        (2, 0x45, 0xFFFF, b"12345678", [(12, 42), (23, (3 << 4) | 8 | 6)], b"x" * 1024),
        (1, 2, 7, b"t", [(11, b"home"), (65001, b"w")], b"line"),
        (3, 0, 9, b"", [], b""),
        (2, 0x83, 1, b"ab", [(12, 0), (14, 5)], b"core unavailable\n"),
        (0, 3, 2, b"", [(11, b"s" * 255), (12, 256), (65001, b"k" * 300)], b"\x00\xff"),
    ]
    for n in BOUNDARY_NUMBERS:
        for ln in BOUNDARY_LENGTHS:
            vs.append((0, 3, n, b"\x09", [(n, b"v" * ln)], b""))
    for a in BOUNDARY_NUMBERS:
        for b in BOUNDARY_NUMBERS:
            if b >= a:
                vs.append((1, 2, a, b"", [(a, b"1"), (b, b"2" * (b % 300))], b"p"))
    for v in (0, 1, 255, 256, 65535, 65536, 2**24, 2**32 - 1):
        vs.append((0, 1, 3, b"", [(12, v), (60, v)], b""))
    return vs


def random_vectors(n: int, seed: int) -> list[tuple[int, int, int, bytes, list[Option], bytes]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        opts: list[Option] = []
        for _ in range(rng.randrange(6)):
            num = unknown_number(rng, rng.choice([300, 65536]))
            if rng.random() < 0.3:
                opts.append((num, rng.randrange(2**32)))
            else:
                opts.append((num, rng.randbytes(rng.choice([0, 3, 12, 13, 268, 269, 400]))))
        out.append(
            (
                rng.randrange(4),
                rng.randrange(1, 256),
                rng.randrange(65536),
                rng.randbytes(rng.randrange(9)),
                opts,
                rng.randbytes(rng.choice([0, 1, 100, 1024])),
            )
        )
    return out


ALL_VECTORS = handmade_vectors() + random_vectors(200, 1)


def test_encode_is_byte_identical_to_aiocoap() -> None:
    bad = []
    for i, (mtype, c, mid, token, options, payload) in enumerate(ALL_VECTORS):
        want = aiocoap_encode(mtype, c, mid, token, options, payload)
        if em.encode(mtype, c, mid, token, options, payload) != want:
            bad.append(i)
    assert bad == []


def test_decode_agrees_with_aiocoap() -> None:
    bad = []
    for i, (mtype, c, mid, token, options, payload) in enumerate(ALL_VECTORS):
        wire = aiocoap_encode(mtype, c, mid, token, options, payload)
        if em.decode(wire) != (mtype, c, mid, token, aiocoap_raw_options(wire), payload):
            bad.append(i)
    assert bad == []


def test_client_request_bytes_match_aiocoap(tmp_path: Path) -> None:
    """The exact datagram the Client builds (header, Uri-Path, CF, Block2, token option,
    payload) equals aiocoap's encoding of the same message."""
    c = em.Client("127.0.0.1", 9, token="secret-token" * 30)
    try:
        n = c._req(3, "sensor/temp", b"21.5", 0, -1)
        tx = bytes(c._tx[:n])
        want = aiocoap_encode(
            0,
            3,
            c._mid,
            tx[4:8],
            [(11, b"sensor"), (11, b"temp"), (12, 0), (65001, b"secret-token" * 30)],
            b"21.5",
        )
        assert tx == want
        n = c._req(1, "/big", b"", None, (5 << 4) | 6)
        tx = bytes(c._tx[:n])
        assert tx == aiocoap_encode(
            0,
            1,
            c._mid,
            tx[4:8],
            [(11, b"big"), (23, (5 << 4) | 6), (65001, b"secret-token" * 30)],
            b"",
        )
    finally:
        c.close()


_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=255)


@settings(max_examples=100, deadline=None)
@given(
    segments=st.lists(_segment, min_size=1, max_size=5).filter(
        lambda segs: all(x not in (".", "..") for x in segs)
    ),
    value=st.binary(max_size=700),
    cf=st.one_of(st.none(), st.sampled_from([0, 42, 255, 256, 65535])),
    token=st.one_of(st.none(), st.binary(min_size=1, max_size=300)),
)
def test_client_requests_match_aiocoap_or_are_refused_when_too_big(
    segments: list[str], value: bytes, cf: int | None, token: bytes | None
) -> None:
    c = em.Client("127.0.0.1", 9, token=token)
    try:
        opts: list[Option] = [(11, seg.encode()) for seg in segments]
        if cf is not None:
            opts.append((12, cf))
        if token:
            opts.append((65001, token))
        try:
            n = c._req(3, "/".join(segments), value, cf, -1)
        except ValueError:
            # refused only when aiocoap's encoding of the same message is over the limit
            assert len(aiocoap_encode(0, 3, 0, b"1234", opts, value)) > 1152
            assert len(c._tx) == 1152
            return
        tx = bytes(c._tx[:n])
        assert tx == aiocoap_encode(0, 3, c._mid, tx[4:8], opts, value)
        assert len(tx) <= 1152
    finally:
        c.close()


options_st = st.lists(
    st.tuples(
        st.integers(0, 65535).filter(lambda n: n not in KNOWN),
        st.one_of(st.binary(max_size=300), st.integers(0, 2**32 - 1)),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mtype=st.integers(0, 3),
    c=st.integers(1, 255),
    mid=st.integers(0, 65535),
    token=st.binary(max_size=8),
    options=options_st,
    payload=st.binary(max_size=600),
)
def test_round_trip_and_aiocoap_agreement_on_random_messages(
    mtype: int, c: int, mid: int, token: bytes, options: list[Option], payload: bytes
) -> None:
    wire = em.encode(mtype, c, mid, token, options, payload)
    assert wire == aiocoap_encode(mtype, c, mid, token, options, payload)
    t, c2, mid2, tok2, opts2, pl2 = em.decode(wire)
    assert (t, c2, mid2, tok2, pl2) == (mtype, c, mid, token, payload)
    assert opts2 == aiocoap_raw_options(wire)
    expect = []
    for num, v in sorted(options, key=lambda o: o[0]):
        if isinstance(v, int):
            v = v.to_bytes((v.bit_length() + 7) // 8, "big")
        expect.append((num, v))
    assert opts2 == expect


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x40\x01\x00",  # shorter than a header
        b"\x80\x01\x00\x01",  # version 2
        b"\x49\x01\x00\x01" + b"x" * 9,  # token length 9
        b"\x44\x01\x00\x01ab",  # token longer than the datagram
        b"\x40\x01\x00\x01\xff",  # payload marker with no payload
        b"\x40\x01\x00\x01\xf0",  # option delta 15
        b"\x40\x01\x00\x01\x0f",  # option length 15
        b"\x40\x01\x00\x01\xd0",  # delta extension byte missing
        b"\x40\x01\x00\x01\xe0\x01",  # two-byte delta extension cut short
        b"\x40\x01\x00\x01\x0d",  # length extension byte missing
        b"\x40\x01\x00\x01\x03ab",  # value cut short
        b"\x40\x01\x00\x01\xe0\xff\xff",  # option number past 65535
        b"\x40\x00\x00\x01\xff\x01",  # empty message with a payload
    ],
)
def test_malformed_datagrams_raise_value_error(wire: bytes) -> None:
    with pytest.raises(ValueError):
        em.decode(wire)


def test_encoder_refuses_what_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        em.encode(0, 1, 1, b"123456789")
    with pytest.raises(ValueError):
        em.encode(0, 1, 1, b"", [(1, b"x" * 65805)])
    with pytest.raises(ValueError):
        em.encode(0, 1, 1, b"", [(1, 2**32)])
    buf = bytearray(10)
    with pytest.raises(ValueError):
        em.put_option(buf, 0, 11, b"x" * 10)  # does not fit the buffer
    assert buf == bytearray(10)  # nothing written


def test_fuzzed_datagrams_only_ever_decode_or_raise_value_error() -> None:
    rng = random.Random(20261122)
    seeds = [aiocoap_encode(*v) for v in ALL_VECTORS[:60]]
    outcomes = {"ok": 0, "ValueError": 0}
    for i in range(20000):
        if i % 3 == 0:
            data = rng.randbytes(rng.randrange(40))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 5)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.5:
                data = data[: rng.randrange(len(data) + 1)]
            data = bytes(data)
        try:
            em.decode(data)
            outcomes["ok"] += 1
        except ValueError:
            outcomes["ValueError"] += 1
    assert outcomes["ok"] > 1000 and outcomes["ValueError"] > 1000, outcomes


def _vector_json(v: Any) -> dict[str, Any]:
    mtype, c, mid, token, options, payload = v
    wire = aiocoap_encode(mtype, c, mid, token, options, payload)
    return {
        "type": mtype,
        "code": c,
        "mid": mid,
        "token": token.hex(),
        "options": [[n, x if isinstance(x, int) else x.hex()] for n, x in options],
        "payload": payload.hex(),
        "wire": wire.hex(),
        "raw_options": [[n, x.hex()] for n, x in aiocoap_raw_options(wire)],
    }


def test_aiocoap_vectors_and_fuzz_under_micropython(tmp_path: Path) -> None:
    vectors = tmp_path / "vectors.json"
    vectors.write_text(json.dumps([_vector_json(v) for v in ALL_VECTORS]))
    res = subprocess.run(
        [str(micropython_bin()), str(MP_DIR / "fw_codec.py"), str(vectors), "5000"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"MICROPYPATH": f"{MICRO}:.frozen"},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["vectors"] == len(ALL_VECTORS)
    assert out["mismatches"] == []
    assert out["fuzz"]["other"] == []
    assert out["fuzz"]["ok"] > 100 and out["fuzz"]["ValueError"] > 100, out["fuzz"]
