"""The one HTTP client to the core: a keep-alive aiohttp pool that implements Upstream.

Every request the gateway makes to the core goes through ``CoreClient``: ``send()`` for
the request flow and ``listen()`` for the ``/listen`` SSE streams that feed Observe.
Connection failures and timeouts become ``UpstreamUnavailable``; every HTTP answer,
including 4xx/5xx, comes back as a ``Response`` for the front door to map.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Mapping

import aiohttp
from yarl import URL

from .flow import Request, Response, UpstreamUnavailable
from .sse import SSEEvent, SSEParser

log = logging.getLogger("gateway.core")

# RFC 3986 pchar minus '%' plus '/': kept as-is in the request target; everything else is
# percent-encoded, so a literal '%' in a CoAP Uri-Path reaches the core as '%25'.
_SAFE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
)

# Largest core answer the gateway reads into memory. The core's own default world limit
# is 64 MiB; a CoAP device can never usefully fetch more than that block-wise anyway.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


@functools.lru_cache(maxsize=4096)  # sensors write the same worlds over and over
def encode_path(path: str) -> str:
    """Percent-encode a world path for the request target (uppercase hex, like the core)."""
    out = []
    for b in path.encode("utf-8"):
        out.append(chr(b) if b in _SAFE else f"%{b:02X}")
    return "".join(out)


class CoreClient:
    """Upstream that speaks HTTP to the core over a pool of keep-alive connections."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, connections: int = 64):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.connections, keepalive_timeout=60, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    def url(self, path: str) -> URL:
        return URL(self.base_url + encode_path(path), encoded=True)

    async def send(self, request: Request) -> Response:
        # One retry on a connection that the core closed while it sat idle in the pool
        # (ServerDisconnectedError before any answer). Writes carry an Idempotency-Key, so
        # a core that did apply the first attempt answers the retry from its key table.
        attempts = 2 if (not request.is_write or "idempotency-key" in request.headers) else 1
        for attempt in range(attempts):
            try:
                return await self._send_once(request)
            except aiohttp.ServerDisconnectedError as exc:
                if attempt + 1 < attempts:
                    continue
                raise UpstreamUnavailable(f"core closed the connection: {exc}") from None
            except TimeoutError:
                raise UpstreamUnavailable(f"core did not answer within {self.timeout}s") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise UpstreamUnavailable(f"core unreachable: {type(exc).__name__}") from None
        raise AssertionError("unreachable")

    async def _send_once(self, request: Request) -> Response:
        session = self._get_session()
        headers = dict(request.headers)
        async with session.request(
            request.method,
            self.url(request.path),
            data=request.body if request.method in ("PUT", "POST") else None,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            allow_redirects=False,
        ) as resp:
            body = await resp.content.read(MAX_RESPONSE_BYTES)
            return Response(
                status=resp.status,
                body=body,
                headers={k.lower(): v for k, v in resp.headers.items()},
            )

    async def listen(
        self, pattern: str, headers: Mapping[str, str], last_event_id: str | None = None
    ) -> AsyncIterator[SSEEvent]:
        """Yield the events of ``/listen/<pattern>`` until the stream ends.

        Raises ``UpstreamUnavailable`` when the core cannot be reached and
        ``ListenRefused`` when it answers with a non-200 status.
        """
        session = self._get_session()
        hdrs = dict(headers)
        if last_event_id is not None:
            hdrs["last-event-id"] = last_event_id
        try:
            async with session.get(
                URL(self.base_url + "/listen/" + encode_path(pattern.lstrip("/")), encoded=True),
                headers=hdrs,
                # No total timeout: the stream lives as long as the observation. The core
                # sends a keepalive comment every 15 s, so 45 s of silence means it is gone.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=45),
            ) as resp:
                if resp.status != 200:
                    raise ListenRefused(resp.status)
                yield SSEEvent(event="_open")  # the stream is live from here on
                parser = SSEParser()
                async for chunk in resp.content.iter_any():
                    for event in parser.feed(chunk):
                        yield event
        except TimeoutError:
            raise UpstreamUnavailable("listen stream went silent") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable(f"listen stream failed: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class ListenRefused(Exception):
    def __init__(self, status: int):
        super().__init__(f"core refused /listen with HTTP {status}")
        self.status = status
