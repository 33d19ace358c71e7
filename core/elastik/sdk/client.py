"""``Elastik``: the Python shape of the core's HTTP surface.

``put`` replaces bytes, ``post`` appends bytes, ``get`` returns bytes, ``head`` returns
headers, ``delete`` deletes. Everything else (text/JSON/gzip/CSV/struct helpers, the
mapping protocol, virtual directories, ``open``, ``WorldRef``) is a thin layer over those
verbs and ``request()``, and each call is still one HTTP request (or a few, documented).
"""

from __future__ import annotations

import difflib
import json
import os
import secrets
import textwrap
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NoReturn, TypedDict, cast

from elastik.sdk import codecs, paths, vdir
from elastik.sdk.errors import ElastikError, NotFound, error_for_status
from elastik.sdk.fileobj import WorldReader
from elastik.sdk.sse import SSEParser, event_fields
from elastik.sdk.transport import (
    DEFAULT_TIMEOUT,
    KeepAliveTransport,
    OneShotTransport,
    Response,
    Transport,
)
from elastik.sdk.worldref import WorldRef

WorldMeta = TypedDict(
    "WorldMeta",
    {
        "etag": str,
        "content-type": str,
        "content-length": str,
        "content-encoding": str,
        "content-language": str,
        "content-disposition": str,
        "cache-control": str,
        "accept-ranges": str,
        "link": str,
    },
    total=False,
)

# Headers http.client computes itself; a wrong value here would hang or split a request.
WIRE_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "http2-settings",
    }
)
_REPRESENTATION_KWARGS = (
    "content_type",
    "content_encoding",
    "content_language",
    "content_disposition",
    "cache_control",
)
# Response headers the core adds itself; everything else on a GET is stored metadata.
_SERVER_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-range",
        "accept-ranges",
        "etag",
        "link",
        "location",
        "allow",
        "date",
        "server",
        "vary",
        "www-authenticate",
        "x-request-id",
        "x-elapsed-us",
        "x-content-type-options",
        "connection",
        "keep-alive",
        "transfer-encoding",
    }
)


def reject_wire_headers(headers: Mapping[str, str]) -> None:
    bad = sorted((n for n in headers if n.strip().lower() in WIRE_HEADERS), key=str.lower)
    if bad:
        raise ValueError(
            "these headers are computed by the HTTP client and cannot be set via headers=: "
            + ", ".join(bad)
        )


def best_env_token() -> str:
    """approve > write (ELASTIK_TOKEN as a deprecated fallback) > read, from the environment."""
    write = os.getenv("ELASTIK_WRITE_TOKEN", "")
    legacy = os.getenv("ELASTIK_TOKEN", "")
    if not write and legacy:
        warnings.warn(
            "ELASTIK_TOKEN is deprecated; rename it to ELASTIK_WRITE_TOKEN.",
            UserWarning,
            stacklevel=3,
        )
        write = legacy
    return os.getenv("ELASTIK_APPROVE_TOKEN", "") or write or os.getenv("ELASTIK_READ_TOKEN", "")


def _warn_near_representation_kwargs(meta: Mapping[str, Any]) -> None:
    for key in meta:
        normalized = str(key).replace("-", "_").lower()
        close = difflib.get_close_matches(normalized, _REPRESENTATION_KWARGS, n=1, cutoff=0.8)
        if close and close[0] != normalized:
            warnings.warn(
                f"metadata key {key!r} looks like {close[0]!r}; use {close[0]}=... if you "
                "meant the HTTP header (it is sent as X-Meta-*)",
                stacklevel=3,
            )


def _meta_header_name(key: str) -> str:
    return "X-Meta-" + "-".join(part.capitalize() for part in key.replace("_", "-").split("-"))


