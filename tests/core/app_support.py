"""Shared fixtures for the in-process ASGI tests of ``elastik.server.app``."""

from __future__ import annotations

from elastik.server.app import App
from elastik.server.config import CoreConfig

from .fake_engine import FakeEngine

KEY = "k" * 32
W = [("Authorization", "Bearer w")]
A = [("Authorization", "Bearer a")]


def make_app(**overrides: object) -> tuple[App, FakeEngine]:
    fields: dict[str, object] = {"key": KEY, "write_token": "w", "approve_token": "a"}
    fields.update(overrides)
    cfg = CoreConfig(**fields)  # type: ignore[arg-type]
    engine = FakeEngine(max_world_bytes=cfg.max_world_bytes)
    return App(engine, cfg), engine
