"""Virtual directories (ls/tree/du/mv/rm) and WorldRef against both cores."""

from __future__ import annotations

import elastik
import pytest
from elastik import Elastik, WorldRef


def _seed(e: Elastik, p: str) -> None:
    e.put_many(
        {
            f"{p}/sensor/kitchen/temp": "21",
            f"{p}/sensor/kitchen/hum": "40",
            f"{p}/sensor/hall/temp": "19",
            f"{p}/readme.txt": "hi",
        }
    )


def test_ls_depth_and_virtual_dirs(e: Elastik, p: str) -> None:
    _seed(e, p)
    assert e.ls(p) == [f"home/{p}/readme.txt", f"home/{p}/sensor/"]
    assert e.ls(f"{p}/sensor") == [f"home/{p}/sensor/hall/", f"home/{p}/sensor/kitchen/"]
    assert e.ls(f"{p}/sensor", depth=2) == [
        f"home/{p}/sensor/hall/temp",
        f"home/{p}/sensor/kitchen/hum",
        f"home/{p}/sensor/kitchen/temp",
    ]
    assert sorted(e.ls(p, depth=-1)) == sorted(
        f"home/{p}/{k}"
        for k in ("sensor/kitchen/temp", "sensor/kitchen/hum", "sensor/hall/temp", "readme.txt")
    )
    assert e.ls(f"{p}/nothing") == []
    assert "home/" in e.ls("")
    with pytest.raises(ValueError, match="depth"):
        e.ls(p, depth=0)


def test_tree_renders_the_hierarchy(e: Elastik, p: str) -> None:
    _seed(e, p)
    assert e.tree(p).splitlines() == [
        f"home/{p}",
        "├── readme.txt",
        "└── sensor",
        "    ├── hall",
        "    │   └── temp",
        "    └── kitchen",
        "        ├── hum",
        "        └── temp",
    ]
    assert e.tree(f"{p}/none") == "(empty)"


def test_du_reports_content_lengths(e: Elastik, p: str) -> None:
    _seed(e, p)
    assert e.du(f"{p}/sensor") == {
        f"home/{p}/sensor/hall/temp": 2,
        f"home/{p}/sensor/kitchen/hum": 2,
        f"home/{p}/sensor/kitchen/temp": 2,
    }
    with pytest.raises(ValueError):
        e.du(p, max_workers=0)


def test_mv_single_refuses_overwrite_unless_asked(e: Elastik, p: str) -> None:
    e.put(f"{p}/draft", "v1", content_type="text/markdown")
    e.put(f"{p}/final", "old")
    with pytest.raises(FileExistsError, match="final"):
        e.mv(f"{p}/draft", f"{p}/final")
    assert e.get(f"{p}/final") == b"old" and e.exists(f"{p}/draft")
    assert e.mv(f"{p}/draft", f"{p}/final", overwrite=True) == 1
    assert e.get(f"{p}/final") == b"v1" and not e.exists(f"{p}/draft")
    assert e.head(f"{p}/final")["content-type"] == "text/markdown"
    with pytest.raises(ValueError, match="different"):
        e.mv(f"{p}/final", f"/{p}/final")


def test_mv_recursive_moves_a_prefix(e: Elastik, p: str) -> None:
    _seed(e, p)
    assert e.mv(f"{p}/sensor", f"{p}/moved", recursive=True) == 3
    assert e.ls(f"{p}/sensor", depth=-1) == []
    assert e.get(f"{p}/moved/kitchen/temp") == b"21"
    e.put(f"{p}/other/kitchen/temp", "x")
    with pytest.raises(FileExistsError):
        e.mv(f"{p}/moved", f"{p}/other", recursive=True)
    assert e.get(f"{p}/other/kitchen/temp") == b"x"
    with pytest.raises(ValueError):
        e.mv(f"{p}/moved", f"{p}/moved/inner", recursive=True)


def test_rm_single_and_recursive_with_guards(e: Elastik, p: str) -> None:
    _seed(e, p)
    assert e.rm(f"{p}/readme.txt") == 1 and e.rm(f"{p}/readme.txt") == 0
    for root in ("", "home", "/tmp", "var/log"):
        with pytest.raises(ValueError, match="force=True"):
            e.rm(root, recursive=True)
    assert e.rm(f"{p}/sensor", recursive=True) == 3
    assert e.ls(p, depth=-1) == []


def test_worldref_pathlib_surface(e: Elastik, p: str) -> None:
    reports = e / "home" / p / "reports"
    assert isinstance(reports, WorldRef) and reports.path == f"home/{p}/reports"
    q1 = reports / "q1.pdf"
    assert (q1.name, q1.suffix, q1.stem, q1.parent) == ("q1.pdf", ".pdf", "q1", reports)
    assert (reports / ".hidden").suffix == ""
    q1.write(b"%PDF-1")
    (reports / "q2.txt").write("revenue up")
    (reports / "2024" / "old.pdf").write("x")
    assert (reports / "q2.txt").read_text() == "revenue up"
    assert q1.read() == b"%PDF-1" and q1.exists() and q1.stat()["content-length"] == "6"
    with q1.open() as f:
        assert f.read(4) == b"%PDF"
    assert sorted(r.name for r in reports.iterdir()) == ["2024", "q1.pdf", "q2.txt"]
    assert [r.name for r in reports.glob("*.pdf")] == ["q1.pdf"]
    assert sorted(r.path for r in reports.rglob("*.pdf")) == [
        f"home/{p}/reports/2024/old.pdf",
        f"home/{p}/reports/q1.pdf",
    ]
    assert len(reports.walk()) == 3
    moved = (reports / "q2.txt").rename(f"home/{p}/archive/q2.txt")
    assert moved.read_text() == "revenue up" and not (reports / "q2.txt").exists()
    assert q1.unlink() is True and q1.unlink() is False
    with pytest.raises(FileNotFoundError):
        q1.unlink(missing_ok=False)
    assert reports.rmtree() == 1
    with pytest.raises(KeyError):
        q1.read()
    assert str(moved) == f"home/{p}/archive/q2.txt" and "WorldRef" in repr(moved)


def test_worldref_of_missing_path_raises_keyerror(e: Elastik, p: str) -> None:
    with pytest.raises(KeyError):
        (e / p / "nope").read()
    with pytest.raises(elastik.NotFound):
        (e / p / "nope").stat()
