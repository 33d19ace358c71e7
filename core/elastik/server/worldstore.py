"""The durable database: schema and the SQL that reads and writes worlds and their events.

All durable worlds live in one SQLite file, ``<data>/elastik.db`` (D1), WAL mode with
``synchronous=FULL``. Event rows keep the reference's §14.2 fields plus a ``world`` column;
``event_headers`` keeps a copy of the persisted headers as of each event. The current
persisted headers of a world are one JSON column of its ``worlds`` row (sorted pairs), so a
PUT without headers costs no extra statement.

A world's body is ``worlds.body`` (its length in ``worlds.size``) followed by its
``appended`` pieces in ``seq`` order: POST inserts a piece instead of rewriting the whole
body (SQLite rewrites a whole row, blob included, on any UPDATE, so an append never
touches the ``worlds`` row), and the writer folds the pieces back into ``worlds.body`` now
and then (``fold_due``). An append costs O(appended bytes) amortized and a read joins at
most ``MAX_PIECES`` rows. Worlds under ``PIECES_MIN_SIZE`` are rewritten whole on append.

Functions here take a connection and run statements; transactions belong to the caller
(the writer thread, or a reader that wants a snapshot).
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .audit import Event

DB_NAME = "elastik.db"
SCHEMA_VERSION = "1"
LEDGER = "var/log/deletes"
MEMORY_ROOTS = frozenset(("tmp", "dev", "sys"))

# 8 MiB page cache per connection (negative = KiB): the hot rows of a few thousand worlds.
_CACHE_KIB = 8192

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS worlds(
    name TEXT PRIMARY KEY,
    body BLOB NOT NULL DEFAULT x'',
    content_type TEXT NOT NULL DEFAULT 'application/octet-stream',
    headers TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS appended(
    world TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY(world, seq)
);
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    world TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    event_type TEXT NOT NULL,
    target TEXT DEFAULT '',
    body_sha256 TEXT DEFAULT '',
    size INTEGER DEFAULT 0,
    content_type TEXT DEFAULT '',
    meta_sha256 TEXT DEFAULT '',
    hmac TEXT NOT NULL,
    prev_hmac TEXT DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_by_world ON events(world, id);
CREATE TABLE IF NOT EXISTS event_headers(
    event_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_headers_by_event ON event_headers(event_id);
CREATE TABLE IF NOT EXISTS idempotency(
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    etag TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_by_created ON idempotency(created);
CREATE TABLE IF NOT EXISTS checkpoint(
    world TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL,
    hmac TEXT NOT NULL
);
"""

# Pieces per world before a fold. 64 bounds the rows a read joins, and folding every 64
# small appends divides the rewrite cost of a large world by 64.
MAX_PIECES = 64
# Worlds below 4 KiB are simply rewritten (a page or so, as cheap as a piece) and so keep
# their whole body in ``worlds.body``, where an operator looking at the database expects it.
PIECES_MIN_SIZE = 4 * 1024
# Pieces always fold once they add up to the base body's size (and at least 1 MiB): the
# rewrites then total at most twice the final size, i.e. O(1) per appended byte.
FOLD_MIN_BYTES = 1024 * 1024

_EVENT_COLS = (
    "id, event_type, target, body_sha256, size, content_type, meta_sha256, hmac, prev_hmac"
)


_MEMORY_PREFIXES = tuple(root + "/" for root in sorted(MEMORY_ROOTS))


def is_memory(world: str) -> bool:
    return world.startswith(_MEMORY_PREFIXES)


def readonly_uri(path: Path) -> str:
    return "file:" + urllib.parse.quote(str(path)) + "?mode=ro"


