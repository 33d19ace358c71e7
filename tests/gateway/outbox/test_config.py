"""OutboxConfig: validated on construction with errors naming the key, and documented."""

from __future__ import annotations

import dataclasses
import re

import pytest

from gateway.outbox import OutboxConfig, OutboxConfigError
from tests.support.servers import ROOT


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_bytes", 0),
        ("max_bytes", -1),
        ("max_bytes", 1.5),
        ("max_bytes", True),
        ("max_bytes", "64M"),
        ("max_age_s", 0),
        ("max_age_s", float("nan")),
        ("max_age_s", float("inf")),
        ("policy", "drop-newest"),
        ("policy", ""),
        ("replay_rate", -5),
        ("replay_rate", "fast"),
        ("replay_concurrency", 0),
        ("backoff_min_s", 0),
        ("backoff_max_s", 0.01),  # below backoff_min_s
        ("max_dead_letters", 0),
    ],
)
def test_bad_value_is_refused_naming_the_key(key, value):
    with pytest.raises(OutboxConfigError, match=rf"^outbox\.{key}: "):
        OutboxConfig(**{key: value})
    with pytest.raises(OutboxConfigError, match=rf"^gateway\.outbox\.{key}: "):
        OutboxConfig.from_mapping({key: value}, where="gateway.outbox")


def test_unknown_key_is_refused_naming_it():
    with pytest.raises(OutboxConfigError, match=r"^outbox\.max_size: unknown key"):
        OutboxConfig.from_mapping({"max_size": 10})


def test_from_mapping_takes_every_field():
    values = {"max_bytes": 1000, "max_age_s": 60, "policy": "drop-oldest", "replay_rate": 5}
    cfg = OutboxConfig.from_mapping(values)
    assert (cfg.max_bytes, cfg.max_age_s, cfg.policy, cfg.replay_rate) == (
        1000,
        60,
        "drop-oldest",
        5,
    )
    assert OutboxConfig.from_mapping({}) == OutboxConfig()


def test_every_field_is_documented_in_the_design_notes():
    docs = [ROOT / "gateway" / "DESIGN-outbox.md", ROOT / "gateway" / "DESIGN.md"]
    text = "\n".join(p.read_text() for p in docs if p.exists())
    documented = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.M))
    missing = {f.name for f in dataclasses.fields(OutboxConfig)} - documented
    assert not missing, f"not in the outbox config table of gateway/DESIGN*.md: {missing}"
