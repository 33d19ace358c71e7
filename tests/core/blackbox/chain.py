"""An independent model of the audit chain (PROTOCOL §13, §14.4, §14.5) for expected ETags.

Written from the protocol text, not from either implementation, so a test can check an
ETag it never saw a server produce.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def field(label: str, value: str) -> bytes:
    v = value.encode("utf-8")
    return label.encode() + b"\0" + str(len(v)).encode() + b"\0" + v + b"\0"


def meta_sha256(content_type: str, headers: Iterable[tuple[str, str]] = ()) -> str:
    data = b"content-type\0" + content_type.encode() + b"\0"
    for name, value in sorted(headers):
        data += name.encode() + b"\0" + value.encode() + b"\0"
    return hashlib.sha256(data).hexdigest()


def event_hmac(
    key: str,
    prev: str,
    event_type: str,
    target: str,
    body: bytes,
    content_type: str,
    headers: Iterable[tuple[str, str]] = (),
) -> str:
    msg = b"".join(
        (
            field("prev", prev),
            field("type", event_type),
            field("target", target),
            field("body-sha256", hashlib.sha256(body).hexdigest()),
            field("size", str(len(body))),
            field("content-type", content_type),
            field("meta-sha256", meta_sha256(content_type, headers)),
        )
    )
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


class Chain:
    """Expected state of one durable world as writes are applied."""

    def __init__(self, key: str, world: str):
        self.key, self.world = key, world
        self.prev = ""
        self.body = b""
        self.content_type = "application/octet-stream"
        self.headers: list[tuple[str, str]] = []
        self.events = 0
        self.genesis = ""

    def _event(self, kind: str) -> str:
        self.prev = event_hmac(
            self.key, self.prev, kind, self.world, self.body, self.content_type, self.headers
        )
        self.events += 1
        self.genesis = self.genesis or self.prev
        return f'"hmac-{self.prev}"'

    def put(self, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> str:
        self.body, self.content_type, self.headers = body, content_type, list(headers)
        return self._event("put")

    def append(self, body: bytes) -> str:
        self.body += body
        return self._event("append")


def memory_etag(body: bytes) -> str:
    return f'"sha256-{hashlib.sha256(body).hexdigest()}"'
