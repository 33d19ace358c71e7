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
