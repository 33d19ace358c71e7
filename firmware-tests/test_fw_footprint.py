"""Sizes, not times: every file in micro/ compiles with mpy-cross, and the compiled client
fits the 6 KB budget (the heap limits are in test_fw_gateway.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fw_support import MICRO, compile_mpy

MAX_CLIENT_MPY = 6 * 1024

MICRO_FILES = sorted(p for p in MICRO.rglob("*.py") if ".ruff_cache" not in p.parts)


def test_micro_has_the_client_and_examples() -> None:
    names = {p.relative_to(MICRO).as_posix() for p in MICRO_FILES}
    assert {"elastik_micro.py", "elastik_micro_async.py"} <= names
    assert any(n.startswith("examples/") for n in names)


@pytest.mark.parametrize("src", MICRO_FILES, ids=lambda p: p.relative_to(MICRO).as_posix())
def test_mpy_cross_compiles(src: Path, tmp_path: Path) -> None:
    out = compile_mpy(src, tmp_path)
    assert out.stat().st_size > 0
    assert out.read_bytes()[:1] == b"M"  # the .mpy magic


def test_compiled_client_is_at_most_6_kb(tmp_path: Path) -> None:
    size = compile_mpy(MICRO / "elastik_micro.py", tmp_path).stat().st_size
    assert size <= MAX_CLIENT_MPY, size
