"""Property: cutting a pipelined byte stream anywhere never changes the answers.

The protocol answers complete requests itself, hands a request whose body is still arriving
to the ASGI path, and queues pipelined requests behind one that waits. Hypothesis builds a
sequence of requests (memory and durable worlds, every method, refusals), sends it once
request by request and once as one pipelined stream cut at random offsets, and both must give the
same answers (status, body, ETag of memory worlds, length) in the same order as when each
request is sent only after the previous answer.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uvicorn.server import ServerState

from tests.core.test_serve_inflight import Recorder, connect

# Repeats weight the draw: durable writes (which wait for the writer) followed by anything
# are the interesting sequences.
PATHS = ["/tmp/fz/a", "/tmp/fz/b", "/home/fz/c", "/home/fz/c", "/home/fz/d", "/tmp/fz/../x"]
PATHS += ["/proc/worlds"]
TOKENS = ["w", "w", "a", "nope", None]


@st.composite
def requests(draw: Any) -> bytes:
    method = draw(
        st.sampled_from(["GET", "HEAD", "PUT", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"])
    )
    path = draw(st.sampled_from(PATHS))
    token = draw(st.sampled_from(TOKENS))
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    body = b""
    if method in ("PUT", "POST", "PATCH"):
        body = draw(st.binary(max_size=300))
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def parse(stream: bytes, methods: list[str]) -> list[tuple[int, bytes, str | None]]:
    out = []
    for method in methods:
        end = stream.index(b"\r\n\r\n")
        head, stream = stream[:end].decode("latin-1"), stream[end + 4 :]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ")[1])
        fields = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
        length = 0 if method == "HEAD" else int(fields.get("content-length", "0"))
        body, stream = stream[:length], stream[length:]
        etag = fields.get("etag", "")
        out.append((status, body, etag if "sha256-" in etag else bool(etag)))
    assert stream == b"", stream[:200]
    return out


def complete_answers(stream: bytes, methods: list[str]) -> int:
    """How many whole answers ``stream`` holds (several may have left in one write)."""
    done = 0
    for method in methods:
        end = stream.find(b"\r\n\r\n")
        if end < 0:
            break
        head = stream[:end].decode("latin-1").lower()
        length = 0
        if method != "HEAD" and "content-length: " in head:
            length = int(head.split("content-length: ")[1].split("\r\n")[0])
        if len(stream) < end + 4 + length:
            break
        stream = stream[end + 4 + length :]
        done += 1
    return done


async def answered(transport: Recorder, state: ServerState, methods: list[str]) -> None:
    for _ in range(1000):
        got = complete_answers(b"".join(transport.written), methods)
        if got >= len(methods) and not state.tasks:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{got} answers, expected {len(methods)}")


async def exchange(chunks: list[bytes], methods: list[str], *, one_by_one: bool = False) -> bytes:
    """Feed ``chunks`` to one connection; ``one_by_one``: each chunk is one request, sent
    only after the previous one was answered (no pipelining at all: the baseline)."""
    proto, transport, engine, state = connect()
    for n, chunk in enumerate(chunks, 1):
        proto.data_received(chunk)
        await asyncio.sleep(0)
        if one_by_one:
            await answered(transport, state, methods[:n])
    await answered(transport, state, methods)
    proto.connection_lost(None)
    engine.close()
    return b"".join(transport.written)


def methods_of(reqs: list[bytes]) -> list[str]:
    return [r.split(b" ", 1)[0].decode() for r in reqs]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(requests(), min_size=1, max_size=8), st.lists(st.integers(0, 10_000)))
def test_any_cut_of_a_pipelined_stream_gives_the_same_answers(
    reqs: list[bytes], cuts: list[int]
) -> None:
    methods = methods_of(reqs)
    stream = b"".join(reqs)
    offsets = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(offsets) if b > a]

    async def both() -> tuple[bytes, bytes]:
        alone = await exchange(list(reqs), methods, one_by_one=True)
        cut = await exchange(chunks, methods)
        return alone, cut

    alone, cut = asyncio.run(both())
    assert parse(cut, methods) == parse(alone, methods)
