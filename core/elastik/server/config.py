"""``CoreConfig``: the one typed configuration of ``python -m elastik run``.

Loaded from ``ELASTIK_*`` environment variables with the reference's validation quirks
(PROTOCOL §1.1, §1.3), then overridden by command-line flags (a flag wins; flags are
validated strictly). Every field is documented in ``docs/core-config.md``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FatalError

DEFAULT_MAX_WORLD_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_MEMORY_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_LISTEN_CONNECTIONS = 1024
DEFAULT_LISTEN_REPLAY_MAX = 1024
DEFAULT_READ_CACHE_MAX_ENTRIES = 5000
DEFAULT_IDEMPOTENCY_WINDOW_S = 86400.0
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class CoreConfig:
    """Validated settings. Token fields are None when unset or empty (tier disabled)."""

    key: str  # ELASTIK_KEY, raw (not trimmed, not hex-decoded), >= 32 UTF-8 bytes
    host: str = "127.0.0.1"  # ELASTIK_HOST
    port: int = 3105  # ELASTIK_PORT, 0 = ephemeral
    data: Path = Path("data")  # ELASTIK_DATA
    read_token: str | None = None  # ELASTIK_READ_TOKEN; None = public reads
    write_token: str | None = None  # ELASTIK_WRITE_TOKEN (or legacy ELASTIK_TOKEN)
    approve_token: str | None = None  # ELASTIK_APPROVE_TOKEN
    max_world_bytes: int = DEFAULT_MAX_WORLD_BYTES  # ELASTIK_MAX_WORLD_BYTES
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES  # ELASTIK_MAX_MEMORY_BYTES
    max_storage_bytes: int = 0  # ELASTIK_MAX_STORAGE_BYTES, 0 = unlimited
    max_listen_connections: int = DEFAULT_MAX_LISTEN_CONNECTIONS
    listen_replay_max: int = DEFAULT_LISTEN_REPLAY_MAX
    read_cache_max_entries: int = DEFAULT_READ_CACHE_MAX_ENTRIES
    persist_headers: str = ""  # ELASTIK_PERSIST_HEADERS, comma list (§11)
    deny_headers: str = ""  # ELASTIK_DENY_HEADERS, comma list (§11)
    idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW_S  # seconds a key is remembered
    coap_port: int | None = None  # ELASTIK_COAP_PORT; None = CoAP off
    coap_host: str = "127.0.0.1"  # ELASTIK_COAP_HOST (does not follow ELASTIK_HOST)
    trace_pipeline: bool = False  # ELASTIK_TRACE_PIPELINE: per-request trace lines on stderr
    # Banner lines: warnings printed before the banner, and after the auth lines.
    early_warnings: tuple[str, ...] = field(default=(), compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)


def _u64(text: str) -> int | None:
    """Rust ``u64::from_str``: optional ``+``, ASCII digits only; None when invalid."""
    body = text[1:] if text.startswith("+") else text
    if not body or not body.isascii() or not body.isdigit():
        return None
    n = int(body)
    return n if n < 2**64 else None


def _port(text: str) -> int | None:
    n = _u64(text)
    return n if n is not None and n <= 65535 else None


def _positive(text: str | None, default: int) -> int:
    n = _u64(text) if text is not None else None
    return n if n else default


def _non_negative(text: str | None, default: int) -> int:
    n = _u64(text) if text is not None else None
    return default if n is None else n


def _is_loopback(host: str) -> bool:
    h = host.strip("[]").lower()
    return h == "localhost" or h.startswith("127.") or h == "::1"


def _check_key(key: str | None) -> str:
    if key is None:
        raise FatalError("ELASTIK_KEY is required; the audit chain has no meaning without it")
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:  # os.environ keeps undecodable bytes as lone surrogates
        raise FatalError("ELASTIK_KEY is invalid: value is not valid Unicode") from None
    if not key.strip():
        raise FatalError("ELASTIK_KEY is invalid: secret key must not be empty or all whitespace")
    if len(raw) < MIN_KEY_BYTES:
        raise FatalError(
            f"ELASTIK_KEY is invalid: HMAC key must be at least {MIN_KEY_BYTES} bytes; "
            f"got {len(raw)}"
        )
    return key


def from_env(
    env: Mapping[str, str] | None = None, warn: Callable[[str], None] | None = None
) -> CoreConfig:
    """Load from environment variables; raises ``FatalError`` like the reference (§1.3).

    Checks run in the reference's order: CoAP port warning, port, storage quota, key.
    ``warn`` receives the early warnings at once, so they show even when a fatal follows.
    """
    env = os.environ if env is None else env
    early: list[str] = []
    coap_port: int | None = None
    coap_text = env.get("ELASTIK_COAP_PORT")
    if coap_text:
        coap_port = _port(coap_text)
        if coap_port is None:
            early.append(
                f'  warning: invalid ELASTIK_COAP_PORT="{coap_text}"; SCoAP/UDP surface disabled.'
            )
            if warn is not None:
                warn(early[-1])
    port_text = env.get("ELASTIK_PORT")
    port = 3105
    if port_text is not None:
        p = _port(port_text)
        if p is None:
            raise FatalError(f'ELASTIK_PORT must be a TCP port number; got "{port_text}"')
        port = p
    storage = 0
    storage_text = env.get("ELASTIK_MAX_STORAGE_BYTES")
    if storage_text is not None and storage_text.strip():
        s = _u64(storage_text.strip())
        if s is None:
            raise FatalError("ELASTIK_MAX_STORAGE_BYTES must be a non-negative integer byte count")
        storage = s
    key = _check_key(env.get("ELASTIK_KEY"))
    host = env.get("ELASTIK_HOST") or "127.0.0.1"

    warnings: list[str] = []
    read = env.get("ELASTIK_READ_TOKEN")
    if read == "":
        warnings.append("  warning: empty ELASTIK_READ_TOKEN treated as unset (reads public)")
    if not read and not _is_loopback(host):
        warnings.append(
            f"  WARNING: reads are public on non-loopback interface {host}; "
            "set ELASTIK_READ_TOKEN to gate reads."
        )
    write = env.get("ELASTIK_WRITE_TOKEN")
    if write == "":
        warnings.append("  warning: empty ELASTIK_WRITE_TOKEN treated as unset (PUT/POST disabled)")
    legacy = env.get("ELASTIK_TOKEN")
    if legacy is not None:
        warnings.append("  warning: ELASTIK_TOKEN is deprecated; rename it to ELASTIK_WRITE_TOKEN.")
        if not write and legacy:
            write = legacy
    approve = env.get("ELASTIK_APPROVE_TOKEN")
    if approve == "":
        warnings.append(
            "  warning: empty ELASTIK_APPROVE_TOKEN treated as unset "
            "(DELETE/system writes disabled)"
        )
    if not write:
        warnings.append("  warning: ELASTIK_WRITE_TOKEN not set; ordinary PUT/POST are disabled.")
    if not approve:
        warnings.append(
            "  warning: ELASTIK_APPROVE_TOKEN not set; DELETE and system writes are disabled."
        )

    window = DEFAULT_IDEMPOTENCY_WINDOW_S
    window_text = env.get("ELASTIK_IDEMPOTENCY_WINDOW")
    if window_text is not None and window_text.strip():
        window = _seconds(window_text, "ELASTIK_IDEMPOTENCY_WINDOW")

    return CoreConfig(
        key=key,
        host=host,
        port=port,
        data=Path(env.get("ELASTIK_DATA") or "data"),
        read_token=read or None,
        write_token=write or None,
        approve_token=approve or None,
        max_world_bytes=_non_negative(env.get("ELASTIK_MAX_WORLD_BYTES"), DEFAULT_MAX_WORLD_BYTES),
        max_memory_bytes=_non_negative(
            env.get("ELASTIK_MAX_MEMORY_BYTES"), DEFAULT_MAX_MEMORY_BYTES
        ),
        max_storage_bytes=storage,
        max_listen_connections=_positive(
            env.get("ELASTIK_MAX_LISTEN_CONNECTIONS"), DEFAULT_MAX_LISTEN_CONNECTIONS
        ),
        listen_replay_max=_positive(
            env.get("ELASTIK_LISTEN_REPLAY_MAX"), DEFAULT_LISTEN_REPLAY_MAX
        ),
        read_cache_max_entries=_positive(
            env.get("ELASTIK_READ_CACHE_MAX_ENTRIES"), DEFAULT_READ_CACHE_MAX_ENTRIES
        ),
        persist_headers=env.get("ELASTIK_PERSIST_HEADERS", ""),
        deny_headers=env.get("ELASTIK_DENY_HEADERS", ""),
        idempotency_window=window,
        coap_port=coap_port,
        coap_host=env.get("ELASTIK_COAP_HOST") or "127.0.0.1",
        trace_pipeline=bool(env.get("ELASTIK_TRACE_PIPELINE")),
        early_warnings=tuple(early),
        warnings=tuple(warnings),
    )


def _seconds(text: str, name: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise FatalError(f'{name} must be a non-negative number of seconds; got "{text}"')
    return value


def flag_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m elastik run",
        description="Run the Elastik core HTTP server. Flags override ELASTIK_* variables.",
    )
    p.add_argument("--key", help="ELASTIK_KEY: HMAC key, at least 32 bytes")
    p.add_argument("--host", help="ELASTIK_HOST: bind address")
    p.add_argument("--port", help="ELASTIK_PORT: TCP port (0 = ephemeral)")
    p.add_argument("--data", help="ELASTIK_DATA: data directory")
    p.add_argument("--read-token", help="ELASTIK_READ_TOKEN")
    p.add_argument("--write-token", help="ELASTIK_WRITE_TOKEN")
    p.add_argument("--approve-token", help="ELASTIK_APPROVE_TOKEN")
    p.add_argument("--max-world-bytes", help="ELASTIK_MAX_WORLD_BYTES")
    p.add_argument("--max-memory-bytes", help="ELASTIK_MAX_MEMORY_BYTES")
    p.add_argument("--max-storage-bytes", help="ELASTIK_MAX_STORAGE_BYTES (0 = unlimited)")
    p.add_argument("--max-listen-connections", help="ELASTIK_MAX_LISTEN_CONNECTIONS")
    p.add_argument("--listen-replay-max", help="ELASTIK_LISTEN_REPLAY_MAX")
    p.add_argument("--read-cache-max-entries", help="ELASTIK_READ_CACHE_MAX_ENTRIES")
    p.add_argument("--persist-headers", help="ELASTIK_PERSIST_HEADERS (comma list)")
    p.add_argument("--deny-headers", help="ELASTIK_DENY_HEADERS (comma list)")
    p.add_argument("--idempotency-window", help="ELASTIK_IDEMPOTENCY_WINDOW (seconds)")
    return p


# flag dest -> (environment variable it overrides)
FLAG_ENV = {
    "key": "ELASTIK_KEY",
    "host": "ELASTIK_HOST",
    "port": "ELASTIK_PORT",
    "data": "ELASTIK_DATA",
    "read_token": "ELASTIK_READ_TOKEN",
    "write_token": "ELASTIK_WRITE_TOKEN",
    "approve_token": "ELASTIK_APPROVE_TOKEN",
    "max_world_bytes": "ELASTIK_MAX_WORLD_BYTES",
    "max_memory_bytes": "ELASTIK_MAX_MEMORY_BYTES",
    "max_storage_bytes": "ELASTIK_MAX_STORAGE_BYTES",
    "max_listen_connections": "ELASTIK_MAX_LISTEN_CONNECTIONS",
    "listen_replay_max": "ELASTIK_LISTEN_REPLAY_MAX",
    "read_cache_max_entries": "ELASTIK_READ_CACHE_MAX_ENTRIES",
    "persist_headers": "ELASTIK_PERSIST_HEADERS",
    "deny_headers": "ELASTIK_DENY_HEADERS",
    "idempotency_window": "ELASTIK_IDEMPOTENCY_WINDOW",
}
_STRICT_INT = {
    "max_world_bytes",
    "max_memory_bytes",
    "max_storage_bytes",
    "max_listen_connections",
    "listen_replay_max",
    "read_cache_max_entries",
}
_POSITIVE = {"max_listen_connections", "listen_replay_max", "read_cache_max_entries"}


def load(
    argv: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> CoreConfig:
    """Environment first, then flags; flags with bad values are fatal and name the flag."""
    env = dict(os.environ if env is None else env)
    try:
        ns = flag_parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse already printed usage (or --help)
        if not exc.code:
            raise
        raise FatalError("invalid command line", exit_code=2) from exc
    for dest, var in FLAG_ENV.items():
        value = getattr(ns, dest)
        if value is None:
            continue
        flag = "--" + dest.replace("_", "-")
        if dest in _STRICT_INT:
            n = _u64(value.strip())
            if n is None or (dest in _POSITIVE and n == 0):
                kind = "a positive" if dest in _POSITIVE else "a non-negative"
                raise FatalError(f'{flag} must be {kind} integer; got "{value}"')
        elif dest == "port" and _port(value) is None:
            raise FatalError(f'{flag} must be a TCP port number; got "{value}"')
        elif dest == "idempotency_window":
            _seconds(value, flag)
        env[var] = value
        if dest == "write_token":
            env.pop("ELASTIK_TOKEN", None)  # an explicit flag replaces the legacy name
    return from_env(env, warn)
