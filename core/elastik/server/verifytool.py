"""``python -m elastik verify``: replay every event of every world, no checkpoint trusted.

Works on our data directory (``elastik.db``) and on a reference data directory (one
``universe.db`` per world). It opens the database read-only inside one read transaction,
so it can run while the server is up: WAL gives it a consistent snapshot of the last
committed state and it never blocks the writer (nor takes the writer lock).
Besides the chain (§14.7 a–c) it checks each world's current state against its latest
event (D3).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import audit, refdata, worldstore


@dataclass(frozen=True, slots=True)
class VerifyRow:
    world: str
    events: int
    ok: bool
    detail: str  # "" when ok, else why


def _row(world: str, events: int, brk: audit.Break | None) -> VerifyRow:
    if brk is None:
        return VerifyRow(world, events, True, "")
    if brk.at == "state":
        reason = f"state mismatch: expected {brk.expected}, actual {brk.actual}"
    else:
        reason = (
            f"audit chain broken at event {brk.at}: expected {brk.expected}, actual {brk.actual}"
        )
    return VerifyRow(world, events, False, reason)


def check_world(
    key: bytes,
    world: str,
    events: Iterable[audit.Event],
    body: bytes,
    content_type: str,
    headers: tuple[tuple[str, str], ...],
) -> VerifyRow:
    """Full walk of one world plus the D3 state check. ``events`` in the row is the
    world's total event count, also when the chain breaks early."""
    it = iter(events)
    brk, walker = audit.verify_chain(key, it)
    total = walker.count
    if brk is None:
        brk = audit.check_state(walker.last_state, body, content_type, headers)
    elif brk is not audit.NO_EVENTS:
        total += 1 + sum(1 for _ in it)  # the broken event and the rest
    return _row(world, total, brk)


def verify_data(data: Path, key: bytes) -> list[VerifyRow]:
    """One row per durable world, bytewise sorted. Raises FileNotFoundError without data."""
    data = Path(data)
    db = data / worldstore.DB_NAME
    if db.is_file():
        return _verify_ours(db, key)
    if not data.is_dir():
        raise FileNotFoundError(f"not a data directory: {data}")
    return [
        check_world(key, w.world, w.events, w.body, w.content_type, w.headers)
        for w in refdata.iter_worlds(data)
    ]


def _verify_ours(db: Path, key: bytes) -> list[VerifyRow]:
    conn = sqlite3.connect(worldstore.readonly_uri(db), uri=True, timeout=30.0)
    rows: list[VerifyRow] = []
    try:
        conn.execute("BEGIN")  # one snapshot for the whole replay
        names = [str(r[0]) for r in conn.execute("SELECT name FROM worlds ORDER BY name")]
        for world in names:
            st = worldstore.load(conn, world, with_body=True)
            if st is None:
                continue
            events = worldstore.iter_events(conn, world)
            rows.append(
                check_world(key, world, events, st.body or b"", st.content_type, st.headers)
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return rows
