"""Random datagrams (hypothesis) against a real gateway process in front of our real core:
it neither crashes nor grows its tables past their bounds, and keeps answering."""

from __future__ import annotations

import socket
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.coapwire import build, encode_options, parse
from tests.gateway.gwproc import GatewayProc

BOUNDS = {"exchange_cache": 64, "max_observations": 4, "max_block_transfers": 4}

segment = st.sampled_from(
    [b"home", b"tmp", b"fz", b"a", b"", b"..", b"proc", b"x" * 40, b"\xc3\xa9"]
)
option = st.one_of(
    st.tuples(st.just(11), segment),
    st.tuples(
        st.sampled_from([1, 3, 4, 5, 6, 12, 14, 15, 17, 23, 27, 28, 35, 60, 258, 2049, 65001]),
        st.binary(max_size=6),
    ),
    st.tuples(st.integers(0, 65000), st.binary(max_size=3)),
)
structured = st.builds(
    lambda mtype, code, mid, token, options, payload: (
        build(code, mtype=mtype, mid=mid, token=token, payload=payload)[: 4 + len(token)]
        + encode_options(options)
        + (b"\xff" + payload if payload else b"")
    ),
    st.integers(0, 3),
    st.sampled_from([0, 1, 2, 3, 4, 5, 7, 0x21, 0x45, 0xFF]),
    st.integers(0, 0xFFFF),
    st.binary(max_size=8),
    st.lists(option, max_size=6),
    st.binary(max_size=64),
)
datagrams = st.one_of(st.binary(max_size=1300), structured, structured)


def stats(sock: socket.socket, addr: tuple[str, int]) -> dict[str, float]:
    req = build(
        1, mid=0xABCD, token=b"st", options=[(11, b".well-known"), (11, b"gateway"), (11, b"stats")]
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sock.sendto(req, addr)
        sock.settimeout(0.5)
        try:
            while True:
                data = sock.recv(2048)
                p = parse(data)
                if p.token == b"st" and p.dotted == "2.05":
                    out = {}
                    for line in p.payload.decode().splitlines():
                        name, value, _kind = line.split(" ")
                        out[name] = float(value)
                    return out
        except TimeoutError:
            continue
    raise AssertionError("gateway stopped answering")


def test_random_datagrams_do_not_crash_or_leak(our_core, tmp_path):
    cfg = tmp_path / "fuzz.toml"
    cfg.write_text("".join(f"{k} = {v}\n" for k, v in BOUNDS.items()))
    with GatewayProc(our_core.url, tmp_path / "s", config=cfg) as gw:
        addr = ("127.0.0.1", gw.port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)

        @given(datagrams)
        @settings(
            max_examples=1000, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def send_one(d: bytes) -> None:
            sock.sendto(d, addr)
            try:
                while True:
                    sock.recv(4096)
            except BlockingIOError:
                pass

        send_one()
        # Register more observations than the table holds, then look at every table.
        for i in range(8):
            sock.sendto(
                build(1, mid=9000 + i, token=bytes([i]), options=[(6, b""), (11, b"fz")]), addr
            )
        time.sleep(1.0)
        s = stats(sock, addr)
        assert gw.proc is not None and gw.proc.poll() is None, gw.output()
        assert s["exchange_cache_entries"] <= BOUNDS["exchange_cache"]
        assert s["observations"] <= BOUNDS["max_observations"]
        assert s["block1_transfers"] <= BOUNDS["max_block_transfers"]
        assert s["block2_cached"] <= BOUNDS["max_block_transfers"]
        assert s.get("internal_errors", 0) == 0 and s.get("dispatch_errors", 0) == 0, s
        assert s["datagrams"] >= 800
        assert sum(v for k, v in s.items() if k.startswith("drop.")) > 0
        sock.close()
    assert gw.proc.returncode == 0
    assert "Traceback" not in gw.output(), gw.output()
