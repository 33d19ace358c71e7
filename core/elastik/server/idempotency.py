"""Idempotency keys, stored durably in the same transaction as the write they answer.

Same key and fingerprint within the window: the stored answer is replayed (no new event,
no change emitted). Same key, different fingerprint: 422. Expired keys count as absent and
are pruned by the writer now and then.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .errors import IdempotencyConflict
from .model import Idempotency, WriteResult

_COLS = "fingerprint, status, etag, created"
# Host parameters per IN (...) query, under SQLite's historical limit of 999.
_CHUNK = 500


def fetch_one(conn: sqlite3.Connection, key: str) -> tuple[Any, ...] | None:
    """The stored row of one key: (fingerprint, status, etag, created), or None."""
    row = conn.execute(f"SELECT {_COLS} FROM idempotency WHERE key=?", (key,)).fetchone()
    return None if row is None else tuple(row)


def fetch(conn: sqlite3.Connection, keys: list[str]) -> dict[str, tuple[Any, ...]]:
    """The stored rows of several keys in one statement per 500 keys (a writer batch)."""
    found: dict[str, tuple[Any, ...]] = {}
    unique = list(dict.fromkeys(keys))
    for i in range(0, len(unique), _CHUNK):
        part = unique[i : i + _CHUNK]
        marks = ",".join("?" * len(part))
        for key, *rest in conn.execute(
            f"SELECT key, {_COLS} FROM idempotency WHERE key IN ({marks})", part
        ):
            found[key] = tuple(rest)
    return found


def as_row(idem: Idempotency, result: WriteResult, now: float) -> tuple[Any, ...]:
    """The row ``store`` writes, as ``fetch`` would return it."""
    return (idem.fingerprint, result.status, result.etag, now)


def replay(
    row: tuple[Any, ...] | None, idem: Idempotency, now: float, window_s: float
) -> WriteResult | None:
    """The replayed result, None when the key is unknown or expired; raises on a mismatch."""
    if row is None or float(row[3]) < now - window_s:
        return None
    if row[0] != idem.fingerprint:
        raise IdempotencyConflict()
    return WriteResult(int(row[1]), None if row[2] is None else str(row[2]), replayed=True)


def store(conn: sqlite3.Connection, idem: Idempotency, result: WriteResult, now: float) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO idempotency(key, fingerprint, status, etag, created)"
        " VALUES(?,?,?,?,?)",
        (idem.key, idem.fingerprint, result.status, result.etag, now),
    )


def prune(conn: sqlite3.Connection, now: float, window_s: float) -> int:
    cur = conn.execute("DELETE FROM idempotency WHERE created < ?", (now - window_s,))
    return cur.rowcount
