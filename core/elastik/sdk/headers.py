"""The core's four-layer persisted-header policy (PROTOCOL §11), for ``FakeElastik``.

Layer 1 hard deny, layer 2 user deny (``ELASTIK_DENY_HEADERS``), layer 3 default allow,
layer 4 user allow (``ELASTIK_PERSIST_HEADERS``). Kept in the SDK (not imported from the
server) so the fake works with the SDK alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

HARD_DENY = frozenset(
    [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "proxy-authenticate",
        "proxy-connection",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
        "http3-settings",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "expect",
        "from",
        "max-forwards",
        "origin",
        "prefer",
        "range",
        "referer",
        "referrer",
        "dnt",
        "user-agent",
        "if-match",
        "if-none-match",
        "if-range",
        "if-modified-since",
        "if-unmodified-since",
        "device-memory",
        "downlink",
        "dpr",
        "ect",
        "rtt",
        "save-data",
        "width",
        "viewport-width",
        "accept-ch",
        "alt-used",
        "attribution-reporting-eligible",
        "available-dictionary",
        "dictionary-id",
        "early-data",
        "idempotency-key",
        "service-worker",
        "service-worker-navigation-preload",
        "upgrade-insecure-requests",
        "alt-svc",
        "server-timing",
        "retry-after",
        "x-powered-by",
        "preference-applied",
        "priority",
        "critical-ch",
        "clear-site-data",
        "content-type",
        "content-length",
        "etag",
        "accept-ranges",
        "content-range",
        "link",
        "location",
        "allow",
        "date",
        "server",
        "www-authenticate",
        "age",
        "vary",
        "x-request-id",
        "x-elapsed-us",
        "x-elapsed-ms",
        "x-content-type-options",
        "forwarded",
        "via",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "true-client-ip",
        "client-ip",
        "traceparent",
        "tracestate",
        "baggage",
        "b3",
        "pragma",
    ]
)
HARD_DENY_PREFIXES = ("sec-", "access-control-request-", "want-", ":", "x-b3-", "x-amzn-", "cf-")
DEFAULT_ALLOW = frozenset(
    [
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-md5",
        "cache-control",
        "expires",
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-allow-credentials",
        "access-control-expose-headers",
        "access-control-max-age",
        "content-security-policy",
        "content-security-policy-report-only",
        "x-frame-options",
        "permissions-policy",
        "cross-origin-resource-policy",
        "cross-origin-opener-policy",
        "cross-origin-embedder-policy",
        "referrer-policy",
        "x-robots-tag",
    ]
)


@dataclass(frozen=True)
class HeaderAllowlist:
    """A comma list of names; an entry ending in ``*`` is a prefix (``x-meta-*``)."""

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> HeaderAllowlist:
        exact: set[str] = set()
        prefixes: list[str] = []
        for entry in raw.split(","):
            entry = entry.strip().lower()
            if entry.endswith("*"):
                if entry[:-1]:  # "*" alone is ignored, like the core does
                    prefixes.append(entry[:-1])
            elif entry:
                exact.add(entry)
        return cls(frozenset(exact), tuple(prefixes))

    @classmethod
    def from_env(cls, name: str = "ELASTIK_PERSIST_HEADERS") -> HeaderAllowlist:
        return cls.parse(os.environ.get(name, ""))

    @classmethod
    def empty(cls) -> HeaderAllowlist:
        return cls()

    def matches(self, name: str) -> bool:
        return name in self.exact or any(name.startswith(p) for p in self.prefixes)

    def is_empty(self) -> bool:
        return not self.exact and not self.prefixes


def coerce_allowlist(value: HeaderAllowlist | str | None, env_name: str) -> HeaderAllowlist:
    if value is None:
        return HeaderAllowlist.from_env(env_name)
    if isinstance(value, str):
        return HeaderAllowlist.parse(value)
    return value


def should_persist(
    name: str, allow: HeaderAllowlist | None = None, deny: HeaderAllowlist | None = None
) -> bool:
    n = name.strip().lower()
    if not n or n in HARD_DENY or n.startswith(HARD_DENY_PREFIXES):
        return False
    if deny is not None and deny.matches(n):
        return False
    return n in DEFAULT_ALLOW or (allow is not None and allow.matches(n))
