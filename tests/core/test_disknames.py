"""The reference's on-disk world names (§14.1), both directions."""

from __future__ import annotations

import pytest
from elastik.server import disknames
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("world", "disk"),
    [
        ("home/note.txt", "home%2Fnote%2Etxt"),
        ("home/a b", "home%2Fa%20b"),
        ("home/é", "home%2F%C3%A9"),
        ("home/a:b", "home%2Fa%3Ab"),
        ("home/c!$&'(),=", "home%2Fc!$&'(),="),
        ("var/log/deletes", "var%2Flog%2Fdeletes"),
        ('home/"%*<>?\\|', "home%2F%22%25%2A%3C%3E%3F%5C%7C"),
        ("home/\x01\x7f", "home%2F%01%7F"),
        ("home/#;@[]^`{}~-_+", "home%2F#;@[]^`{}~-_+"),
    ],
)
def test_protocol_examples(world: str, disk: str):
    assert disknames.encode(world) == disk
    assert disknames.decode(disk) == world


def test_lowercase_hex_decodes():
    assert disknames.decode("home%2fa%2etxt") == "home/a.txt"


@pytest.mark.parametrize(
    "bad",
    ["home%2", "home%zz", "home%", "home/x", "home.txt", "a b", "%FF", "%C3"],
)
def test_bad_names_raise_value_error(bad: str):
    with pytest.raises(ValueError):
        disknames.decode(bad)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1))
def test_round_trip(world: str):
    disk = disknames.encode(world)
    assert disknames.decode(disk) == world
    assert "/" not in disk and "." not in disk
