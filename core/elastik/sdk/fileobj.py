"""``Elastik.open()``: a read-only, seekable file object backed by HTTP Range requests."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elastik.sdk.client import Elastik


class WorldChanged(OSError):
    """The world was replaced while it was open; the bytes read so far belong to another version."""


class WorldReader(io.RawIOBase):
    """Reads ``path`` in ranges. Every read is pinned to the ETag seen at open time with
    ``If-Range``: if the world is replaced meanwhile, the core answers with the whole new
    body (200) instead of a slice of it (206), and the read raises ``WorldChanged``."""

    def __init__(self, e: Elastik, path: str) -> None:
        super().__init__()
        self._e = e
        self._path = path
        meta = e.head(path)
        self._size = int(meta.get("content-length", "0"))
        self.etag = meta.get("etag", "")
        self._pos = 0

    @property
    def name(self) -> str:
        return self._path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            new = offset
        elif whence == io.SEEK_CUR:
            new = self._pos + offset
        elif whence == io.SEEK_END:
            new = self._size + offset
        else:
            raise ValueError(f"invalid whence: {whence}")
        if new < 0:
            raise ValueError(f"negative seek position {new}")
        self._pos = new
        return new

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed elastik world")

    def _fetch(self, count: int) -> bytes:
        self._check_open()
        if count == 0 or self._pos >= self._size:
            return b""
        end = self._size - 1 if count < 0 else min(self._size, self._pos + count) - 1
        resp = self._e.request(
            "GET",
            self._path,
            headers={"Range": f"bytes={self._pos}-{end}", "If-Range": self.etag},
        )
        if resp.status not in (200, 206):
            self._e._raise(resp, "GET", self._path)
        if self.etag and resp.etag and resp.etag != self.etag:
            raise WorldChanged(f"{self._path} changed while open (etag was {self.etag})")
        self._pos += len(resp.body)
        return resp.body

    def read(self, size: int | None = -1) -> bytes:
        return self._fetch(-1 if size is None else size)

    def readall(self) -> bytes:
        return self._fetch(-1)

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        data = self._fetch(len(view))
        view[: len(data)] = data
        return len(data)
