"""Test helpers for the SDK suite."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from elastik.sdk.transport import OneShotTransport, Response, Stream


@dataclass
class RecordingTransport:
    """A real one-shot transport that also records (method, target, headers, status)."""

    url: str
    calls: list[tuple[str, str, dict[str, str], int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._inner = OneShotTransport(self.url)

    def request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        resp = self._inner.request(method, target, body, headers)
        self.calls.append((method, target, dict(headers), resp.status))
        return resp

    def stream(self, method: str, target: str, headers: Mapping[str, str]) -> Stream:
        return self._inner.stream(method, target, headers)

    def close(self) -> None:
        return None


@dataclass
class CliResult:
    returncode: int
    stdout: bytes
    stderr: bytes


def run_cli_in_process(args: list[str], env: dict[str, str], stdin: bytes = b"") -> CliResult:
    """``elastik.sdk_cli.main(args)`` in this process with ``env`` as ELASTIK_* environment
    (the same code ``python -m elastik`` runs, without a new interpreter per call)."""
    import contextlib
    import io
    import os
    import sys
    from unittest import mock

    from elastik.sdk_cli import main

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    fake_in = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
    with (
        mock.patch.dict(os.environ, {**clean, **env}, clear=True),
        mock.patch.object(sys, "stdin", fake_in),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    out.flush()
    err.flush()
    return CliResult(code, out.buffer.getvalue(), err.buffer.getvalue())  # type: ignore[attr-defined]
