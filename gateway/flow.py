"""The gateway's one internal request flow, shared by every front door.

    front door (CoAP now; MQTT and serial next)
        -> Request
        -> authorization (device table or token pass-through)
        -> Upstream.send(Request)      (store-and-forward layer wrapping the core client)
        -> Response
        -> front door renders it (CoAP code, MQTT PUBACK, serial reply)

Front doors never talk HTTP themselves and never know whether a write went straight
through or into the outbox: they only see a ``Response`` or a ``GatewayError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

Method = Literal["GET", "HEAD", "PUT", "POST", "DELETE"]
WRITE_METHODS: frozenset[str] = frozenset({"PUT", "POST", "DELETE"})

# Status the store-and-forward layer answers when a write was committed to the
# gateway's durable outbox instead of the core (the core was down or answered 5xx).
QUEUED_STATUS = 202


@dataclass(frozen=True, slots=True)
class Request:
    method: Method
    path: str  # world path as the core's HTTP route takes it, e.g. "/home/sensor/temp"
    body: bytes = b""
    # HTTP request headers for the core, lowercase names: content-type, if-match,
    # if-none-match, authorization, idempotency-key, ...
    headers: Mapping[str, str] = field(default_factory=dict)
    source: str = "coap"  # front door: "coap", "mqtt", "serial"
    device: str | None = None  # device id from the device table, when known

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS


@dataclass(frozen=True, slots=True)
class Response:
    status: int  # HTTP status from the core, or QUEUED_STATUS
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # lowercase names

    @property
    def queued(self) -> bool:
        return self.status == QUEUED_STATUS


class Upstream(Protocol):
    """Anything that answers a Request: the core client, or a layer wrapping it."""

    async def send(self, request: Request) -> Response: ...

    async def close(self) -> None: ...


class GatewayError(Exception):
    """Base of the gateway's errors. ``coap_code`` is what the CoAP front door answers
    (as a dotted string, e.g. "5.03"); ``max_age`` seconds, when set, go out as Max-Age."""

    coap_code: str = "5.00"
    max_age: int | None = None

    def __init__(self, message: str = "", *, max_age: int | None = None):
        super().__init__(message or self.__class__.__name__)
        if max_age is not None:
            self.max_age = max_age


class UpstreamUnavailable(GatewayError):
    """The core did not answer: connection refused/reset, timeout, or DNS failure."""

    coap_code = "5.03"
    max_age = 5


class OutboxFull(GatewayError):
    """The outbox is at its byte/age bound under the ``reject`` policy (or the disk is full)."""

    coap_code = "5.03"
    max_age = 30
