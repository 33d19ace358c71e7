"""``elastik.reactor``: the listen/run vocabulary under the module name the reference SDK
uses (``from elastik.reactor import listen, run, Reply``). The code lives in
``elastik.sdk.listen``."""

from elastik.sdk.listen import (
    Action,
    Archive,
    Ctx,
    Drop,
    MoveTo,
    Reply,
    clear_lifecycle_hooks,
    clear_routes,
    dispatch,
    has_routes,
    listen,
    on_shutdown,
    on_startup,
    run,
    unlisten,
)

__all__ = [
    "Action",
    "Archive",
    "Ctx",
    "Drop",
    "MoveTo",
    "Reply",
    "clear_lifecycle_hooks",
    "clear_routes",
    "dispatch",
    "has_routes",
    "listen",
    "on_shutdown",
    "on_startup",
    "run",
    "unlisten",
]
