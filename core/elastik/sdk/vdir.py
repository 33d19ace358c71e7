"""Virtual directories over the flat key space: ls, tree, du, mv, rm.

The core stores ``home/sensor/kitchen/temp`` as one key. These helpers split keys on
``/`` the way ``os.listdir``/``shutil`` would, using ``/proc/worlds`` for the listing.
Each change is still one HTTP request per key: there is no transaction and no rollback.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from elastik.sdk import paths


class _Store(Protocol):
    def list_paths(self) -> list[str]: ...
    def delete(self, path: str, *, if_match: str | None = None) -> bool: ...
    def exists(self, path: str) -> bool: ...
    def sizeof(self, path: str) -> int: ...
    def copy(self, src: str, dst: str, **meta: Any) -> dict[str, Any]: ...


def _under(root: str, world: str) -> bool:
    return not root or world == root or world.startswith(root + "/")


def ls(store: _Store, prefix: str = "", *, depth: int = 1) -> list[str]:
    """Children of ``prefix``; virtual directories end in ``/``. ``depth=-1``: all keys."""
    if depth != -1 and depth < 1:
        raise ValueError("depth must be >= 1, or -1 for all descendants")
    root = paths.canonical_prefix(prefix)
    keys = [k for k in store.list_paths() if _under(root, k)]
    if depth == -1:
        return keys
    out: list[str] = []
    seen: set[str] = set()
    for key in keys:
        if key == root:
            out.append(key)
            continue
        rest = key[len(root) + 1 :] if root else key
        parts = rest.split("/")
        if len(parts) <= depth:
            out.append(key)
            continue
        head = "/".join(parts[:depth]) + "/"
        entry = f"{root}/{head}" if root else head
        if entry not in seen:
            seen.add(entry)
            out.append(entry)
    return out


def tree(store: _Store, prefix: str = "") -> str:
    """A text tree (``├──``/``└──``) of the keys under ``prefix``; ``(empty)`` if none."""
    root = paths.canonical_prefix(prefix)
    keys = ls(store, root, depth=-1)
    if not keys:
        return "(empty)"
    skip = len(root.split("/")) if root else 0
    nodes: dict[str, Any] = {}
    for key in keys:
        node = nodes
        for part in key.split("/")[skip:]:
            node = node.setdefault(part, {})
    lines = [root] if root else []

    def walk(node: dict[str, Any], indent: str) -> None:
        items = sorted(node.items())
        for index, (name, children) in enumerate(items):
            last = index == len(items) - 1
            lines.append(f"{indent}{'└── ' if last else '├── '}{name}")
            walk(children, indent + ("    " if last else "│   "))

    walk(nodes, "")
    return "\n".join(lines)


def du(store: _Store, prefix: str = "", *, max_workers: int = 4) -> dict[str, int]:
    """``{key: Content-Length}`` for every key under ``prefix`` (HEADs run concurrently)."""
    if max_workers < 1:
        raise ValueError("max_workers must be greater than 0")
    keys = ls(store, prefix, depth=-1)
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        sizes = list(pool.map(store.sizeof, keys))
    return dict(zip(keys, sizes, strict=True))


def _guard(root: str, operation: str, force: bool) -> None:
    if force:
        return
    if not root:
        raise ValueError(
            f"{operation}(recursive=True) on '' would touch every path; pass force=True to confirm"
        )
    if root in paths.RESERVED_ROOTS:
        raise ValueError(
            f"{operation}({root!r}, recursive=True) would touch the whole {root!r} namespace; "
            "pass force=True to confirm"
        )


def rm(store: _Store, path: str, *, recursive: bool = False, force: bool = False) -> int:
    """Delete one key, or every key under a prefix; returns how many were deleted."""
    if not recursive:
        return 1 if store.delete(path) else 0
    root = paths.canonical_prefix(path)
    _guard(root, "rm", force)
    return sum(1 for key in ls(store, root, depth=-1) if store.delete(key))


def mv(
    store: _Store, src: str, dst: str, *, recursive: bool = False, overwrite: bool = False
) -> int:
    """Copy then delete. Refuses an existing destination unless ``overwrite=True``."""
    src_root = paths.canonical_prefix(src)
    dst_root = paths.canonical_prefix(dst)
    if src_root == dst_root:
        raise ValueError("mv() source and destination must be different")
    if not recursive:
        if not overwrite and store.exists(dst_root):
            raise FileExistsError(f"mv() destination exists: {dst_root} (pass overwrite=True)")
        store.copy(src_root, dst_root)
        store.delete(src_root)
        return 1
    if not src_root or not dst_root:
        raise ValueError("mv(recursive=True) needs non-empty source and destination prefixes")
    if _under(src_root, dst_root):
        raise ValueError(f"mv() cannot move {src_root!r} into itself ({dst_root!r})")
    _guard(src_root, "mv", False)
    moves = [(key, dst_root + key[len(src_root) :]) for key in ls(store, src_root, depth=-1)]
    if not overwrite:
        for _key, target in moves:
            if store.exists(target):
                raise FileExistsError(f"mv() destination exists: {target} (pass overwrite=True)")
    count = 0
    for key, target in moves:
        store.copy(key, target)
        if store.delete(key):
            count += 1
    return count
