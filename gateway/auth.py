"""Authorization step of the request flow: token pass-through or the device table.

Pass-through (no ``[[devices]]``): the raw token a device sends (CoAP option 65001) goes
to the core as ``Authorization: Bearer <token>`` and the core's tiers decide, exactly as
on the reference's CoAP surface.

Device table: the token must be one device's token (compared in constant time against
every entry, so timing reveals neither which device nor how much matched); the device's
method list and world-path prefixes bound what it may do (4.03 otherwise); a token bucket
bounds its rate (4.29 with Max-Age otherwise); the core then sees the gateway's own
``upstream_token``. Tokens are never logged or put in exception messages.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import Device, GatewayConfig
from .flow import GatewayError


class Unauthorized(GatewayError):
    coap_code = "4.01"


class Forbidden(GatewayError):
    coap_code = "4.03"


class RateLimited(GatewayError):
    coap_code = "4.29"
    max_age = 1


@dataclass(frozen=True, slots=True)
class Grant:
    """What authorization adds to a request: HTTP headers for the core and the device id."""

    headers: dict[str, str]
    device: str | None = None


_VISIBLE_ASCII = re.compile(rb"[\x21-\x7e]+")


def _header_safe(token: bytes) -> str | None:
    """The token as an HTTP header value, or None when it cannot be one.

    Visible ASCII only, no surrounding whitespace: the reference compares the raw option
    bytes exactly, so a token with trailing spaces must not match after an HTTP server
    trims them.
    """
    if _VISIBLE_ASCII.fullmatch(token) is None:
        return None
    return token.decode("ascii")


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one token. Returns 0 when allowed, else seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Authorizer:
    def __init__(self, cfg: GatewayConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._devices: tuple[Device, ...] = cfg.devices
        self._tokens = [d.token.encode("utf-8") for d in cfg.devices]
        self._upstream = {"authorization": f"Bearer {cfg.upstream_token}"}
        self._clock = clock
        now = clock()
        self._buckets = {d.id: TokenBucket(d.rate, d.burst, now) for d in cfg.devices if d.rate > 0}

    @property
    def device_mode(self) -> bool:
        return bool(self._devices)

    def authorize(self, method: str, world: str, token: bytes | None) -> Grant:
        """``world`` is the canonical world path without the leading slash."""
        if not self._devices:
            value = _header_safe(token) if token is not None else None
            return Grant({"authorization": f"Bearer {value}"} if value else {})
        device = self._find(token or b"")
        if device is None:
            raise Unauthorized("unknown device token")
        # The rate applies to everything a device sends, refused requests included.
        bucket = self._buckets.get(device.id)
        if bucket is not None:
            wait = bucket.take(self._clock())
            if wait > 0:
                raise RateLimited(
                    f"device {device.id}: over its rate", max_age=max(1, math.ceil(wait))
                )
        if method not in device.methods:
            raise Forbidden(f"device {device.id}: method {method} not allowed")
        if not any(world.startswith(p) for p in device.paths):
            raise Forbidden(f"device {device.id}: path outside its scope")
        return Grant(dict(self._upstream), device.id)

    def _find(self, token: bytes) -> Device | None:
        found = None
        for device, expected in zip(self._devices, self._tokens, strict=True):
            # Every entry is compared, match or not: constant work per request.
            if hmac.compare_digest(token, expected):
                found = device
        return found

    def upstream_headers(self, token: bytes | None) -> dict[str, str]:
        """Credentials for gateway-initiated requests on behalf of a device (Observe)."""
        if self._devices:
            return dict(self._upstream)
        value = _header_safe(token) if token is not None else None
        return {"authorization": f"Bearer {value}"} if value else {}
