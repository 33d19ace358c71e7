"""``WorldRef``: a pathlib-shaped handle on one path (``e / "home" / "reports" / "q1"``)."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elastik.sdk.client import Elastik, WorldMeta
    from elastik.sdk.fileobj import WorldReader


class WorldRef:
    """Pure path arithmetic plus one-call methods that delegate to the client."""

    def __init__(self, e: Elastik, path: str) -> None:
        self._e = e
        self._path = path.strip("/")

    @property
    def path(self) -> str:
        return self._path

    @property
    def client(self) -> Elastik:
        return self._e

    def __truediv__(self, child: str) -> WorldRef:
        child = child.strip("/")
        if not self._path:
            return WorldRef(self._e, child)
        return WorldRef(self._e, f"{self._path}/{child}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorldRef) and other._e is self._e and other._path == self._path

    def __hash__(self) -> int:
        return hash(self._path)

    # -- names --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> WorldRef:
        return WorldRef(self._e, self._path.rsplit("/", 1)[0] if "/" in self._path else "")

    @property
    def suffix(self) -> str:
        name = self.name
        dot = name.rfind(".")
        return name[dot:] if 0 < dot < len(name) - 1 else ""

    @property
    def stem(self) -> str:
        suffix = self.suffix
        return self.name[: -len(suffix)] if suffix else self.name

    # -- one call each ------------------------------------------------------------------

    def read(self) -> bytes:
        return self._e[self._path]

    def read_text(self, *, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read().decode(encoding, errors)

    def write(self, data: bytes | str, **kwargs: Any) -> dict[str, Any]:
        return self._e.put(self._path, data, **kwargs)

    def write_text(self, text: str, **kwargs: Any) -> dict[str, Any]:
        return self._e.put_text(self._path, text, **kwargs)

    def exists(self) -> bool:
        return self._e.exists(self._path)

    def unlink(self, missing_ok: bool = True) -> bool:
        deleted = self._e.delete(self._path)
        if not deleted and not missing_ok:
            raise FileNotFoundError(self._path)
        return deleted

    def stat(self) -> WorldMeta:
        return self._e.head(self._path)

    def open(self, mode: str = "rb") -> WorldReader:
        return self._e.open(self._path, mode)

    # -- virtual directories ------------------------------------------------------------

    def iterdir(self, depth: int = 1) -> list[WorldRef]:
        return [WorldRef(self._e, p) for p in self._e.ls(self._path, depth=depth)]

    def walk(self) -> list[WorldRef]:
        """Every stored path below this one (no virtual directory entries)."""
        return self.iterdir(depth=-1)

    def glob(self, pattern: str) -> list[WorldRef]:
        """Immediate children whose name matches ``pattern`` (fnmatch)."""
        return [r for r in self.iterdir() if fnmatch.fnmatchcase(r.name, pattern)]

    def rglob(self, pattern: str) -> list[WorldRef]:
        """Stored descendants whose name matches ``pattern`` (fnmatch)."""
        return [r for r in self.walk() if fnmatch.fnmatchcase(r.name, pattern)]

    def rename(self, dst: str | WorldRef, *, overwrite: bool = False) -> WorldRef:
        target = dst.path if isinstance(dst, WorldRef) else dst
        self._e.mv(self._path, target, overwrite=overwrite)
        return WorldRef(self._e, target)

    def rmtree(self, *, force: bool = False) -> int:
        return self._e.rm(self._path, recursive=True, force=force)

    def __fspath__(self) -> str:
        return self._path

    def __str__(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"WorldRef({self._path!r})"