def connect(path: Path, *, writer: bool) -> sqlite3.Connection:
    """A connection in autocommit mode; the caller issues BEGIN/COMMIT itself."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=30.0, cached_statements=64
    )
    conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
    if writer:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    else:
        conn.execute("PRAGMA query_only=1")
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    conn.execute(
        "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', ?)", (SCHEMA_VERSION,)
    )


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta(key, value) VALUES(?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (key, value),
    )


def encode_headers(headers: tuple[tuple[str, str], ...]) -> str:
    return json.dumps([list(h) for h in headers], separators=(",", ":")) if headers else ""


def decode_headers(text: str) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    return tuple(sorted((str(n), str(v)) for n, v in json.loads(text)))


@dataclass(frozen=True, slots=True)
class Stored:
    """A durable world's current row plus its tail event (None when it has no events)."""

    body: bytes | None  # None when the query did not fetch it
    size: int
    content_type: str
    headers: tuple[tuple[str, str], ...]
    tail: Event | None
    pieces: int = 0  # appended pieces not yet folded into the base body
    base_size: int = 0  # bytes in worlds.body (size = base_size + appended bytes)

    def fold_due(self, extra: int) -> bool:
        """Whether appending ``extra`` bytes should fold the pieces into the base body."""
        if self.size + extra < PIECES_MIN_SIZE or self.pieces + 1 >= MAX_PIECES:
            return True
        appended = self.size + extra - self.base_size
        return appended >= max(self.base_size, FOLD_MIN_BYTES)


_TAIL_JOIN = (
    " LEFT JOIN events e ON e.id = (SELECT max(id) FROM events WHERE world = w.name)"
    " WHERE w.name = ?"
)
_TAIL_COLS = (
    "e.id, e.event_type, e.target, e.body_sha256, e.size, e.content_type, e.meta_sha256,"
    " e.hmac, e.prev_hmac"
)
_PIECES = "(SELECT {} FROM appended a WHERE a.world = w.name)"
_APPENDED_BYTES = _PIECES.format("COALESCE(SUM(length(a.data)), 0)")
_HEAD_COLS = f"w.size, w.content_type, w.headers, {_PIECES.format('COUNT(*)')}, {_APPENDED_BYTES}"
# A world's full body size, for queries over ``worlds w``.
SIZE_EXPR = f"w.size + {_APPENDED_BYTES}"
_SQL_HEAD = f"SELECT NULL, {_HEAD_COLS}, {_TAIL_COLS} FROM worlds w{_TAIL_JOIN}"
_SQL_FULL = f"SELECT w.body, {_HEAD_COLS}, {_TAIL_COLS} FROM worlds w{_TAIL_JOIN}"


def load(conn: sqlite3.Connection, world: str, *, with_body: bool) -> Stored | None:
    """Current state and tail event of a durable world (tail headers are not loaded)."""
    row = conn.execute(_SQL_FULL if with_body else _SQL_HEAD, (world,)).fetchone()
    if row is None:
        return None
    tail = None if row[6] is None else event_from_row(row[6:15], ())
    base, pieces = int(row[1]), int(row[4])
    body = None
    if with_body:
        body = bytes(row[0])
        if pieces:
            body = b"".join([body, *pieces_of(conn, world)])
    return Stored(body, base + int(row[5]), str(row[2]), decode_headers(row[3]), tail, pieces, base)


def pieces_of(conn: sqlite3.Connection, world: str) -> list[bytes]:
    return [
        bytes(r[0])
        for r in conn.execute("SELECT data FROM appended WHERE world=? ORDER BY seq", (world,))
    ]


def event_from_row(row: Any, headers: tuple[tuple[str, str], ...]) -> Event:
    return Event(
        int(row[0]),
        str(row[1]),
        str(row[2]),
        str(row[3]),
        int(row[4]),
        str(row[5]),
        str(row[6]),
        str(row[7]),
        str(row[8]),
        headers,
    )


def event_headers(conn: sqlite3.Connection, event_id: int) -> tuple[tuple[str, str], ...]:
    rows = conn.execute(
        "SELECT name, value FROM event_headers WHERE event_id=? ORDER BY rowid", (event_id,)
    ).fetchall()
    return tuple((str(n), str(v)) for n, v in rows)


def iter_events(conn: sqlite3.Connection, world: str, after_id: int = 0) -> Iterator[Event]:
    """The world's events with id > after_id, in id order, each with its event_headers."""
    hdrs: dict[int, list[tuple[str, str]]] = {}
    for eid, name, value in conn.execute(
        "SELECT h.event_id, h.name, h.value FROM event_headers h JOIN events e"
        " ON e.id = h.event_id WHERE e.world=? AND e.id>? ORDER BY h.event_id, h.rowid",
        (world, after_id),
    ):
        hdrs.setdefault(eid, []).append((str(name), str(value)))
    for row in conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE world=? AND id>? ORDER BY id",
        (world, after_id),
    ):
        yield event_from_row(row, tuple(hdrs.get(row[0], ())))


