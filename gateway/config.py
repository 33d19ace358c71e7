"""The gateway's configuration: one typed dataclass, loaded from TOML, then environment
variables, then command-line flags, validated on load.

Every field is documented in docs/gateway-config.md (a test checks that each appears
there). A bad value raises ``ConfigError`` whose message names the key and the problem.
"""

from __future__ import annotations

import dataclasses
import importlib
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

METHODS = ("GET", "PUT", "POST", "DELETE")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


@dataclass(frozen=True, slots=True)
class Device:
    """One entry of the device table (``[[devices]]``)."""

    id: str
    token: str = field(repr=False)
    paths: tuple[str, ...] = ("",)  # canonical world-path prefixes, e.g. "home/sensors/dev-0/"
    methods: tuple[str, ...] = METHODS
    rate: float = 0.0  # sustained requests per second; 0 = unlimited
    burst: int = 20  # bucket size: requests allowed back to back before the rate applies


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    # Where the core is. Empty: start an embedded core (python -m elastik run) under state_dir.
    core_url: str = ""
    # CoAP listen address, HOST:PORT ("[::1]:5683" for IPv6). Port 0 picks a free port.
    coap_bind: str = "127.0.0.1:5683"
    # Directory for the gateway's own state: outbox database, embedded core data and key.
    state_dir: str = "./gateway-state"
    # Seconds one HTTP request to the core may take before the device gets 5.03.
    request_timeout: float = 10.0
    # Requests in flight to the core at once (and idle keep-alive connections kept): 64 lets
    # the core's group commit see every waiting write at once. Requests safe to resend share
    # connections (pipelined), so fewer sockets than this are open.
    core_connections: int = 64
    # Concurrent CoAP requests being forwarded; the next one gets 5.03 "too many coap
    # requests". 1024 covers 64 devices x 16 outstanding with room to spare.
    max_in_flight: int = 1024
    # Remembered (endpoint, message id) exchanges for deduplication. RFC 7252 keeps them
    # EXCHANGE_LIFETIME (247 s); 16384 entries hold 66 requests/s for that long.
    exchange_cache: int = 16384
    # Active Observe registrations (each holds one SSE stream to the core, whose default
    # limit is 1024 streams; we stay well below it).
    max_observations: int = 256
    # Largest request body assembled from Block1 transfers, in bytes.
    max_block1_bytes: int = 1048576
    # Concurrent Block1 assemblies / cached Block2 answers (each at most max_block1_bytes
    # or one world): bounds gateway memory to about 64 MiB in the worst case.
    max_block_transfers: int = 64
    # Max-Age (seconds) sent with 5.03 when the core is down or times out.
    retry_after: int = 5
    # Token the gateway itself uses towards the core when a device table is configured.
    upstream_token: str = field(default="", repr=False)
    # Device table. Empty: pass each device's token through to the core (Bearer).
    devices: tuple[Device, ...] = ()
    # Log level for the gateway's own messages (debug, info, warning, error).
    log_level: str = "info"
    # Embedded core only: tokens given to it. Empty write/approve tokens are generated on
    # first start and kept in state_dir/core-tokens (mode 0600).
    core_read_token: str = field(default="", repr=False)
    core_write_token: str = field(default="", repr=False)
    core_approve_token: str = field(default="", repr=False)
    # Embedded core only: the command that starts it (the SDK tests may point it at the
    # reference binary).
    core_command: tuple[str, ...] = ()
    # Store-and-forward settings, passed as keyword arguments to the outbox layer.
    outbox: Mapping[str, Any] = field(default_factory=dict)

    # -- derived -------------------------------------------------------------------
    @property
    def coap_host(self) -> str:
        return split_hostport(self.coap_bind, "coap_bind")[0]

    @property
    def coap_port(self) -> int:
        return split_hostport(self.coap_bind, "coap_bind")[1]

    @property
    def device_mode(self) -> bool:
        return bool(self.devices)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(GatewayConfig))
ENV_PREFIX = "GATEWAY_"


def split_hostport(value: str, key: str) -> tuple[str, int]:
    v = value.strip()
    if v.startswith("["):
        host, sep, rest = v[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"{key}: expected [IPV6]:PORT, got {value!r}")
        port_s = rest[1:]
    else:
        host, sep, port_s = v.rpartition(":")
        if not sep:
            raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    if not host:
        raise ConfigError(f"{key}: missing host in {value!r}")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ConfigError(f"{key}: port must be 0-65535, got {port_s!r}")
    return host, int(port_s)


