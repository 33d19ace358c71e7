"""Idempotency keys, stored durably in the same transaction as the write they answer.

Same key and fingerprint within the window: the stored answer is replayed (no new event,
no change emitted). Same key, different fingerprint: 422. Expired keys count as absent and
are pruned by the writer now and then.
"""

from __future__ import annotations

import sqlite3

from .errors import IdempotencyConflict
from .model import Idempotency, WriteResult


def lookup(
    conn: sqlite3.Connection, idem: Idempotency, now: float, window_s: float
) -> WriteResult | None:
    """The replayed result, None when the key is unknown or expired; raises on a mismatch."""
    row = conn.execute(
        "SELECT fingerprint, status, etag, created FROM idempotency WHERE key=?", (idem.key,)
    ).fetchone()
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