def event_by_id(conn: sqlite3.Connection, world: str, event_id: int) -> Event | None:
    row = conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE id=? AND world=?", (event_id, world)
    ).fetchone()
    if row is None:
        return None
    return event_from_row(row, event_headers(conn, event_id))


def prev_hmac_before(conn: sqlite3.Connection, world: str, event_id: int) -> str:
    row = conn.execute(
        "SELECT hmac FROM events WHERE world=? AND id<? ORDER BY id DESC LIMIT 1",
        (world, event_id),
    ).fetchone()
    return "" if row is None else str(row[0])


def insert_event(
    conn: sqlite3.Connection,
    world: str,
    timestamp: str,
    ev: tuple[str, str, str, int, str, str, str, str],
    headers: tuple[tuple[str, str], ...],
) -> int:
    """ev = (event_type, target, body_sha256, size, content_type, meta_sha256, hmac, prev)."""
    cur = conn.execute(
        "INSERT INTO events(world, timestamp, event_type, target, body_sha256, size,"
        " content_type, meta_sha256, hmac, prev_hmac) VALUES(?,?,?,?,?,?,?,?,?,?)",
        (world, timestamp, *ev),
    )
    eid = cur.lastrowid
    assert eid is not None
    if headers:
        conn.executemany(
            "INSERT INTO event_headers(event_id, name, value) VALUES(?,?,?)",
            [(eid, n, v) for n, v in headers],
        )
    return eid


def upsert_world(
    conn: sqlite3.Connection,
    world: str,
    body: bytes,
    content_type: str,
    headers_json: str,
    pieces: int = 0,
) -> None:
    """Create or replace a world's whole state (PUT); ``pieces`` = its current piece count."""
    conn.execute(
        "INSERT INTO worlds(name, body, content_type, headers, size) VALUES(?,?,?,?,?)"
        " ON CONFLICT(name) DO UPDATE SET body=excluded.body, content_type=excluded.content_type,"
        " headers=excluded.headers, size=excluded.size",
        (world, body, content_type, headers_json, len(body)),
    )
    if pieces:
        conn.execute("DELETE FROM appended WHERE world=?", (world,))


def add_piece(conn: sqlite3.Connection, world: str, st: Stored, data: bytes) -> None:
    """Append ``data`` as the next piece: O(len(data)), the worlds row is not touched."""
    conn.execute("INSERT INTO appended(world, seq, data) VALUES(?,?,?)", (world, st.pieces, data))


def fold(conn: sqlite3.Connection, world: str, body: bytes, pieces: int) -> None:
    """Store ``body`` (the whole current body) as the base and drop the pieces."""
    conn.execute("UPDATE worlds SET body=?, size=? WHERE name=?", (body, len(body), world))
    if pieces:
        conn.execute("DELETE FROM appended WHERE world=?", (world,))


def remove_world(conn: sqlite3.Connection, world: str) -> None:
    """Drop the world, its whole chain and its checkpoint (§7.4)."""
    conn.execute(
        "DELETE FROM event_headers WHERE event_id IN (SELECT id FROM events WHERE world=?)",
        (world,),
    )
    conn.execute("DELETE FROM events WHERE world=?", (world,))
    conn.execute("DELETE FROM appended WHERE world=?", (world,))
    conn.execute("DELETE FROM worlds WHERE name=?", (world,))
    conn.execute("DELETE FROM checkpoint WHERE world=?", (world,))


def totals(conn: sqlite3.Connection) -> tuple[int, int, bool]:
    """(storage bytes, durable worlds excluding the ledger, ledger exists), from disk."""
    used, count = conn.execute(
        "SELECT COALESCE(SUM(length(body)), 0), COUNT(*) FROM worlds"
    ).fetchone()
    used += conn.execute("SELECT COALESCE(SUM(length(data)), 0) FROM appended").fetchone()[0]
    ledger = conn.execute("SELECT 1 FROM worlds WHERE name=?", (LEDGER,)).fetchone() is not None
    return int(used), int(count) - (1 if ledger else 0), ledger


def list_durable(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return [
        (str(n), int(s))
        for n, s in conn.execute(f"SELECT name, {SIZE_EXPR} FROM worlds w ORDER BY name")
    ]
