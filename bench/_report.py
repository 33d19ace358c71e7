"""What every bench script records next to its figures, and how it writes them.

``machine()`` names the machine (CPU model, cores, Python), ``fs_type()`` the file system
under the data directory (fsync cost depends on it), and ``write_section()`` replaces one
script's region of ``docs/benchmarks.md`` between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->``, re-reading the file right before writing since other scripts own
other regions.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine() -> str:
    return (
        f"{cores()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def fs_type(path: Path) -> str:
    """The file system type holding ``path``, from /proc/mounts (longest mount prefix)."""
    best, kind = "", "unknown"
    target = str(Path(path).resolve())
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _dev, mount, fstype = line.split()[:3]
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, fstype
    except OSError:
        pass
    return kind


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the ``name`` region of ``path`` with ``text`` (append the region if missing)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in doc and end in doc and doc.index(start) < doc.index(end):
        doc = doc[: doc.index(start)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(doc)
