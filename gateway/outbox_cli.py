"""``python -m gateway outbox status|list|retry|purge-dead``: the operator's view of the outbox.

Works while the gateway runs (reads go through a read-only SQLite connection; the two
commands that change something go through SQLite's own locking and leave the moving of
retried entries to the running gateway) and while it is stopped.

Never prints header values: the outbox holds the devices' Authorization headers.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.outbox import COUNTER_NAMES, DB_NAME, LOCK_NAME, connect, requeue_marked

DEFAULT_STATE_DIR = "./gateway-state"  # same default as GatewayConfig.state_dir


class CliError(Exception):
    """Operational error: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Usage(f"{self.prog}: error: {message}")


class _Usage(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m gateway outbox", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument(
        "--state-dir",
        default=os.environ.get("GATEWAY_STATE_DIR", DEFAULT_STATE_DIR),
        help="the gateway's state directory (default: $GATEWAY_STATE_DIR or ./gateway-state)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("status", parents=[common], help="depth, bytes, oldest age, per path, dead")
    ls = sub.add_parser("list", parents=[common], help="list queued entries or dead letters")
    ls.add_argument("--dead", action="store_true", help="list dead letters instead")
    ls.add_argument("--path", help="only this world path (e.g. /home/a)")
    ls.add_argument("--limit", type=_positive, default=100, help="at most N rows (default 100)")
    retry = sub.add_parser("retry", parents=[common], help="queue dead letters again")
    purge = sub.add_parser("purge-dead", parents=[common], help="delete dead letters")
    for p in (retry, purge):
        p.add_argument("--path", help="only dead letters of this world path")
        p.add_argument("--id", type=_positive, action="append", help="only this dead letter id")
        p.add_argument(
            "--reason", choices=("rejected", "dropped", "expired"), help="only this reason"
        )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def main(args: list[str]) -> int:
    try:
        ns = _parser().parse_args(args)
    except _Usage as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        result = _COMMANDS[ns.command](ns)
    except CliError as exc:
        print(f"outbox: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"outbox: database error: {exc}", file=sys.stderr)
        return 1
    if ns.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(_TEXT[ns.command](result))
    return 0


# ---------------------------------------------------------------------- helpers


def gateway_running(state_dir: Path) -> bool:
    """True if a gateway process holds the outbox lock of ``state_dir``."""
    lock = state_dir / LOCK_NAME
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also releases our shared lock at once
    return False


@contextlib.contextmanager
def _reader(state_dir: Path) -> Iterator[sqlite3.Connection]:
    db = state_dir / DB_NAME
    if not db.exists():
        raise CliError(f"no outbox in {state_dir} (no {DB_NAME}; has the gateway run there?)")
    try:
        conn = connect(db, readonly=True)
        conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise CliError(f"cannot read {db}: {exc}") from None
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def _writer(state_dir: Path) -> Iterator[tuple[sqlite3.Connection, bool]]:
    """A read-write connection inside one IMMEDIATE transaction, and whether the gateway is
    running. A stopped gateway's lock is held meanwhile so it cannot start half-way."""
    db = state_dir / DB_NAME
    if not db.exists():
        raise CliError(f"no outbox in {state_dir} (no {DB_NAME}; has the gateway run there?)")
    fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            running = False
        except OSError:
            running = True
        conn = connect(db)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn, running
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
    finally:
        os.close(fd)


def _where(ns: argparse.Namespace) -> tuple[str, list[Any]]:
    clauses, params = ["1=1"], []
    if getattr(ns, "path", None):
        clauses.append("path=?")
        params.append(ns.path)
    if getattr(ns, "id", None):
        clauses.append(f"id IN ({','.join('?' * len(ns.id))})")
        params.extend(ns.id)
    if getattr(ns, "reason", None):
        clauses.append("reason=?")
        params.append(ns.reason)
    return " AND ".join(clauses), params


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


# ---------------------------------------------------------------------- commands


def cmd_status(ns: argparse.Namespace) -> dict[str, Any]:
    state_dir = Path(ns.state_dir)
    now = time.time()
    with _reader(state_dir) as conn:
        depth, size, oldest = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0), min(accepted_at) FROM pending"
        ).fetchone()
        paths = [
            {"path": p, "entries": n, "bytes": b, "oldest_age_s": round(now - o, 3)}
            for p, n, b, o in conn.execute(
                "SELECT path, count(*), sum(size), min(accepted_at) FROM pending"
                " GROUP BY path ORDER BY count(*) DESC, path"
            )
        ]
        dead = dict(conn.execute("SELECT reason, count(*) FROM dead GROUP BY reason").fetchall())
        marked = conn.execute("SELECT count(*) FROM dead WHERE retry_requested=1").fetchone()[0]
        counters = dict.fromkeys(COUNTER_NAMES, 0)
        counters.update(conn.execute("SELECT name, value FROM counters").fetchall())
    vfs = os.statvfs(state_dir)
    return {
        "state_dir": str(state_dir),
        "running": gateway_running(state_dir),
        "depth": depth,
        "bytes": size,
        "oldest_age_s": round(now - oldest, 3) if oldest is not None else 0.0,
        "paths": paths,
        "dead_letters": sum(dead.values()),
        "dead_by_reason": dead,
        "retry_requested": marked,
        "disk_free_bytes": vfs.f_bavail * vfs.f_frsize,
        "counters": counters,
    }


