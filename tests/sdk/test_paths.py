"""Client path mapping: the README's table, validation, listen patterns, ETag quoting."""

from __future__ import annotations

import pytest
from elastik.sdk import paths


@pytest.mark.parametrize(
    ("given", "target"),
    [
        ("note", "/home/note"),
        ("/note", "/home/note"),
        ("tmp/scratch", "/tmp/scratch"),
        ("/tmp/scratch", "/tmp/scratch"),
        ("proc/worlds", "/proc/worlds"),
        ("proc/pool", "/proc/pool"),
        ("/proc/version", "/proc/version"),
        ("proc/audit/home/note/verify", "/proc/audit/home/note/verify"),
        ("proc/audit/note/verify", "/proc/audit/home/note/verify"),
        ("home/a b", "/home/a%20b"),
        ("é", "/home/%C3%A9"),
        ("a%2Fb", "/home/a%252Fb"),
        ("HOME/x", "/home/HOME/x"),
        ("var/data", "/var/data"),
        ("etc/conf", "/etc/conf"),
        (".hidden", "/home/.hidden"),
    ],
)
def test_request_target_table(given: str, target: str) -> None:
    assert paths.request_target(given) == target


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("/proc/unknown", "reserved"),
        ("proc/audit/x", "verify"),
        ("proc/audit//verify", "needs a world"),
        ("home", "reserved namespace root"),
        ("var/log", "reserved namespace root"),
        ("", "empty"),
        ("a//b", "empty path segment"),
        ("a/", "empty path segment"),
        ("a/./b", "'.'"),
        ("a/%2e%2E", "'.'"),
        ("a\\b", "backslash"),
        ("a\x00b", "control"),
        ("a\x85b", "control"),
    ],
)
def test_invalid_paths_raise_value_error(bad: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        paths.request_target(bad)


@pytest.mark.parametrize(
    ("pattern", "canonical"),
    [
        ("*", "*"),
        ("", "*"),
        ("/home/order/*", "home/order/*"),
        ("inbox/*", "home/inbox/*"),
        ("tmp/x", "tmp/x"),
        ("home/*", "home/*"),
        ("tmp*", "tmp*"),
        ("h*", "home/h*"),
    ],
)
def test_listen_patterns_follow_the_path_mapping(pattern: str, canonical: str) -> None:
    assert paths.canonical_pattern(pattern) == canonical
    assert paths.listen_target(pattern).startswith("/listen/")


def test_listen_pattern_is_validated() -> None:
    with pytest.raises(ValueError):
        paths.canonical_pattern("a/../b*")


def test_canonical_prefix() -> None:
    assert paths.canonical_prefix("") == "" and paths.canonical_prefix("/") == ""
    assert paths.canonical_prefix("home/") == "home"
    assert paths.canonical_prefix("sensor/") == "home/sensor"
    with pytest.raises(ValueError):
        paths.canonical_prefix("a//b")


@pytest.mark.parametrize(
    ("given", "sent"),
    [("abc", '"abc"'), ('"abc"', '"abc"'), ("*", "*"), ('W/"a"', 'W/"a"'), (" x ", '"x"')],
)
def test_quote_etag(given: str, sent: str) -> None:
    assert paths.quote_etag(given) == sent
    assert paths.quote_etag(None) is None
