"""Client-side path mapping: what the user types -> the request-target the SDK sends.

Pure functions, no I/O, and no import of the server: the SDK must stay usable against any
core. The mapping (reference SDK README, "Paths"):

| input                           | request-target                   |
|---------------------------------|----------------------------------|
| ``note`` / ``/note``            | ``/home/note``                   |
| ``tmp/scratch`` / ``/tmp/...``  | ``/tmp/scratch``                 |
| ``proc/worlds`` (and version, du, df, pool) | ``/proc/worlds``     |
| ``proc/audit/home/note/verify`` | ``/proc/audit/home/note/verify`` |
| ``/proc/unknown``               | ``ValueError`` before any request|

Worlds are validated like the core validates them (empty, dot and dot-dot segments,
backslash, control characters, namespace roots), so a bad path is a ``ValueError`` with a
clear message instead of a round trip that answers 400.
"""

from __future__ import annotations

import urllib.parse

NAMESPACES = frozenset({"home", "tmp", "dev", "sys", "proc", "etc", "lib", "boot", "usr", "var"})
MEMORY_NAMESPACES = frozenset({"tmp", "dev", "sys"})
PROC_ENDPOINTS = frozenset({"proc/version", "proc/worlds", "proc/du", "proc/df", "proc/pool"})
RESERVED_ROOTS = NAMESPACES | {"var/log"}


def canonical_world(path: str) -> str:
    """``note`` -> ``home/note``; explicit namespaces are kept. No validation."""
    stripped = path.lstrip("/")
    first = stripped.split("/", 1)[0]
    if first in NAMESPACES:
        return stripped
    return "home/" + stripped


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F


def validate_world(world: str) -> None:
    """Raise ``ValueError`` for a canonical world name the core would answer 400."""
    if not world:
        raise ValueError("empty elastik path")
    if world in RESERVED_ROOTS:
        raise ValueError(
            f"{world!r} is a reserved namespace root; store data under a child path "
            f"such as {world}/myapp/data"
        )
    if world == "proc" or world.startswith("proc/"):
        raise ValueError(
            "/proc is reserved; only /proc/version, /proc/worlds, /proc/du, /proc/df, "
            "/proc/pool and /proc/audit/{path}/verify exist"
        )
    if "\\" in world:
        raise ValueError(f"backslash is not allowed in elastik paths: {world!r}")
    if any(_is_control(ch) for ch in world):
        raise ValueError(f"control characters are not allowed in elastik paths: {world!r}")
    for segment in world.split("/"):
        if segment == "":
            raise ValueError(f"empty path segment in {world!r}")
        if _is_dot_segment(segment):
            raise ValueError(f"'.' and '..' segments are not allowed in elastik paths: {world!r}")


def _is_dot_segment(segment: str) -> bool:
    decoded = segment.lower().replace("%2e", ".")
    return decoded in (".", "..")


def world_name(path: str) -> str:
    """Canonical, validated world name (``note`` -> ``home/note``)."""
    world = canonical_world(path)
    validate_world(world)
    return world


def proc_path(path: str) -> str | None:
    """The canonical ``proc/...`` endpoint for ``path``, or None when it is not one.

    Raises ``ValueError`` for ``proc/audit/...`` forms the core does not serve.
    """
    stripped = path.lstrip("/")
    if stripped in PROC_ENDPOINTS:
        return stripped
    prefix, suffix = "proc/audit/", "/verify"
    if not stripped.startswith(prefix):
        return None
    if not stripped.endswith(suffix):
        raise ValueError("/proc/audit only serves /proc/audit/{path}/verify")
    inner = stripped[len(prefix) : -len(suffix)].strip("/")
    if not inner:
        raise ValueError("/proc/audit/{path}/verify needs a world path")
    return f"proc/audit/{world_name(inner)}/verify"


def request_target(path: str) -> str:
    """The percent-encoded request-target for a user path (``note`` -> ``/home/note``)."""
    proc = proc_path(path)
    if proc is not None:
        return "/" + urllib.parse.quote(proc, safe="/")
    return "/" + urllib.parse.quote(world_name(path), safe="/")


def canonical_pattern(pattern: str) -> str:
    """A listen pattern in canonical form: ``*``, ``home/inbox/*`` or ``home/inbox/x``.

    The core does not namespace-default patterns, so the SDK does it here (``inbox/*``
    listens on ``home/inbox/*``), like it does for every other path.
    """
    p = pattern.strip().lstrip("/")
    if p in ("", "*"):
        return "*"
    star = p.endswith("*")
    body = p[:-1] if star else p
    world = canonical_world(body) if body else ""
    check = world.rstrip("/") if star else world
    if check and check not in NAMESPACES:
        validate_world(check)
    return world + ("*" if star else "")


def listen_target(pattern: str) -> str:
    """``/listen/<canonical pattern>``, percent-encoded."""
    return "/listen/" + urllib.parse.quote(canonical_pattern(pattern), safe="/*")


def canonical_prefix(path: str) -> str:
    """A virtual-directory prefix: canonical world name without trailing ``/``; ``""`` = all."""
    if not path or not path.strip("/"):
        return ""
    root = canonical_world(path).rstrip("/")
    if root not in RESERVED_ROOTS:
        validate_world(root)
    return root


def is_memory_world(world: str) -> bool:
    return world.split("/", 1)[0] in MEMORY_NAMESPACES


def quote_etag(value: str | None) -> str | None:
    """An ETag as sent in If-Match / If-None-Match / If-Range: quoted unless already."""
    if value is None:
        return None
    v = str(value).strip()
    if v == "*" or v.startswith("W/") or (len(v) >= 2 and v[0] == v[-1] == '"'):
        return v
    return f'"{v}"'