class Elastik(MutableMapping[str, bytes]):
    """A client for one core. ``Elastik(url, bearer_token=...)``.

    ``keep_alive=True`` reuses connections from a small thread-safe pool instead of one
    connection per request (faster for many small requests; see docs/sdk.md).
    """

    def __init__(
        self,
        url: str | None = None,
        bearer_token: str | None = None,
        *,
        keep_alive: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        transport: Transport | None = None,
        debug: bool | str = False,
    ) -> None:
        if debug:
            warnings.warn(
                "debug= (the reference SDK's request tracing) is not implemented; ignored",
                stacklevel=2,
            )
        if url is None:
            from elastik.sdk.launcher import default_url

            url = default_url()
        self.url = url.rstrip("/")
        self.bearer_token = best_env_token() if bearer_token is None else bearer_token
        self.keep_alive = keep_alive
        if transport is None:
            kind = KeepAliveTransport if keep_alive else OneShotTransport
            transport = kind(self.url, timeout=timeout)
        self._transport = transport
        self._etag_cache: dict[str, tuple[str, bytes]] = {}

    def __repr__(self) -> str:
        mode = "keep-alive" if self.keep_alive else "one-shot"
        return f"<Elastik {self.url} ({mode})>"

    def close(self) -> None:
        """Close pooled connections (keep-alive transport); the client stays usable."""
        self._transport.close()

    def __enter__(self) -> Elastik:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw HTTP -----------------------------------------------------------------------

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        h = dict(headers or {})
        reject_wire_headers(h)
        if self.bearer_token and not any(n.lower() == "authorization" for n in h):
            h["Authorization"] = f"Bearer {self.bearer_token}"
        return h

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Raw HTTP escape hatch: any method, the SDK's path mapping, never raises on status."""
        target = paths.request_target(path)
        return self._transport.request(method.upper(), target, body, self._headers(headers))

    def _raise(self, resp: Response, method: str, path: str) -> NoReturn:
        try:
            where = urllib.parse.unquote(paths.request_target(path))
        except ValueError:
            where = path
        raise error_for_status(
            resp.status, resp.body, method=method, path=where, headers=resp.headers
        )

    # -- the five verbs -----------------------------------------------------------------

    def put(
        self,
        path: str,
        data: bytes | str,
        *,
        content_type: str | None = None,
        content_encoding: str | None = None,
        content_language: str | None = None,
        content_disposition: str | None = None,
        cache_control: str | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        create_only: bool = False,
        headers: Mapping[str, str] | None = None,
        **meta: Any,
    ) -> dict[str, Any]:
        """Replace the body (and metadata) of ``path``. Returns ``{"status", "etag"}``.

        Extra keyword arguments are sent as ``X-Meta-*`` headers; they round-trip only if
        the core persists them (``ELASTIK_PERSIST_HEADERS=x-meta-*``).
        """
        if isinstance(if_none_match, bool):
            raise TypeError(
                "if_none_match must be an ETag string; use create_only=True for If-None-Match: *"
            )
        if create_only and if_none_match is not None:
            raise ValueError("use either create_only=True or if_none_match=etag, not both")
        body = codecs.body_bytes(data, "put")
        h = dict(headers or {})
        reject_wire_headers(h)
        _warn_near_representation_kwargs(meta)
        for key, value in meta.items():
            h[_meta_header_name(key)] = str(value)
        given_ct = [n for n in h if n.lower() == "content-type"]
        if content_type is None:
            content_type = h[given_ct[0]] if given_ct else codecs.default_content_type(data)
        for name in given_ct:
            del h[name]
        h["Content-Type"] = content_type
        for name, value in (
            ("Content-Encoding", content_encoding),
            ("Content-Language", content_language),
            ("Content-Disposition", content_disposition),
            ("Cache-Control", cache_control),
            ("If-Match", paths.quote_etag(if_match)),
        ):
            if value is not None:
                h[name] = value
        if create_only:
            h["If-None-Match"] = "*"
        elif if_none_match:
            h["If-None-Match"] = cast(str, paths.quote_etag(if_none_match))
        resp = self.request("PUT", path, body, h)
        if resp.status >= 400:
            self._raise(resp, "PUT", path)
        if resp.etag:
            self._etag_cache[paths.canonical_world(path)] = (resp.etag, body)
        return {"status": resp.status, "etag": resp.etag}

    def post(
        self,
        path: str,
        data: bytes | str,
        *,
        if_match: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Append bytes to an existing path (metadata unchanged). 404 if it does not exist."""
        body = codecs.body_bytes(data, "post")
        h = dict(headers or {})
        if if_match is not None:
            h["If-Match"] = cast(str, paths.quote_etag(if_match))
        resp = self.request("POST", path, body, h)
        if resp.status >= 400:
            self._raise(resp, "POST", path)
        self.clear_cache(path)
        return {"status": resp.status, "etag": resp.etag}

    def get(  # type: ignore[override]  # Mapping.get(key, default) -> see __getitem__
        self,
        path: str,
        *,
        range: tuple[int, int] | None = None,
        if_none_match: str | None = None,
        if_range: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes | None:
        """The body, byte-exact. Raises ``NotFound`` when missing; ``None`` only means 304."""
        h = dict(headers or {})
        if range is not None:
            start, end = range
            if start < 0 or end < start:
                raise ValueError(f"range must be (start, end) with 0 <= start <= end; got {range}")
            h["Range"] = f"bytes={start}-{end}"
        for name, value in (("If-None-Match", if_none_match), ("If-Range", if_range)):
            quoted = paths.quote_etag(value)
            if quoted is not None:
                h[name] = quoted
        resp = self.request("GET", path, headers=h)
        if resp.status == 304:
            return None
        if resp.status >= 400:
            self._raise(resp, "GET", path)
        if range is None and if_range is None and resp.etag:
            self._etag_cache[paths.canonical_world(path)] = (resp.etag, resp.body)
        return resp.body

    def head(self, path: str) -> WorldMeta:
        """Lowercased response headers (etag, content-type, content-length, metadata...)."""
        resp = self.request("HEAD", path)
        if resp.status >= 400:
            self._raise(resp, "HEAD", path)
        return cast(WorldMeta, resp.headers)

    def delete(self, path: str, *, if_match: str | None = None) -> bool:
        """True if deleted, False if it was already missing; other failures raise."""
        h = {}
        if if_match is not None:
            h["If-Match"] = cast(str, paths.quote_etag(if_match))
        resp = self.request("DELETE", path, headers=h)
        if resp.status == 204 or resp.status == 200:
            self.clear_cache(path)
            return True
        if resp.status == 404:
            return False
        self._raise(resp, "DELETE", path)

    # -- typed helpers ------------------------------------------------------------------

    def put_text(self, path: str, text: str, *, encoding: str = "utf-8", **kw: Any) -> dict:
        kw.setdefault("content_type", f"text/plain; charset={encoding}")
        return self.put(path, text.encode(encoding), **kw)

    def put_json(self, path: str, value: Any, *, ensure_ascii: bool = False, **kw: Any) -> dict:
        body = json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8")
        kw.setdefault("content_type", "application/json")
        return self.put(path, body, **kw)

    def get_text(
        self, path: str, *, encoding: str = "utf-8", errors: str = "strict", **kw: Any
    ) -> str | None:
        body = self.get(path, **kw)
        return None if body is None else body.decode(encoding, errors)

    def get_json(self, path: str, *, encoding: str = "utf-8", **kw: Any) -> Any | None:
        text = self.get_text(path, encoding=encoding, **kw)
        return None if text is None else json.loads(text)

    def put_gzip(self, path: str, data: bytes | str, **kw: Any) -> dict:
        """PUT gzip-compressed bytes with ``Content-Encoding: gzip``."""
        kw.setdefault("content_type", codecs.default_content_type(data))
        body = codecs.gzip_encode(codecs.body_bytes(data, "put_gzip"))
        return self.put(path, body, content_encoding="gzip", **kw)

    def get_gzip(self, path: str) -> bytes:
        return codecs.gzip_decode(self._get_body(path))

    def put_csv(self, path: str, rows: Any, **kw: Any) -> dict:
        kw.setdefault("content_type", "text/csv")
        return self.put(path, codecs.csv_encode(rows).encode("utf-8"), **kw)

    def get_csv(self, path: str) -> list[list[str]]:
        return codecs.csv_decode(self._get_body(path).decode("utf-8"))

    def put_struct(self, path: str, fmt: str, *values: Any, **kw: Any) -> dict:
        kw.setdefault("content_type", "application/octet-stream")
        return self.put(path, codecs.struct_encode(fmt, values), **kw)

    def get_struct(self, path: str, fmt: str) -> tuple[Any, ...]:
        return codecs.struct_decode(fmt, self._get_body(path))

    def _get_body(self, path: str) -> bytes:
        body = self.get(path)
        if body is None:  # only with a conditional request, which these helpers never send
            raise KeyError(path)
        return body

    # -- cache --------------------------------------------------------------------------

    def get_cached(self, path: str) -> bytes:
        """GET with a client-side ETag cache: a 304 answers from the cache."""
        cached = self._etag_cache.get(paths.canonical_world(path))
        if cached is not None:
            body = self.get(path, if_none_match=cached[0])
            if body is None:
                return cached[1]
            return body
        return self._get_body(path)

    def clear_cache(self, path: str | None = None) -> None:
        if path is None:
            self._etag_cache.clear()
        else:
            self._etag_cache.pop(paths.canonical_world(path), None)

    # -- metadata helpers ---------------------------------------------------------------

    def exists(self, path: str) -> bool:
        return path in self

    def sizeof(self, path: str) -> int:
        return int(self.head(path).get("content-length", "0"))

    def checksum(self, path: str) -> str:
        """The current ETag (quoted, as on the wire)."""
        return self.head(path).get("etag", "")

    def is_audited(self, path: str) -> bool:
        """True when the ETag is HMAC-chain backed (a storage-mode check, not a replay)."""
        return self.checksum(path).strip('"').startswith("hmac-")

    def verify(self, path: str) -> bool:
        """Ask the core to replay the audit chain. True only for 200 + X-Audit-Valid: true.

        Memory worlds (204) and broken chains (409) give False; a missing path raises
        ``NotFound``.
        """
        world = paths.world_name(path)
        target = f"proc/audit/{world}/verify"
        resp = self.request("HEAD", target)
        if resp.status == 200:
            return resp.headers.get("x-audit-valid") == "true"
        if resp.status in (204, 409):
            return False
        self._raise(resp, "HEAD", target)

    def diff(self, path: str, new_data: str) -> str:
        """Unified diff from the stored text to ``new_data`` (computed locally)."""
        old = (self.get_text(path) or "").splitlines(keepends=True)
        new = new_data.splitlines(keepends=True)
        return "".join(difflib.unified_diff(old, new, fromfile=f"{path}@old", tofile=f"{path}@new"))

    def preview(
        self,
        path: str,
        *,
        width: int = 80,
        max_lines: int = 10,
        max_bytes: int = 4096,
        encoding: str = "utf-8",
        errors: str = "replace",
    ) -> str:
        """First lines of the body, shortened, from one Range GET of ``max_bytes``."""
        if max_bytes <= 0 or max_lines <= 0:
            return ""
        resp = self.request("GET", path, headers={"Range": f"bytes=0-{max_bytes - 1}"})
        if resp.status == 416:  # empty world: no range is satisfiable
            return ""
        if resp.status >= 400:
            self._raise(resp, "GET", path)
        text = resp.body.decode(encoding, errors)
        return "\n".join(
            textwrap.shorten(line, width=width, placeholder="...") if line.strip() else ""
            for line in text.splitlines()[:max_lines]
        )

    def copy(self, src: str, dst: str, **meta: Any) -> dict:
        """GET ``src`` (body and stored metadata) and PUT it to ``dst``; buffers in memory."""
        resp = self.request("GET", src)
        if resp.status >= 400:
            self._raise(resp, "GET", src)
        stored = {k: v for k, v in resp.headers.items() if k not in _SERVER_HEADERS}
        return self.put(
            dst,
            resp.body,
            content_type=resp.headers.get("content-type", "application/octet-stream"),
            headers=stored,
            **meta,
        )

    # -- listing ------------------------------------------------------------------------

    def list_paths(self) -> list[str]:
        """Every stored path (``/proc/worlds``), canonical form such as ``home/note``."""
        resp = self.request("GET", "proc/worlds")
        if resp.status >= 400:
            self._raise(resp, "GET", "/proc/worlds")
        return [line for line in resp.body.decode("utf-8").splitlines() if line]

    def list_keys(self) -> list[str]:
        return self.list_paths()

    def list_worlds(self) -> list[str]:
        warnings.warn(
            "list_worlds() is renamed list_paths(); list_worlds remains as an alias",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.list_paths()

    # -- virtual directories ------------------------------------------------------------

    def ls(self, prefix: str = "", *, depth: int = 1) -> list[str]:
        return vdir.ls(self, prefix, depth=depth)

    def tree(self, prefix: str = "") -> str:
        return vdir.tree(self, prefix)

    def du(self, prefix: str = "", *, max_workers: int = 4) -> dict[str, int]:
        return vdir.du(self, prefix, max_workers=max_workers)

    def rm(self, path: str, *, recursive: bool = False, force: bool = False) -> int:
        return vdir.rm(self, path, recursive=recursive, force=force)

    def mv(self, src: str, dst: str, *, recursive: bool = False, overwrite: bool = False) -> int:
        return vdir.mv(self, src, dst, recursive=recursive, overwrite=overwrite)

    # -- many -----------------------------------------------------------------------------

    def put_many(
        self, items: Mapping[str, bytes | str], *, max_workers: int = 4, **kw: Any
    ) -> dict[str, dict]:
        """PUT several paths concurrently (one request each; no batch endpoint)."""
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            futures = {p: pool.submit(self.put, p, d, **kw) for p, d in items.items()}
            return {p: f.result() for p, f in futures.items()}

    def get_many(self, paths_: list[str], *, max_workers: int = 4) -> dict[str, bytes | None]:
        """GET several paths concurrently; a missing path raises ``NotFound``."""
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            futures = {p: pool.submit(self.get, p) for p in paths_}
            return {p: f.result() for p, f in futures.items()}

    # -- files and scratch --------------------------------------------------------------

    def open(self, path: str, mode: str = "rb") -> WorldReader:
        """A read-only, seekable file object backed by Range GETs."""
        if mode != "rb":
            raise ValueError(f"only mode='rb' is supported (read-only); got {mode!r}")
        return WorldReader(self, path)

    @contextmanager
    def tmp(self, name: str = "") -> Iterator[str]:
        """Yield a ``tmp/...`` path; best-effort delete on exit (needs the approve token)."""
        path = "tmp/" + (name.strip("/") or secrets.token_hex(8))
        paths.validate_world(path)
        try:
            yield path
        finally:
            try:
                self.delete(path)
            except (ElastikError, OSError):
                pass

    # -- listening ----------------------------------------------------------------------

    def listen(
        self, pattern: str = "*", *, last_event_id: str | int | None = None
    ) -> Iterator[dict[str, str]]:
        """Yield events from ``GET /listen/<pattern>`` as dicts (event, id, data, path,
        method, etag). Blocks while waiting; the body is never in the stream."""
        target = paths.listen_target(pattern)
        h = self._headers(None)
        if last_event_id is not None and str(last_event_id) != "":
            h["Last-Event-ID"] = str(last_event_id)
        stream = self._transport.stream("GET", target, h)
        if stream.status != 200:
            body = stream.read_all()
            raise error_for_status(
                stream.status, body, method="GET", path=target, headers=stream.headers
            )
        parser = SSEParser()
        try:
            for chunk in stream.chunks():
                for ev in parser.feed(chunk):
                    yield event_fields(ev)
        finally:
            stream.close()

    # -- mapping protocol ---------------------------------------------------------------

    def __getitem__(self, path: str) -> bytes:
        try:
            return self._get_body(path)
        except NotFound:
            raise KeyError(path) from None

    def __setitem__(self, path: str, data: bytes | str) -> None:
        self.put(path, data)

    def __delitem__(self, path: str) -> None:
        if not self.delete(path):
            raise KeyError(path)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        resp = self.request("HEAD", path)
        if resp.status == 404:
            return False
        if resp.status >= 400:
            self._raise(resp, "HEAD", path)
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.list_paths())

    def __len__(self) -> int:
        return len(self.list_paths())

    def __truediv__(self, path: str) -> WorldRef:
        return WorldRef(self, path)

    # Defined last: inside the class body the name ``list`` is this method, not the builtin.
    def list(self) -> list[str]:
        """Older name for ``list_paths()``."""
        return self.list_paths()