def _want(cond: bool, key: str, problem: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {problem}")


def _coerce(name: str, value: Any, key: str) -> Any:
    """Turn a TOML, environment or flag value into the field's type; errors name ``key``."""
    default = getattr(GatewayConfig(), name)
    if name == "devices":
        _want(isinstance(value, list), key, "must be an array of tables ([[devices]])")
        return tuple(_device(i, d) for i, d in enumerate(value))
    if name == "outbox":
        _want(isinstance(value, dict), key, "must be a table ([outbox])")
        return dict(value)
    if name == "core_command":
        if isinstance(value, str):
            value = value.split()
        _want(
            isinstance(value, list) and all(isinstance(x, str) for x in value),
            key,
            "must be a list of strings",
        )
        return tuple(value)
    if isinstance(default, bool):
        raise AssertionError("no bool fields")
    if isinstance(default, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        _want(isinstance(value, int) and not isinstance(value, bool), key, "must be an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: must be a number, got {value!r}") from None
        _want(
            isinstance(value, int | float) and not isinstance(value, bool), key, "must be a number"
        )
        return float(value)
    _want(isinstance(value, str), key, "must be a string")
    return value


def _device(index: int, raw: Any) -> Device:
    where = f"devices[{index}]"
    _want(isinstance(raw, dict), where, "must be a table")
    unknown = set(raw) - {"id", "token", "paths", "methods", "rate", "burst"}
    _want(not unknown, f"{where}.{min(unknown) if unknown else ''}", "unknown key")
    dev_id = raw.get("id")
    _want(isinstance(dev_id, str) and dev_id != "", f"{where}.id", "must be a non-empty string")
    token = raw.get("token")
    _want(isinstance(token, str) and token != "", f"{where}.token", "must be a non-empty string")
    paths = raw.get("paths", [""])
    _want(
        isinstance(paths, list) and all(isinstance(p, str) for p in paths),
        f"{where}.paths",
        "must be a list of world-path prefixes",
    )
    methods = raw.get("methods", list(METHODS))
    _want(isinstance(methods, list), f"{where}.methods", "must be a list of methods")
    methods = [m.upper() if isinstance(m, str) else m for m in methods]
    bad = [m for m in methods if m not in METHODS]
    _want(not bad, f"{where}.methods", f"unknown method {bad[0]!r}" if bad else "")
    rate = raw.get("rate", 0.0)
    _want(
        isinstance(rate, int | float) and not isinstance(rate, bool) and rate >= 0,
        f"{where}.rate",
        "must be a non-negative number (requests per second)",
    )
    burst = raw.get("burst", 20)
    _want(
        isinstance(burst, int) and not isinstance(burst, bool) and burst >= 1,
        f"{where}.burst",
        "must be a positive integer",
    )
    return Device(
        id=dev_id,
        token=token,
        paths=tuple(p.lstrip("/") for p in paths),
        methods=tuple(methods),
        rate=float(rate),
        burst=burst,
    )


def validate(cfg: GatewayConfig) -> GatewayConfig:
    if cfg.core_url:
        parts = urlsplit(cfg.core_url)
        _want(
            parts.scheme in ("http", "https") and bool(parts.netloc),
            "core_url",
            f"must be an http:// or https:// URL, got {cfg.core_url!r}",
        )
    host, _port = split_hostport(cfg.coap_bind, "coap_bind")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        _want(host == "localhost", "coap_bind", f"host must be an IP address, got {host!r}")
    _want(cfg.state_dir != "", "state_dir", "must not be empty")
    _want(cfg.request_timeout > 0, "request_timeout", "must be > 0 seconds")
    for name in (
        "core_connections",
        "max_in_flight",
        "exchange_cache",
        "max_observations",
        "max_block1_bytes",
        "max_block_transfers",
    ):
        _want(getattr(cfg, name) >= 1, name, "must be at least 1")
    _want(cfg.retry_after >= 0, "retry_after", "must be >= 0 seconds")
    _want(
        cfg.log_level in ("debug", "info", "warning", "error"),
        "log_level",
        "must be one of debug, info, warning, error",
    )
    if cfg.outbox:
        _validate_outbox(dict(cfg.outbox))
    if cfg.devices:
        _want(
            cfg.upstream_token != "",
            "upstream_token",
            "is required when a device table is configured",
        )
        ids = [d.id for d in cfg.devices]
        dup = {i for i in ids if ids.count(i) > 1}
        _want(not dup, "devices", f"duplicate device id {min(dup) if dup else ''!r}")
        toks = [d.token for d in cfg.devices]
        _want(len(set(toks)) == len(toks), "devices", "two devices share a token")
    return cfg


def _validate_outbox(table: dict[str, Any]) -> None:
    """The [outbox] table is the store-and-forward layer's own config: check it with its
    own dataclass (when that layer is installed) so errors surface at load, key named."""
    try:
        outbox = importlib.import_module("gateway.outbox")
    except ImportError:
        return
    known = {f.name for f in dataclasses.fields(outbox.OutboxConfig)}
    unknown = sorted(set(table) - known)
    _want(not unknown, f"outbox.{unknown[0] if unknown else ''}", "unknown key")
    try:
        outbox.OutboxConfig(**table)
    except ValueError as exc:  # OutboxConfigError: "outbox.<key>: <problem>"
        raise ConfigError(str(exc)) from None


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """TOML file (optional), then ``GATEWAY_<FIELD>`` environment variables, then
    ``overrides`` (command-line flags; None values are skipped)."""
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {str(p)!r}: not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {str(p)!r}: cannot read ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(p)!r}: invalid TOML ({exc})") from None
        # Top-level keys, or the same keys inside a [gateway] table.
        table = dict(raw.pop("gateway", {}) or {})
        table.update(raw)
        for name, value in table.items():
            if name not in FIELD_NAMES:
                raise ConfigError(f"{name}: unknown key in {str(p)!r}")
            values[name] = _coerce(name, value, name)
    env = os.environ if env is None else env
    for name in FIELD_NAMES:
        var = ENV_PREFIX + name.upper()
        if name in ("devices", "outbox") or var not in env:
            continue
        values[name] = _coerce(name, env[var], var)
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in FIELD_NAMES:
            raise ConfigError(f"{name}: unknown setting")
        values[name] = _coerce(name, value, "--" + name.replace("_", "-"))
    return validate(GatewayConfig(**values))
