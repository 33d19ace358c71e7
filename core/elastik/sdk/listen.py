"""``@elastik.listen`` handlers and the ``elastik.run()`` loop over ``/listen`` SSE.

One SSE connection listens to ``*``; matching happens here, so curl sees the same stream
the worker does. For each matching event the loop fetches the body and headers with one
GET, then calls every matching handler with the body first and the context it asks for by
parameter name (``path``, ``world``, ``etag``, ``pattern``, ``meta``, ``e``, ``method``,
``event``). A handler may return an action (``Reply``, ``Archive``, ``MoveTo``, ``Drop``)
or a list of them. On a dropped connection the loop reconnects with ``Last-Event-ID`` so
events buffered by the core in between are replayed, not lost.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from elastik.sdk import paths
from elastik.sdk.errors import ElastikError

if TYPE_CHECKING:
    from elastik.sdk.client import Elastik

F = TypeVar("F", bound=Callable[..., Any])

_routes: dict[str, Callable[..., Any]] = {}
_startup_hooks: list[Callable[..., Any]] = []
_shutdown_hooks: list[Callable[..., Any]] = []


def normalize_pattern(pattern: str) -> str:
    """``inbox/*`` -> ``/home/inbox/*``: patterns follow the SDK's path mapping, and are
    compared with the event's ``path`` (which starts with ``/``)."""
    canonical = paths.canonical_pattern(pattern)
    return canonical if canonical == "*" else "/" + canonical


def listen(pattern: str, *, replace: bool = False) -> Callable[[F], F]:
    """Register ``func`` for paths matching ``pattern`` (exact, or prefix with a trailing
    ``*``; ``*`` alone matches everything). A second registration of the same pattern
    raises ``ValueError`` unless ``replace=True``."""
    key = normalize_pattern(pattern)

    def deco(func: F) -> F:
        if key in _routes and not replace:
            raise ValueError(
                f"a handler is already registered for {pattern!r}; use unlisten(), "
                "clear_routes() or listen(..., replace=True)"
            )
        _routes[key] = func
        return func

    return deco


def unlisten(pattern: str) -> None:
    _routes.pop(normalize_pattern(pattern), None)


def clear_routes() -> None:
    _routes.clear()


def has_routes() -> bool:
    return bool(_routes)


def on_startup(func: F) -> F:
    """Call ``func()`` or ``func(e)`` once before ``run()`` starts consuming events."""
    _startup_hooks.append(func)
    return func


def on_shutdown(func: F) -> F:
    """Call ``func()`` or ``func(e)`` when ``run()`` exits (reverse registration order)."""
    _shutdown_hooks.append(func)
    return func


def clear_lifecycle_hooks() -> None:
    _startup_hooks.clear()
    _shutdown_hooks.clear()


def matches(pattern: str, path: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern


def matching_routes(path: str) -> list[tuple[str, Callable[..., Any]]]:
    return [(p, h) for p, h in list(_routes.items()) if matches(p, path)]


class Ctx:
    """What a handler can ask for by name."""

    __slots__ = ("body", "e", "etag", "event", "meta", "method", "path", "pattern", "world")

    def __init__(
        self,
        body: bytes,
        path: str,
        etag: str,
        pattern: str,
        meta: dict[str, str],
        e: Elastik,
        method: str = "",
        event: dict[str, str] | None = None,
    ) -> None:
        self.body = body
        self.path = path
        self.world = path  # older name for path
        self.etag = etag
        self.pattern = pattern
        self.meta = meta
        self.e = e
        self.method = method
        self.event = event or {}

    def injectable(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__ if name != "body"}


class Action:
    """Something a handler asks the loop to do after it returns."""

    def execute(self, ctx: Ctx) -> None:
        raise NotImplementedError


class Reply(Action):
    """PUT ``body`` to ``dest``; the source is untouched."""

    def __init__(self, dest: str, body: bytes | str, **meta: Any) -> None:
        self.dest, self.body, self.meta = dest, body, meta

    def execute(self, ctx: Ctx) -> None:
        ctx.e.put(self.dest, self.body, **self.meta)


class MoveTo(Action):
    """PUT the source body to ``dest``, then delete the source."""

    def __init__(self, dest: str, **meta: Any) -> None:
        self.dest, self.meta = dest, meta

    def execute(self, ctx: Ctx) -> None:
        ctx.e.put(self.dest, ctx.body, **self.meta)
        ctx.e.delete(ctx.path)


class Archive(Action):
    """Move the source to ``<prefix>/<its last segment>``."""

    def __init__(self, prefix: str = "/home/archive/") -> None:
        self.prefix = prefix

    def execute(self, ctx: Ctx) -> None:
        name = ctx.path.rstrip("/").rsplit("/", 1)[-1] or "anon"
        ctx.e.put(self.prefix.rstrip("/") + "/" + name, ctx.body)
        ctx.e.delete(ctx.path)


class Drop(Action):
    """Delete the source."""

    def execute(self, ctx: Ctx) -> None:
        ctx.e.delete(ctx.path)


def call_handler(handler: Callable[..., Any], ctx: Ctx) -> Any:
    params = inspect.signature(handler).parameters
    available = ctx.injectable()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = available
    else:
        kwargs = {name: value for name, value in available.items() if name in params}
    return handler(ctx.body, **kwargs)


def run_actions(result: Any, ctx: Ctx) -> None:
    if isinstance(result, Action):
        result.execute(ctx)
    elif isinstance(result, list | tuple):
        for item in result:
            if isinstance(item, Action):
                item.execute(ctx)


def dispatch(
    path: str,
    body: bytes,
    etag: str,
    meta: dict[str, str],
    e: Elastik,
    method: str = "",
    event: dict[str, str] | None = None,
) -> int:
    """Run every handler matching ``path``; returns how many ran."""
    routes = matching_routes(path)
    for pattern, handler in routes:
        ctx = Ctx(body, path, etag, pattern, meta, e, method, event)
        run_actions(call_handler(handler, ctx), ctx)
    return len(routes)


def _call_hook(hook: Callable[..., Any], e: Elastik) -> None:
    params = inspect.signature(hook).parameters
    wants_e = "e" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if wants_e:
        hook(e=e)
    else:
        hook()


def _log(message: str) -> None:
    print(f"elastik listen: {message}", file=sys.stderr, flush=True)


def _handle(e: Elastik, event: dict[str, str]) -> bool:
    """Dispatch one SSE event; True when at least one handler ran."""
    path = event.get("path", "")
    if not path or not matching_routes(path):
        return False
    method = (event.get("method") or event.get("event", "")).upper()
    if method == "DELETE":
        return dispatch(path, b"", "", {}, e, method, event) > 0
    resp = e.request("GET", path)
    if resp.status == 404:  # deleted again before we got here; nothing to hand over
        return False
    if resp.status >= 400:
        _log(f"cannot fetch {path}: HTTP {resp.status} {resp.body[:200]!r}")
        return False
    meta = {k: v for k, v in resp.headers.items() if k.startswith("x-meta-")}
    etag = resp.etag or event.get("etag", "")
    return dispatch(path, resp.body, etag, meta, e, method, event) > 0


def run(
    e: Elastik | None = None,
    reconnect: bool = True,
    retry_s: float = 1.0,
    max_events: int | None = None,
    *,
    last_event_id: str | int | None = None,
) -> None:
    """Consume ``/listen/*`` and dispatch to the registered handlers until stopped.

    ``reconnect=True`` (default) retries forever, logging to stderr; ``reconnect=False``
    raises the first failure (for supervised processes). ``max_events=N`` returns after N
    events were handled. ``last_event_id`` starts from a known position (``0`` replays
    everything the core still buffers).
    """
    if not _routes:
        raise RuntimeError(
            "elastik.run() has no @elastik.listen handlers registered; register one first, "
            "or drop run() if you only need put/get"
        )
    if e is None:
        from elastik import _client

        e = _client()
    position = "" if last_event_id is None else str(last_event_id)
    handled = 0
    for hook in list(_startup_hooks):
        _call_hook(hook, e)
    try:
        while True:
            try:
                for event in e.listen("*", last_event_id=position or None):
                    if event.get("id"):
                        position = event["id"]
                    if event.get("event") == "lag":
                        _log(f"missed events: {event.get('missed', event.get('data', ''))}")
                        continue
                    try:
                        done = _handle(e, event)
                    except Exception as exc:
                        if not reconnect:
                            raise
                        _log(f"handler failed for {event.get('path')}: {type(exc).__name__}: {exc}")
                        continue
                    if done:
                        handled += 1
                        if max_events is not None and handled >= max_events:
                            return
                if not reconnect:
                    raise ConnectionResetError("the core closed the /listen stream")
                _log(f"stream ended; reconnecting in {retry_s}s")
            except (ElastikError, OSError) as exc:
                if not reconnect:
                    raise
                _log(f"{exc}; retrying in {retry_s}s")
            time.sleep(retry_s)
    finally:
        for hook in reversed(list(_shutdown_hooks)):
            try:
                _call_hook(hook, e)
            except Exception as exc:
                _log(f"shutdown hook {getattr(hook, '__name__', hook)!r} failed: {exc}")
