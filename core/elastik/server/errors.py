"""One error family for the core. Each class carries the HTTP status and body it renders as.

The HTTP layer renders any ``ElastikError`` as ``status``, ``text/plain; charset=utf-8``,
``body`` and ``headers``; the SDK maps the status back to its own classes.
"""

from __future__ import annotations

TEXT_PLAIN = b"text/plain; charset=utf-8"


class ElastikError(Exception):
    """Base: a request that gets a documented non-2xx answer and changes nothing."""

    status: int = 500
    default_body: bytes = b"internal error: storage failure\n"

    def __init__(
        self, body: bytes | str | None = None, headers: list[tuple[bytes, bytes]] | None = None
    ):
        if isinstance(body, str):
            body = body.encode()
        self.body: bytes = self.default_body if body is None else body
        self.headers: list[tuple[bytes, bytes]] = list(headers or [])
        super().__init__(self.body.decode("utf-8", "replace").rstrip("\n"))


class BadRequest(ElastikError):
    status = 400
    default_body = b"bad request\n"


class Unauthorized(ElastikError):
    status = 401
    default_body = b"auth required: read requires read token\n"

    def __init__(
        self, body: bytes | str | None = None, headers: list[tuple[bytes, bytes]] | None = None
    ):
        super().__init__(body, [(b"www-authenticate", b'Bearer realm="elastik"'), *(headers or [])])


class NotFound(ElastikError):
    status = 404
    default_body = b"world not found\n"


class MethodNotAllowed(ElastikError):
    status = 405
    default_body = b"method not allowed\n"


class PreconditionFailed(ElastikError):
    status = 412
    default_body = b"precondition failed: If-Match did not match current ETag\n"


class PayloadTooLarge(ElastikError):
    status = 413
    default_body = b"Failed to buffer the request body: length limit exceeded"


class UriTooLong(ElastikError):
    status = 414
    default_body = b"uri too long: world path exceeds 1024 bytes\n"


class RangeNotSatisfiable(ElastikError):
    status = 416
    default_body = b"range not satisfiable\n"


class IdempotencyConflict(ElastikError):
    """Same Idempotency-Key, different request (method, path or body)."""

    status = 422
    default_body = b"unprocessable: idempotency key reused with a different request\n"


class StorageFailure(ElastikError):
    status = 500
    default_body = b"internal error: storage failure\n"


class ServiceUnavailable(ElastikError):
    status = 503
    default_body = b"too many listen connections\n"


class InsufficientStorage(ElastikError):
    """507 with x-storage-usage / x-storage-quota / x-storage-needed."""

    status = 507

    def __init__(self, current: int, quota: int, needed: int):
        self.current, self.quota, self.needed = current, quota, needed
        body = (
            f"storage quota exceeded: current {current} bytes, quota {quota} bytes, "
            f"need {needed} more bytes\n"
        )
        super().__init__(
            body,
            [
                (b"x-storage-usage", str(current).encode()),
                (b"x-storage-quota", str(quota).encode()),
                (b"x-storage-needed", str(needed).encode()),
            ],
        )


class FatalError(Exception):
    """A startup failure: the process prints ``elastik-core: <message>`` and exits 1."""

    def __init__(self, message: str, exit_code: int = 1):
        self.message = message
        self.exit_code = exit_code
        super().__init__(message)
