"""The SDK's error family: one class per HTTP status the core answers with.

``ElastikError`` carries the status, the body and the request that failed, so a log line
or a traceback says what happened without a debugger. ``error_for_status`` maps a status
back to its class; the CoAP client uses the same mapping for CoAP response codes.
"""

from __future__ import annotations

from collections.abc import Mapping

# How much of an error body goes into the message: the core's error bodies are one short
# line; anything longer is someone else's server and only needs to be recognisable.
_MESSAGE_BODY_CHARS = 200


class ElastikError(Exception):
    """A request the core answered with a non-2xx status (or could not answer at all)."""

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        *,
        method: str = "",
        path: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.method = method
        self.path = path
        self.headers = dict(headers or {})
        self.request_id = self.headers.get("x-request-id", "")
        self.core_elapsed_us = self.headers.get("x-elapsed-us", "")
        super().__init__(self._message())

    @property
    def text(self) -> str:
        """The body as text, the way the core wrote it (one line, no trailing newline)."""
        return self.body.decode("utf-8", "replace").strip()

    def _message(self) -> str:
        route = " ".join(part for part in (self.method, self.path) if part)
        where = f" {route}" if route else ""
        text = self.text
        if len(text) > _MESSAGE_BODY_CHARS:
            text = text[:_MESSAGE_BODY_CHARS] + "..."
        details = []
        if self.request_id:
            details.append(f"request-id={self.request_id}")
        if self.core_elapsed_us:
            details.append(f"core-elapsed={self.core_elapsed_us}us")
        suffix = f" ({', '.join(details)})" if details else ""
        return f"elastik {self.status}{where}: {text or '<empty body>'}{suffix}"

    def __str__(self) -> str:
        return self._message()


class Unauthorized(ElastikError):
    """401: missing or wrong token for the tier the request needs."""


class Forbidden(ElastikError):
    """403: kept for completeness; the core answers every auth failure with 401."""


class NotFound(ElastikError):
    """404: the path does not exist."""


class PreconditionFailed(ElastikError):
    """412: If-Match / If-None-Match did not hold."""


class PayloadTooLarge(ElastikError):
    """413: body above ELASTIK_MAX_WORLD_BYTES or the memory budget."""


class ServerError(ElastikError):
    """5xx: the core failed on its side."""


class InsufficientStorage(ServerError):
    """507: the durable storage quota is full."""


class Unreachable(ElastikError, ConnectionError):
    """No HTTP answer at all: refused, reset, timed out or the name does not resolve.

    ``status`` is 0 because there is no HTTP status. It is also a ``ConnectionError`` (an
    ``OSError``), so code written for the reference SDK's urllib errors still catches it.
    """

    def __init__(self, url: str, reason: BaseException, *, method: str = "", path: str = ""):
        self.url = url
        self.reason = reason
        super().__init__(0, b"", method=method, path=path)

    def _message(self) -> str:
        route = " ".join(part for part in (self.method, self.path) if part)
        where = f" ({route})" if route else ""
        return f"elastik: cannot reach {self.url}{where}: {self.reason}"


_BY_STATUS: dict[int, type[ElastikError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    507: InsufficientStorage,
}


def error_class(status: int) -> type[ElastikError]:
    """The exception class for an HTTP status (5xx without its own class is ServerError)."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    return ServerError if status >= 500 else ElastikError


def error_for_status(
    status: int,
    body: bytes,
    *,
    method: str = "",
    path: str = "",
    headers: Mapping[str, str] | None = None,
) -> ElastikError:
    """Build (not raise) the error for a non-2xx answer."""
    return error_class(status)(status, body, method=method, path=path, headers=headers)
