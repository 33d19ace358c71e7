"""Elastik: the audited HTTP store (server in ``elastik.server``) and its Python SDK.

    import secrets, elastik
    e = elastik.start(key=secrets.token_hex(32), write_token="write-token")
    e.put("note", "hello")          # PUT /home/note
    e.get("note")                   # b"hello"
    elastik.stop()

``import elastik`` is light: the SDK is stdlib only and the server is imported only by
``python -m elastik run``. On import, a local ``.env`` fills missing environment variables
once (never overriding); ``ELASTIK_NO_DOTENV=1`` turns that off.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from elastik.sdk.client import Elastik, WorldMeta
from elastik.sdk.coap import CoapClient, CoapResponse
from elastik.sdk.coap import get as coap_get
from elastik.sdk.coap import put as coap_put
from elastik.sdk.dotenv import load_dotenv
from elastik.sdk.errors import (
    ElastikError,
    Forbidden,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ServerError,
    Unauthorized,
    Unreachable,
)
from elastik.sdk.fileobj import WorldChanged, WorldReader
from elastik.sdk.launcher import binary_info, default_url, is_running, live_info
from elastik.sdk.launcher import start as _launch
from elastik.sdk.launcher import stop as _stop_child
from elastik.sdk.listen import (
    Action,
    Archive,
    Ctx,
    Drop,
    MoveTo,
    Reply,
    clear_lifecycle_hooks,
    clear_routes,
    has_routes,
    listen,
    on_shutdown,
    on_startup,
    run,
    unlisten,
)
from elastik.sdk.transport import Response
from elastik.sdk.worldref import WorldRef
from elastik.testing import FakeElastik

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Archive",
    "CoapClient",
    "CoapResponse",
    "Ctx",
    "Drop",
    "Elastik",
    "ElastikError",
    "FakeElastik",
    "Forbidden",
    "InsufficientStorage",
    "MoveTo",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "Reply",
    "Response",
    "ServerError",
    "ShellPool",
    "ShellPoolError",
    "ShellResult",
    "TrustedShellPool",
    "Unauthorized",
    "Unreachable",
    "WorldChanged",
    "WorldMeta",
    "WorldReader",
    "WorldRef",
    "__version__",
    "binary_info",
    "checksum",
    "clear_lifecycle_hooks",
    "clear_routes",
    "coap_get",
    "coap_put",
    "copy",
    "decode_disk_name",
    "default_url",
    "delete",
    "diff",
    "du",
    "encode_disk_name",
    "exists",
    "get",
    "get_cached",
    "get_csv",
    "get_gzip",
    "get_json",
    "get_many",
    "get_struct",
    "get_text",
    "has_routes",
    "head",
    "is_audited",
    "is_running",
    "list_keys",
    "list_paths",
    "list_worlds",
    "listen",
    "live_info",
    "load_dotenv",
    "ls",
    "mv",
    "on_shutdown",
    "on_startup",
    "open",
    "post",
    "preview",
    "put",
    "put_csv",
    "put_gzip",
    "put_json",
    "put_many",
    "put_struct",
    "put_text",
    "request",
    "rm",
    "run",
    "show_config",
    "sizeof",
    "start",
    "stop",
    "tmp",
    "tree",
    "unlisten",
    "verify",
]

if os.getenv("ELASTIK_NO_DOTENV") != "1":
    load_dotenv()

_default_client: Elastik | None = None
_CLIENT_ENV = (
    "ELASTIK_URL",
    "ELASTIK_HOST",
    "ELASTIK_PORT",
    "ELASTIK_WRITE_TOKEN",
    "ELASTIK_TOKEN",
    "ELASTIK_READ_TOKEN",
    "ELASTIK_APPROVE_TOKEN",
)


def _client() -> Elastik:
    """The client module-level calls use: the one ``start()`` returned, else one built
    from ``ELASTIK_URL`` (or HOST/PORT) and the strongest ``ELASTIK_*_TOKEN``."""
    global _default_client
    if _default_client is None:
        if not any(os.getenv(name) for name in _CLIENT_ENV):
            raise RuntimeError(
                "no elastik core configured for module-level calls: call "
                "elastik.start(key=..., write_token=...), create Elastik(url, bearer_token=...), "
                "or set ELASTIK_URL and ELASTIK_WRITE_TOKEN"
            )
        _default_client = Elastik(default_url())
    return _default_client


def start(
    port: int | None = None,
    host: str | None = None,
    key: str | None = None,
    read_token: str | None = None,
    write_token: str | None = None,
    approve_token: str | None = None,
    data: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Elastik:
    """Start our core (``python -m elastik run``) as a child process and return a client.

    Module-level ``elastik.put/get/...`` use that client afterwards. Keyword arguments:
    ``data_dir`` (alias of ``data``), ``quiet``, ``keep_alive``, ``env``, ``timeout``.
    """
    global _default_client
    client = _launch(
        port=port,
        host=host,
        key=key,
        read_token=read_token,
        write_token=write_token,
        approve_token=approve_token,
        data=data,
        **kwargs,
    )
    _default_client = client
    return client


def stop() -> None:
    """Stop the core ``start()`` launched; module-level calls need a new start() after."""
    global _default_client
    _stop_child()
    _default_client = None


def _mask(value: str | None) -> str:
    if not value:
        return "<unset>"
    return f"<set> ({len(value)} chars)"  # never any part of a secret


def show_config() -> None:
    """Print the SDK and core configuration for bug reports (secrets masked)."""
    info = binary_info()
    live = live_info()
    url = live.get("url") or default_url()
    data = live.get("data_dir") or os.getenv("ELASTIK_DATA", "./data (default)")
    print(f"elastik {__version__} (python)")
    print(f"  core:    {' '.join(info['command'])}")
    print(f"  url:     {url} ({'live' if live.get('url') else 'default'})")
    print(f"  data:    {data}")
    print(f"  running: {is_running()}")
    for label, name in (
        ("key", "ELASTIK_KEY"),
        ("read", "ELASTIK_READ_TOKEN"),
        ("write", "ELASTIK_WRITE_TOKEN"),
        ("approve", "ELASTIK_APPROVE_TOKEN"),
    ):
        print(f"  {label + ':':8} {_mask(os.getenv(name))}")


# -- module-level calls: the same verbs on the default client --------------------------


def put(path: str, data: bytes | str, **kwargs: Any) -> dict[str, Any]:
    return _client().put(path, data, **kwargs)


def put_text(path: str, text: str, **kwargs: Any) -> dict[str, Any]:
    return _client().put_text(path, text, **kwargs)


def put_json(path: str, value: Any, **kwargs: Any) -> dict[str, Any]:
    return _client().put_json(path, value, **kwargs)


def put_gzip(path: str, data: bytes | str, **kwargs: Any) -> dict[str, Any]:
    return _client().put_gzip(path, data, **kwargs)


def put_csv(path: str, rows: Any, **kwargs: Any) -> dict[str, Any]:
    return _client().put_csv(path, rows, **kwargs)


def put_struct(path: str, fmt: str, *values: Any, **kwargs: Any) -> dict[str, Any]:
    return _client().put_struct(path, fmt, *values, **kwargs)


def post(path: str, data: bytes | str, **kwargs: Any) -> dict[str, Any]:
    return _client().post(path, data, **kwargs)


def get(path: str, **kwargs: Any) -> bytes | None:
    return _client().get(path, **kwargs)


def get_cached(path: str) -> bytes:
    return _client().get_cached(path)


def get_text(path: str, **kwargs: Any) -> str | None:
    return _client().get_text(path, **kwargs)


def get_json(path: str, **kwargs: Any) -> Any:
    return _client().get_json(path, **kwargs)


def get_gzip(path: str) -> bytes:
    return _client().get_gzip(path)


def get_csv(path: str) -> list[list[str]]:
    return _client().get_csv(path)


def get_struct(path: str, fmt: str) -> tuple[Any, ...]:
    return _client().get_struct(path, fmt)


def head(path: str) -> WorldMeta:
    return _client().head(path)


def delete(path: str, *, if_match: str | None = None) -> bool:
    return _client().delete(path, if_match=if_match)


def exists(path: str) -> bool:
    return _client().exists(path)


def sizeof(path: str) -> int:
    return _client().sizeof(path)


def checksum(path: str) -> str:
    return _client().checksum(path)


def is_audited(path: str) -> bool:
    return _client().is_audited(path)


def verify(path: str) -> bool:
    return _client().verify(path)


def diff(path: str, new_data: str) -> str:
    return _client().diff(path, new_data)


def preview(path: str, **kwargs: Any) -> str:
    return _client().preview(path, **kwargs)


def copy(src: str, dst: str, **meta: Any) -> dict[str, Any]:
    return _client().copy(src, dst, **meta)


def ls(prefix: str = "", *, depth: int = 1) -> list[str]:
    return _client().ls(prefix, depth=depth)


def tree(prefix: str = "") -> str:
    return _client().tree(prefix)


def rm(path: str, *, recursive: bool = False, force: bool = False) -> int:
    return _client().rm(path, recursive=recursive, force=force)


def mv(src: str, dst: str, *, recursive: bool = False, overwrite: bool = False) -> int:
    return _client().mv(src, dst, recursive=recursive, overwrite=overwrite)


def du(prefix: str = "", *, max_workers: int = 4) -> dict[str, int]:
    return _client().du(prefix, max_workers=max_workers)


def put_many(items: Mapping[str, bytes | str], **kwargs: Any) -> dict[str, dict[str, Any]]:
    return _client().put_many(items, **kwargs)


def get_many(paths: list[str], **kwargs: Any) -> dict[str, bytes | None]:
    return _client().get_many(paths, **kwargs)


def open(path: str, mode: str = "rb") -> WorldReader:
    return _client().open(path, mode)


def tmp(name: str = "") -> AbstractContextManager[str]:
    return _client().tmp(name)


def list_paths() -> list[str]:
    return _client().list_paths()


def list_keys() -> list[str]:
    return _client().list_keys()


def list_worlds() -> list[str]:
    import warnings

    warnings.warn(
        "list_worlds() is renamed list_paths(); list_worlds remains as an alias",
        DeprecationWarning,
        stacklevel=2,
    )
    return _client().list_paths()


def request(
    method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    return _client().request(method, path, body, headers)


def _listen_events(pattern: str = "*", **kwargs: Any) -> Iterator[dict[str, str]]:
    return _client().listen(pattern, **kwargs)


_TOOLS = {
    "TrustedShellPool",
    "ShellPool",
    "ShellResult",
    "ShellPoolError",
    "decode_disk_name",
    "encode_disk_name",
}


def __getattr__(name: str) -> Any:
    """``elastik.TrustedShellPool`` etc. load ``elastik.tools`` on first use (keeps
    ``import elastik`` free of subprocess machinery and of the server's modules)."""
    if name in _TOOLS:
        from elastik import tools

        return getattr(tools, name)
    raise AttributeError(f"module 'elastik' has no attribute {name!r}")
