"""CoreConfig: environment quirks of §1.1/§1.3, flags override, docs cover every field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from elastik.server.config import CoreConfig, from_env, load
from elastik.server.errors import FatalError

KEY = "k" * 32
ROOT = Path(__file__).resolve().parents[2]


def env(**kw: str) -> dict[str, str]:
    base = {"ELASTIK_KEY": KEY}
    base.update({f"ELASTIK_{k.upper()}": v for k, v in kw.items()})
    return base


def fatal(e: dict[str, str], argv: list[str] | None = None) -> str:
    with pytest.raises(FatalError) as info:
        load(argv or [], e)
    return info.value.message


def test_every_field_is_documented() -> None:
    doc = (ROOT / "docs" / "core-config.md").read_text()
    for f in dataclasses.fields(CoreConfig):
        assert f"`{f.name}`" in doc, f.name


def test_defaults() -> None:
    cfg = from_env(env())
    assert (cfg.host, cfg.port, cfg.data) == ("127.0.0.1", 3105, Path("data"))
    assert cfg.max_world_bytes == 64 * 1024 * 1024
    assert cfg.max_memory_bytes == 256 * 1024 * 1024
    assert cfg.max_storage_bytes == 0
    assert (cfg.max_listen_connections, cfg.listen_replay_max) == (1024, 1024)
    assert cfg.read_cache_max_entries == 5000
    assert cfg.idempotency_window == 86400
    assert cfg.coap_port is None and cfg.read_token is None


@pytest.mark.parametrize(
    ("e", "message"),
    [
        ({}, "ELASTIK_KEY is required; the audit chain has no meaning without it"),
        (
            {"ELASTIK_KEY": ""},
            "ELASTIK_KEY is invalid: secret key must not be empty or all whitespace",
        ),
        (
            {"ELASTIK_KEY": " " * 40},
            "ELASTIK_KEY is invalid: secret key must not be empty or all whitespace",
        ),
        (
            {"ELASTIK_KEY": "abc"},
            "ELASTIK_KEY is invalid: HMAC key must be at least 32 bytes; got 3",
        ),
        (
            {"ELASTIK_KEY": "k" * 31},
            "ELASTIK_KEY is invalid: HMAC key must be at least 32 bytes; got 31",
        ),
        (
            {"ELASTIK_KEY": "\udcff" * 40},
            "ELASTIK_KEY is invalid: value is not valid Unicode",
        ),
        (env(port="abc"), 'ELASTIK_PORT must be a TCP port number; got "abc"'),
        (env(port="70000"), 'ELASTIK_PORT must be a TCP port number; got "70000"'),
        (env(port="-1"), 'ELASTIK_PORT must be a TCP port number; got "-1"'),
        (env(port=""), 'ELASTIK_PORT must be a TCP port number; got ""'),
        (env(port=" 5"), 'ELASTIK_PORT must be a TCP port number; got " 5"'),
        (
            env(max_storage_bytes="x"),
            "ELASTIK_MAX_STORAGE_BYTES must be a non-negative integer byte count",
        ),
        (
            env(max_storage_bytes="-5"),
            "ELASTIK_MAX_STORAGE_BYTES must be a non-negative integer byte count",
        ),
        (
            env(idempotency_window="soon"),
            'ELASTIK_IDEMPOTENCY_WINDOW must be a non-negative number of seconds; got "soon"',
        ),
    ],
)
def test_fatal_messages(e: dict[str, str], message: str) -> None:
    assert fatal(e) == message


def test_fatal_order_port_then_storage_then_key() -> None:
    assert fatal({"ELASTIK_KEY": "x", "ELASTIK_PORT": "x"}).startswith("ELASTIK_PORT")
    bad_storage = {"ELASTIK_KEY": "x", "ELASTIK_MAX_STORAGE_BYTES": "x"}
    assert fatal(bad_storage).startswith("ELASTIK_MAX_STORAGE_BYTES")


def test_key_is_raw_and_counts_utf8_bytes() -> None:
    assert from_env({"ELASTIK_KEY": " " + "\u00e9" * 16}).key == " " + "\u00e9" * 16


@pytest.mark.parametrize(("text", "port"), [("0", 0), ("+0", 0), ("65535", 65535)])
def test_port_accepts(text: str, port: int) -> None:
    assert from_env(env(port=text)).port == port


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("max_world_bytes", "abc", 64 * 1024 * 1024),
        ("max_world_bytes", "-5", 64 * 1024 * 1024),
        ("max_world_bytes", "1.5", 64 * 1024 * 1024),
        ("max_world_bytes", "", 64 * 1024 * 1024),
        ("max_world_bytes", "0", 0),
        ("max_world_bytes", "10", 10),
        ("max_memory_bytes", "junk", 256 * 1024 * 1024),
        ("max_memory_bytes", "0", 0),
        ("max_storage_bytes", " 5", 5),
        ("max_storage_bytes", " +5 ", 5),
        ("max_storage_bytes", "", 0),
        ("max_storage_bytes", "0", 0),
        ("max_listen_connections", "0", 1024),
        ("max_listen_connections", "x", 1024),
        ("max_listen_connections", "3", 3),
        ("listen_replay_max", "0", 1024),
        ("listen_replay_max", "7", 7),
        ("read_cache_max_entries", "0", 5000),
        ("read_cache_max_entries", "9", 9),
    ],
)
def test_numeric_quirks(name: str, text: str, value: int) -> None:
    assert getattr(from_env(env(**{name: text})), name) == value


def test_tokens_and_warnings_in_reference_order() -> None:
    cfg = from_env(env(read_token="", write_token="", approve_token="", token="t", host="0.0.0.0"))
    assert cfg.read_token is None and cfg.approve_token is None
    assert cfg.write_token == "t"  # legacy name used when the new one is empty
    assert [w.split(":")[0].strip() for w in cfg.warnings] == [
        "warning",
        "WARNING",
        "warning",
        "warning",
        "warning",
        "warning",
    ]
    assert "empty ELASTIK_READ_TOKEN" in cfg.warnings[0]
    assert "non-loopback interface 0.0.0.0" in cfg.warnings[1]
    assert "empty ELASTIK_WRITE_TOKEN" in cfg.warnings[2]
    assert "ELASTIK_TOKEN is deprecated" in cfg.warnings[3]
    assert "empty ELASTIK_APPROVE_TOKEN" in cfg.warnings[4]
    assert "ELASTIK_APPROVE_TOKEN not set" in cfg.warnings[5]


def test_write_token_beats_legacy_token() -> None:
    cfg = from_env(env(write_token="w", token="t"))
    assert cfg.write_token == "w"
    assert any("deprecated" in w for w in cfg.warnings)


def test_invalid_coap_port_is_an_early_warning_not_fatal() -> None:
    cfg = from_env(env(coap_port="abc"))
    assert cfg.coap_port is None
    assert cfg.early_warnings == (
        '  warning: invalid ELASTIK_COAP_PORT="abc"; SCoAP/UDP surface disabled.',
    )
    assert from_env(env(coap_port="")).coap_port is None
    assert from_env(env(coap_port="5683")).coap_port == 5683


def test_flags_override_environment() -> None:
    cfg = load(
        [
            "--port",
            "0",
            "--host",
            "::1",
            "--data",
            "/tmp/d",
            "--read-token",
            "r",
            "--write-token",
            "w",
            "--approve-token",
            "a",
            "--max-world-bytes",
            "5",
            "--max-memory-bytes",
            "6",
            "--max-storage-bytes",
            "7",
            "--max-listen-connections",
            "8",
            "--listen-replay-max",
            "9",
            "--read-cache-max-entries",
            "10",
            "--persist-headers",
            "x-a",
            "--deny-headers",
            "x-b",
            "--idempotency-window",
            "1.5",
            "--key",
            "q" * 32,
        ],
        env(port="1", write_token="ignored", token="legacy"),
    )
    assert (cfg.port, cfg.host, cfg.data) == (0, "::1", Path("/tmp/d"))
    assert (cfg.read_token, cfg.write_token, cfg.approve_token) == ("r", "w", "a")
    assert (cfg.max_world_bytes, cfg.max_memory_bytes, cfg.max_storage_bytes) == (5, 6, 7)
    assert (cfg.max_listen_connections, cfg.listen_replay_max) == (8, 9)
    assert cfg.read_cache_max_entries == 10
    assert (cfg.persist_headers, cfg.deny_headers) == ("x-a", "x-b")
    assert cfg.idempotency_window == 1.5 and cfg.key == "q" * 32


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--max-world-bytes", "abc"], "--max-world-bytes must be a non-negative integer"),
        (["--listen-replay-max", "0"], "--listen-replay-max must be a positive integer"),
        (["--port", "99999"], "--port must be a TCP port number"),
        (["--idempotency-window", "-1"], "--idempotency-window must be a non-negative number"),
    ],
)
def test_bad_flags_are_fatal_and_name_the_flag(argv: list[str], needle: str) -> None:
    assert needle in fatal(env(), argv)


def test_help_exits_zero_and_unknown_flag_is_fatal(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load(["--help"], env())
    assert info.value.code == 0
    assert "--max-world-bytes" in capsys.readouterr().out
    with pytest.raises(FatalError) as bad:
        load(["--bogus"], env())
    assert bad.value.exit_code == 2
