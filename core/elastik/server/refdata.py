"""Reading a REFERENCE data directory (elastik-core 8.3.0 layout, §14.1), read-only.

The reference keeps one SQLite file per world, ``<data>/<disk-name>/universe.db`` with
``stage_meta`` (body, content type), ``meta_headers``, ``events`` and ``event_headers``.
``ls_data`` lists its worlds (or ours, from ``elastik.db``) so users migrating from the Rust
core can see what they have;
``iter_worlds`` gives each world's state and events to the verifier. Directories without a
``universe.db`` and plain files are skipped, as the reference does.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import disknames
from .audit import Event
from .worldstore import DB_NAME, SIZE_EXPR, readonly_uri

DB_FILE = "universe.db"


@dataclass(frozen=True, slots=True)
class RefWorld:
    world: str
    size: int
    events: int
    content_type: str


@dataclass(frozen=True, slots=True)
class RefWorldData:
    world: str
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...]
    events: list[Event]
    timestamps: dict[int, str]  # event id -> its timestamp (not covered by the HMAC)


def _open(db: Path) -> sqlite3.Connection:
    """Read-only; falls back to ``immutable`` when SQLite cannot create the -shm file."""
    try:
        conn = sqlite3.connect(readonly_uri(db), uri=True, timeout=5.0)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        return sqlite3.connect(readonly_uri(db) + "&immutable=1", uri=True)


def world_dirs(data: Path) -> list[tuple[str, Path]]:
    """(world, universe.db path) for every decodable world directory, bytewise sorted."""
    out: list[tuple[str, Path]] = []
    for entry in Path(data).iterdir():
        db = entry / DB_FILE
        if not entry.is_dir() or not db.is_file():
            continue
        try:
            world = disknames.decode(entry.name)
        except ValueError:
            continue
        out.append((world, db))
    out.sort(key=lambda r: r[0].encode())
    return out


def ls_data(data: Path) -> list[RefWorld]:
    """One row per durable world: (world, size, events, type), bytewise sorted.

    Reads a reference data directory, or ours (``elastik.db``) when that file is present.
    """
    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"not a data directory: {data}")
    if (data / DB_NAME).is_file():
        return _ls_ours(data / DB_NAME)
    rows: list[RefWorld] = []
    for world, db in world_dirs(data):
        conn = _open(db)
        try:
            st = conn.execute(
                "SELECT length(body), content_type FROM stage_meta WHERE id=1"
            ).fetchone()
            events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        finally:
            conn.close()
        size, ctype = (0, "application/octet-stream") if st is None else (st[0] or 0, st[1])
        rows.append(RefWorld(world, int(size), int(events), str(ctype)))
    return rows


def _ls_ours(db: Path) -> list[RefWorld]:
    conn = _open(db)
    try:
        rows = conn.execute(
            f"SELECT w.name, {SIZE_EXPR}, (SELECT COUNT(*) FROM events e"
            " WHERE e.world = w.name), w.content_type FROM worlds w ORDER BY w.name"
        ).fetchall()
    finally:
        conn.close()
    return [RefWorld(str(n), int(s), int(c), str(t)) for n, s, c, t in rows]


def list_worlds(data: Path) -> Iterator[str]:
    """``ls-data`` output lines: ``<world>\t<size>\t<events>\t<content type>``."""
    for r in ls_data(data):
        yield f"{r.world}\t{r.size}\t{r.events}\t{r.content_type}"


def read_world(world: str, db: Path) -> RefWorldData:
    conn = _open(db)
    try:
        conn.execute("BEGIN")
        st = conn.execute("SELECT body, content_type FROM stage_meta WHERE id=1").fetchone()
        headers = tuple(
            (str(n), str(v))
            for n, v in conn.execute("SELECT name, value FROM meta_headers ORDER BY name")
        )
        hdrs: dict[int, list[tuple[str, str]]] = {}
        for eid, n, v in conn.execute(
            "SELECT event_id, name, value FROM event_headers ORDER BY event_id, rowid"
        ):
            hdrs.setdefault(int(eid), []).append((str(n), str(v)))
        events: list[Event] = []
        stamps: dict[int, str] = {}
        for r in conn.execute(
            "SELECT id, event_type, target, body_sha256, size, content_type,"
            " meta_sha256, hmac, prev_hmac, timestamp FROM events ORDER BY id"
        ):
            events.append(_event(r, tuple(hdrs.get(int(r[0]), ()))))
            stamps[int(r[0])] = "" if r[9] is None else str(r[9])
        with contextlib.suppress(sqlite3.Error):
            conn.execute("COMMIT")
    finally:
        conn.close()
    body, ctype = (b"", "application/octet-stream") if st is None else (bytes(st[0] or b""), st[1])
    return RefWorldData(world, body, str(ctype), headers, events, stamps)


def _event(r: tuple[object, ...], headers: tuple[tuple[str, str], ...]) -> Event:
    def text(v: object) -> str:
        return "" if v is None else str(v)

    return Event(
        int(r[0]),  # type: ignore[call-overload]
        text(r[1]),
        text(r[2]),
        text(r[3]),
        int(r[4] or 0),  # type: ignore[call-overload]
        text(r[5]),
        text(r[6]),
        text(r[7]),
        text(r[8]),
        headers,
    )


def iter_worlds(data: Path) -> Iterator[RefWorldData]:
    for world, db in world_dirs(Path(data)):
        yield read_world(world, db)
