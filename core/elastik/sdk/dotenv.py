"""A minimal ``.env`` loader: fills only variables the environment does not already have."""

from __future__ import annotations

import os
from pathlib import Path


def parse_dotenv(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` comments; optional ``export``; one pair of matching
    quotes around a value is removed. No interpolation, no multi-line values."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not key or not key.replace("_", "a").isalnum():
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key] = value
    return out


def load_dotenv(path: str | os.PathLike[str] = ".env") -> list[str]:
    """Load ``path`` into ``os.environ`` without overriding; return the names it set.

    A missing or unreadable file is not an error (it returns ``[]``).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    added = []
    for key, value in parse_dotenv(text).items():
        if key not in os.environ:
            os.environ[key] = value
            added.append(key)
    return added
