"""Import a REFERENCE data directory (elastik-core 8.3.0, one ``universe.db`` per world) into
our single database, keeping every event verbatim.

Same key, same HMAC formula: the imported chains verify unchanged, the ETags clients hold
stay valid (an ETag is the tail event's hmac), and later writes continue each chain exactly
as the reference would. Each source world is verified (chain and D3 state) before it is
copied; a broken world, or a name that already exists in the destination, is skipped and
reported. The destination's writer lock is held for the whole import, so the server must
not be running on it; the source is only read.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from . import audit, refdata, verifytool, worldstore
from .errors import FatalError
from .writerlock import WriterLock


@dataclass(frozen=True, slots=True)
class ImportRow:
    world: str
    events: int
    imported: bool
    detail: str  # why it was skipped; "" when imported


def import_reference(src: Path, dst: Path, key: bytes) -> list[ImportRow]:
    """Copy every verifiable world of ``src`` into ``dst`` (created if missing)."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"not a data directory: {src}")
    if (src / worldstore.DB_NAME).exists():
        raise ValueError(f"{src} is already in our layout ({worldstore.DB_NAME})")
    dst.mkdir(parents=True, exist_ok=True)
    lock = WriterLock.acquire(dst)
    try:
        conn = worldstore.connect(dst / worldstore.DB_NAME, writer=True)
        try:
            worldstore.create_schema(conn)
            return _import_all(conn, src, key)
        finally:
            conn.close()
    finally:
        lock.release()


def _import_all(conn: sqlite3.Connection, src: Path, key: bytes) -> list[ImportRow]:
    want = audit.key_check_value(key)
    stored = worldstore.get_meta(conn, "key_check")
    has_events = conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None
    if stored is not None and stored != want and has_events:
        raise FatalError("import failed: the destination was written with a different key")
    rows: list[ImportRow] = []
    for data in refdata.iter_worlds(src):
        rows.append(_import_one(conn, key, data))
    conn.execute("BEGIN IMMEDIATE")
    worldstore.set_meta(conn, "key_check", want)
    conn.execute("COMMIT")
    return rows


def _import_one(conn: sqlite3.Connection, key: bytes, w: refdata.RefWorldData) -> ImportRow:
    check = verifytool.check_world(key, w.world, w.events, w.body, w.content_type, w.headers)
    if not check.ok:
        return ImportRow(w.world, len(w.events), False, check.detail)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM worlds WHERE name=?", (w.world,)).fetchone():
            conn.execute("ROLLBACK")
            return ImportRow(w.world, len(w.events), False, "already exists in destination")
        worldstore.upsert_world(
            conn, w.world, w.body, w.content_type, worldstore.encode_headers(w.headers)
        )
        last_id, last_hmac = 0, ""
        for ev in w.events:
            cur = conn.execute(
                "INSERT INTO events(world, timestamp, event_type, target, body_sha256, size,"
                " content_type, meta_sha256, hmac, prev_hmac) VALUES(?,?,?,?,?,?,?,?,?,?)",
                (
                    w.world,
                    w.timestamps.get(ev.id, ""),
                    ev.event_type,
                    ev.target,
                    ev.body_sha256,
                    ev.size,
                    ev.content_type,
                    ev.meta_sha256,
                    ev.hmac,
                    ev.prev_hmac,
                ),
            )
            eid = cur.lastrowid
            assert eid is not None
            if ev.headers:
                conn.executemany(
                    "INSERT INTO event_headers(event_id, name, value) VALUES(?,?,?)",
                    [(eid, n, v) for n, v in ev.headers],
                )
            last_id, last_hmac = eid, ev.hmac
        conn.execute(
            "INSERT OR REPLACE INTO checkpoint(world, event_id, hmac) VALUES(?,?,?)",
            (w.world, last_id, last_hmac),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return ImportRow(w.world, len(w.events), True, "")
