"""Property test: random concurrent writes give exactly what a sequential model predicts.

Writes submitted together share writer batches, but they commit in submission order, so
every result (status, ETag, error class), the final states and the delete ledger must
equal an independent model applied one op at a time. This exercises the batch overlays
(put/append/delete of one world inside one transaction), memory worlds, quotas and folds.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from pathlib import Path

from elastik.server import audit
from elastik.server.engine import Engine
from elastik.server.errors import ElastikError, NotFound, PayloadTooLarge
from elastik.server.model import EngineConfig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KEY = b"56" * 32
LEDGER = "var/log/deletes"
MAX_WORLD = 200
MAX_MEMORY = 300
WORLDS = ["home/a", "home/b", "var/c", "tmp/m", "dev/n"]


class ModelWorld:
    def __init__(self, body: bytes, ct: str, headers: tuple[tuple[str, str], ...]) -> None:
        self.body, self.ct, self.headers = body, ct, headers
        self.prev = ""


class Model:
    def __init__(self) -> None:
        self.worlds: dict[str, ModelWorld] = {}
        self.ledger_prev = ""
        self.ledger_events = 0

    def memory_used(self) -> int:
        return sum(len(w.body) for n, w in self.worlds.items() if n.startswith(("tmp/", "dev/")))

    def _durable_event(self, name: str, w: ModelWorld, kind: str) -> str:
        sha = hashlib.sha256(w.body).hexdigest()
        meta = audit.meta_sha256(w.ct, w.headers)
        w.prev = audit.event_hmac(KEY, w.prev, kind, name, sha, len(w.body), w.ct, meta)
        return "hmac-" + w.prev

    def apply(self, op: tuple) -> tuple[int, str | None] | type[ElastikError]:
        kind, name = op[0], op[1]
        memory = name.startswith(("tmp/", "dev/"))
        cur = self.worlds.get(name)
        if kind == "put":
            _, _, body, ct, headers = op
            if len(body) > MAX_WORLD:
                return PayloadTooLarge
            if memory and self.memory_used() - (len(cur.body) if cur else 0) + len(body) > (
                MAX_MEMORY
            ):
                return PayloadTooLarge
            w = ModelWorld(body, ct, headers)
            if cur is not None and not memory:
                w.prev = cur.prev
            self.worlds[name] = w
            status = 200 if cur else 201
            if memory:
                return status, "sha256-" + hashlib.sha256(body).hexdigest()
            return status, self._durable_event(name, w, "put")
        if kind == "append":
            data = op[2]
            if cur is None:
                return NotFound
            if len(cur.body) + len(data) > MAX_WORLD:
                return PayloadTooLarge
            if memory and self.memory_used() + len(data) > MAX_MEMORY:
                return PayloadTooLarge
            cur.body += data
            if memory:
                return 200, "sha256-" + hashlib.sha256(cur.body).hexdigest()
            return 200, self._durable_event(name, cur, "append")
        # delete
        if cur is None:
            return NotFound
        del self.worlds[name]
        sha = hashlib.sha256(cur.body).hexdigest()
        for k in ("delete_intent", "delete_commit"):
            self.ledger_prev = audit.event_hmac(
                KEY, self.ledger_prev, k, name, sha, 0, "", audit.DELETE_META_SHA256
            )
            self.ledger_events += 1
        return 204, None


bodies = st.binary(max_size=120)
headers = st.sampled_from([(), (("cache-control", "no"),), (("a", "1"), ("b", "2"))])
ops = st.one_of(
    st.tuples(
        st.just("put"), st.sampled_from(WORLDS), bodies, st.sampled_from(["t", "x/y"]), headers
    ),
    st.tuples(st.just("append"), st.sampled_from(WORLDS), bodies),
    st.tuples(st.just("delete"), st.sampled_from(WORLDS)),
)


async def run_rounds(rounds: list[list[tuple]]) -> None:
    model = Model()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = EngineConfig(
            data=Path(tmp) / "data", key=KEY, max_world_bytes=MAX_WORLD, max_memory_bytes=MAX_MEMORY
        )
        with Engine.open(cfg) as e:
            for ops_ in rounds:
                calls = []
                for op in ops_:
                    if op[0] == "put":
                        calls.append(e.put(op[1], op[2], op[3], op[4]))
                    elif op[0] == "append":
                        calls.append(e.append(op[1], op[2]))
                    else:
                        calls.append(e.delete(op[1]))
                got = await asyncio.gather(*calls, return_exceptions=True)
                for op, res in zip(ops_, got, strict=True):
                    want = model.apply(op)
                    if isinstance(want, type):
                        assert type(res) is want, (op, res)
                    else:
                        assert not isinstance(res, BaseException), (op, res)
                        assert (res.status, res.etag) == want, op
            for name in WORLDS:
                w, m = e.read(name), model.worlds.get(name)
                assert (w is None) == (m is None), name
                if w is not None and m is not None:
                    assert (w.body, w.content_type, w.headers) == (m.body, m.ct, m.headers)
                    if not w.durable:
                        continue
                    v = await e.verify(name)
                    assert v.outcome == "valid" and v.latest == m.prev
            if model.ledger_events:
                v = await e.verify(LEDGER)
                assert (v.outcome, v.events, v.latest) == (
                    "valid",
                    model.ledger_events,
                    model.ledger_prev,
                )
            durable = sum(
                len(m.body) for n, m in model.worlds.items() if not n.startswith(("tmp/", "dev/"))
            )
            assert e.usage().storage_used == durable
            assert e.usage().memory_used == model.memory_used()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.lists(ops, min_size=1, max_size=12), min_size=1, max_size=4))
def test_concurrent_writes_match_sequential_model(rounds: list[list[tuple]]) -> None:
    asyncio.run(run_rounds(rounds))
