"""The request flow every front door calls: authorize, build the core request, forward.

    front door (CoAP now; MQTT and serial next) decodes its wire format, then calls
    RequestFlow.handle(method, world, token=..., body=..., headers=..., source=...)
        -> Authorizer.authorize   (GatewayError 4.01/4.03/4.29 on refusal)
        -> Upstream.send          (the store-and-forward layer around CoreClient)
        -> Response               (the front door renders it in its own terms)

A front door owns only its wire format and its own reliability (CoAP message IDs,
MQTT packet ids); it never builds HTTP requests or talks to the core itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from .auth import Authorizer, Grant
from .counters import Counters
from .flow import Method, Request, Response, Upstream


class RequestFlow:
    def __init__(self, upstream: Upstream, authorizer: Authorizer, counters: Counters) -> None:
        self.upstream = upstream
        self.authorizer = authorizer
        self.counters = counters

    def authorize(self, method: str, world: str, token: bytes | None) -> Grant:
        try:
            return self.authorizer.authorize(method, world, token)
        except Exception as exc:
            self.counters.inc(f"refused.{type(exc).__name__}")
            raise

    async def forward(
        self,
        method: Method,
        world: str,
        grant: Grant,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        source: str = "coap",
    ) -> Response:
        """Send one request for ``world`` (canonical, no leading slash) with the grant's
        credentials. GatewayError (e.g. UpstreamUnavailable, OutboxFull) propagates."""
        hdrs = dict(headers or {})
        hdrs.update(grant.headers)
        request = Request(
            method=method,
            path="/" + world,
            body=body,
            headers=hdrs,
            source=source,
            device=grant.device,
        )
        self.counters.inc(f"forwarded.{method}")
        response = await self.upstream.send(request)
        self.counters.inc(f"status.{response.status}")
        return response

    async def handle(
        self,
        method: Method,
        world: str,
        *,
        token: bytes | None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        source: str = "coap",
    ) -> Response:
        grant = self.authorize(method, world, token)
        return await self.forward(method, world, grant, body=body, headers=headers, source=source)
