"""Shared fixtures for the in-process ASGI tests of ``elastik.server.app``.

``make_app`` serves the app from the real storage engine (SQLite in a temporary data
directory). ``make_fake_app`` uses ``FakeEngine`` and is only for tests that inject an
engine failure or count engine calls, which the real engine cannot be made to do.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from elastik.server.app import App
from elastik.server.cli import engine_config
from elastik.server.config import CoreConfig
from elastik.server.engine import Engine

from .fake_engine import FakeEngine

KEY = "k" * 32
W = [("Authorization", "Bearer w")]
A = [("Authorization", "Bearer a")]

_OPEN: list[tuple[Engine, Path]] = []


@atexit.register
def _close_engines() -> None:
    for engine, data in _OPEN:
        engine.close()
        shutil.rmtree(data, ignore_errors=True)


def _config(data: Path | None, overrides: dict[str, object]) -> CoreConfig:
    fields: dict[str, object] = {"key": KEY, "write_token": "w", "approve_token": "a"}
    if data is not None:
        fields["data"] = data
    fields.update(overrides)
    return CoreConfig(**fields)  # type: ignore[arg-type]


def make_app(**overrides: object) -> tuple[App, Engine]:
    data = Path(tempfile.mkdtemp(prefix="elastik-app-test-")) / "data"
    cfg = _config(data, overrides)
    engine = Engine.open(engine_config(cfg))
    _OPEN.append((engine, data.parent))
    return App(engine, cfg), engine


def make_fake_app(**overrides: object) -> tuple[App, FakeEngine]:
    cfg = _config(None, overrides)
    engine = FakeEngine(max_world_bytes=cfg.max_world_bytes)
    return App(engine, cfg), engine