def _text_status(r: dict[str, Any]) -> str:
    lines = [
        f"outbox in {r['state_dir']} (gateway {'running' if r['running'] else 'stopped'})",
        f"  queued        {r['depth']} writes, {_human_bytes(r['bytes'])},"
        f" oldest {r['oldest_age_s']:.1f} s",
        f"  dead letters  {r['dead_letters']}"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in sorted(r["dead_by_reason"].items())) + ")"
            if r["dead_by_reason"]
            else ""
        ),
        f"  retry marked  {r['retry_requested']}",
        f"  disk free     {_human_bytes(r['disk_free_bytes'])}",
    ]
    if r["paths"]:
        lines.append("per path:")
        for p in r["paths"][:50]:
            lines.append(
                f"  {p['entries']:>8}  {_human_bytes(p['bytes']):>10}"
                f"  oldest {p['oldest_age_s']:>9.1f} s  {p['path']}"
            )
        if len(r["paths"]) > 50:
            lines.append(f"  ... {len(r['paths']) - 50} more paths (--json lists all)")
    lines.append("counters (lifetime of this outbox):")
    lines.extend(f"  {k:<22} {v}" for k, v in r["counters"].items())
    return "\n".join(lines)


def cmd_list(ns: argparse.Namespace) -> dict[str, Any]:
    now = time.time()
    where, params = ("path=?", [ns.path]) if ns.path else ("1=1", [])
    with _reader(Path(ns.state_dir)) as conn:
        if ns.dead:
            rows = conn.execute(
                "SELECT id, seq, path, method, size, headers, idempotency_key, accepted_at,"
                f" attempts, reason, status, response, died_at, retry_requested FROM dead"
                f" WHERE {where} ORDER BY id LIMIT ?",
                [*params, ns.limit],
            ).fetchall()
            items = [
                {
                    "id": r[0],
                    "seq": r[1],
                    "path": r[2],
                    "method": r[3],
                    "bytes": r[4],
                    "header_names": sorted(json.loads(r[5])),
                    "idempotency_key": r[6],
                    "age_s": round(now - r[7], 3),
                    "attempts": r[8],
                    "reason": r[9],
                    "status": r[10],
                    "response": bytes(r[11] or b"").decode("utf-8", "replace"),
                    "died_age_s": round(now - r[12], 3),
                    "retry_requested": bool(r[13]),
                }
                for r in rows
            ]
        else:
            rows = conn.execute(
                "SELECT seq, path, method, size, headers, idempotency_key, accepted_at,"
                f" attempts, next_attempt, last_status FROM pending WHERE {where}"
                " ORDER BY seq LIMIT ?",
                [*params, ns.limit],
            ).fetchall()
            items = [
                {
                    "seq": r[0],
                    "path": r[1],
                    "method": r[2],
                    "bytes": r[3],
                    "header_names": sorted(json.loads(r[4])),
                    "idempotency_key": r[5],
                    "age_s": round(now - r[6], 3),
                    "attempts": r[7],
                    "next_attempt_in_s": round(max(0.0, r[8] - now), 3),
                    "last_status": r[9],
                }
                for r in rows
            ]
    return {"dead": ns.dead, "items": items}


def _text_list(r: dict[str, Any]) -> str:
    if not r["items"]:
        return "no dead letters" if r["dead"] else "outbox is empty"
    out = []
    for it in r["items"]:
        if r["dead"]:
            status = it["status"] if it["status"] is not None else "-"
            resp = it["response"].strip().replace("\n", " ")[:60]
            out.append(
                f"dead #{it['id']:<6} {it['method']:<6} {it['path']}  {it['reason']}"
                f" status={status} attempts={it['attempts']} age={it['age_s']:.1f}s"
                + (f"  {resp!r}" if resp else "")
                + ("  [retry marked]" if it["retry_requested"] else "")
            )
        else:
            last = it["last_status"] if it["last_status"] is not None else "-"
            out.append(
                f"#{it['seq']:<8} {it['method']:<6} {it['path']}  {it['bytes']} B"
                f" age={it['age_s']:.1f}s attempts={it['attempts']} last={last}"
            )
    return "\n".join(out)


def cmd_retry(ns: argparse.Namespace) -> dict[str, Any]:
    where, params = _where(ns)
    with _writer(Path(ns.state_dir)) as (conn, running):
        marked = conn.execute(f"UPDATE dead SET retry_requested=1 WHERE {where}", params).rowcount
        moved = 0 if running else len(requeue_marked(conn))
    return {"marked": marked, "requeued": moved, "running": running}


def _text_retry(r: dict[str, Any]) -> str:
    if r["running"]:
        return f"{r['marked']} dead letters marked; the running gateway queues them within ~1 s"
    return f"{r['requeued']} dead letters queued again; replayed when the gateway starts"


def cmd_purge(ns: argparse.Namespace) -> dict[str, Any]:
    where, params = _where(ns)
    with _writer(Path(ns.state_dir)) as (conn, _running):
        purged = conn.execute(f"DELETE FROM dead WHERE {where}", params).rowcount
    return {"purged": purged}


def _text_purge(r: dict[str, Any]) -> str:
    return f"{r['purged']} dead letters deleted"


_COMMANDS = {"status": cmd_status, "list": cmd_list, "retry": cmd_retry, "purge-dead": cmd_purge}
_TEXT = {
    "status": _text_status,
    "list": _text_list,
    "retry": _text_retry,
    "purge-dead": _text_purge,
}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
