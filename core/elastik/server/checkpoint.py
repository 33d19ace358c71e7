"""Startup verification, incremental (D5), and the key check.

Per durable world we store a checkpoint (id and hmac of the last event known good). At
startup a world is walked only from its checkpoint: its new events must chain onto the
checkpoint hmac and pass rules (a)-(c). The tail event is re-checked even without new
events, and a checkpoint whose event vanished or changed triggers a full walk of that
world. Any failure is reported with the full walk's exact first break (§1.3). Events
before an intact checkpoint are trusted; ``python -m elastik verify`` replays everything.

A wrong key is caught by a stored key-check value (HMAC of a fixed message) and reported
like the reference: the first world's first event fails rule (c).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from . import audit, worldstore
from .errors import FatalError

log = logging.getLogger("elastik.server.engine")


@dataclass
class StartupReport:
    worlds: int = 0
    events_verified: int = 0
    full_walks: int = 0


def _full_walk_or_fail(conn: sqlite3.Connection, key: bytes, world: str) -> tuple[int, str]:
    brk, walker = audit.verify_chain(key, worldstore.iter_events(conn, world))
    if brk is not None:
        raise FatalError(brk.message(world))
    assert walker.last is not None
    return walker.last.id, walker.last.hmac


def _check_key(conn: sqlite3.Connection, key: bytes) -> None:
    want = audit.key_check_value(key)
    stored = worldstore.get_meta(conn, "key_check")
    if stored == want:
        return
    if stored is not None:
        row = conn.execute(
            "SELECT w.name FROM worlds w WHERE EXISTS (SELECT 1 FROM events e"
            " WHERE e.world = w.name) ORDER BY w.name LIMIT 1"
        ).fetchone()
        if row is not None:
            world = str(row[0])
            _full_walk_or_fail(conn, key, world)
            raise FatalError(
                "build Engine failed: audit chain verification failed for "
                f"{world}: ELASTIK_KEY does not match the key this data was written with"
            )
        log.warning("ELASTIK_KEY changed; no audit events exist, adopting the new key")
    worldstore.set_meta(conn, "key_check", want)


def verify_startup(conn: sqlite3.Connection, key: bytes) -> StartupReport:
    """Run in one transaction by the caller; raises FatalError on the first failure."""
    report = StartupReport()
    _check_key(conn, key)
    conn.execute("DELETE FROM checkpoint WHERE world NOT IN (SELECT name FROM worlds)")
    rows = conn.execute(
        "SELECT w.name, c.event_id, c.hmac, (SELECT max(e.id) FROM events e"
        " WHERE e.world = w.name) FROM worlds w"
        " LEFT JOIN checkpoint c ON c.world = w.name ORDER BY w.name"
    ).fetchall()
    intact = _intact_tails(conn, key, report)
    updates: list[tuple[str, int, str]] = []
    for name, cp_id, cp_hmac, tail_id in rows:
        world = str(name)
        report.worlds += 1
        if cp_id is not None and cp_id == tail_id and world in intact:
            continue  # no new events, and the tail re-checked fine in bulk
        result = _incremental(conn, key, world, cp_id, cp_hmac, report)
        if result is None:
            report.full_walks += 1
            result = _full_walk_or_fail(conn, key, world)
        if cp_id is None or result != (cp_id, cp_hmac):
            updates.append((world, *result))
    conn.executemany(
        "INSERT INTO checkpoint(world, event_id, hmac) VALUES(?,?,?) ON CONFLICT(world)"
        " DO UPDATE SET event_id=excluded.event_id, hmac=excluded.hmac",
        updates,
    )
    return report


def _intact_tails(conn: sqlite3.Connection, key: bytes, report: StartupReport) -> set[str]:
    """Worlds whose checkpoint event is still there, unchanged, and passes (a)-(c) against
    its predecessor: checked for all worlds with a few bulk queries (O(worlds))."""
    headers: dict[int, list[tuple[str, str]]] = {}
    for eid, name, value in conn.execute(
        "SELECT h.event_id, h.name, h.value FROM event_headers h"
        " JOIN checkpoint c ON c.event_id = h.event_id ORDER BY h.event_id, h.rowid"
    ):
        headers.setdefault(int(eid), []).append((str(name), str(value)))
    intact: set[str] = set()
    for row in conn.execute(
        "SELECT c.world, c.hmac, e.id, e.event_type, e.target, e.body_sha256, e.size,"
        " e.content_type, e.meta_sha256, e.hmac, e.prev_hmac,"
        " (SELECT p.hmac FROM events p WHERE p.world = c.world AND p.id < c.event_id"
        "  ORDER BY p.id DESC LIMIT 1)"
        " FROM checkpoint c JOIN events e ON e.id = c.event_id AND e.world = c.world"
    ):
        world, cp_hmac = str(row[0]), str(row[1])
        ev = worldstore.event_from_row(row[2:11], tuple(headers.get(int(row[2]), ())))
        report.events_verified += 1
        prev = "" if row[11] is None else str(row[11])
        if ev.hmac == cp_hmac and audit.ChainWalker(key, prev=prev).feed(ev) is None:
            intact.add(world)
    return intact


def _incremental(
    conn: sqlite3.Connection,
    key: bytes,
    world: str,
    cp_id: int | None,
    cp_hmac: str | None,
    report: StartupReport,
) -> tuple[int, str] | None:
    """(last id, last hmac) when the events since the checkpoint verify; None = suspicious."""
    prev = ""
    after = 0
    if cp_id is not None:
        cp_event = worldstore.event_by_id(conn, world, int(cp_id))
        if cp_event is None or cp_event.hmac != cp_hmac:
            return None
        prev, after = str(cp_hmac), int(cp_id)
    walker = audit.ChainWalker(key, prev=prev)
    for ev in worldstore.iter_events(conn, world, after):
        report.events_verified += 1
        if walker.feed(ev) is not None:
            return None
    if walker.last is not None:
        return walker.last.id, walker.last.hmac
    if cp_id is None:
        return None  # no events at all: the full walk reports "no-events"
    # No new events: re-check the tail (the checkpoint event) itself, rules (a)-(c).
    tail = worldstore.event_by_id(conn, world, int(cp_id))
    assert tail is not None
    check = audit.ChainWalker(key, prev=worldstore.prev_hmac_before(conn, world, tail.id))
    report.events_verified += 1
    if check.feed(tail) is not None:
        return None
    return tail.id, tail.hmac
