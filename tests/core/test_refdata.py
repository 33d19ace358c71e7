"""Reading a reference data directory made by the real reference binary: ``ls_data`` and
``verifytool`` over the per-world ``universe.db`` layout."""

from __future__ import annotations

import sqlite3
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from elastik.server import disknames, refdata, verifytool
from elastik.server.engine import Engine
from elastik.server.model import EngineConfig

from tests.support.servers import new_key, reference, running

pytestmark = pytest.mark.reference


def http(url: str, method: str, path: str, body: bytes | None = None, ct: str | None = None):
    headers = {"Authorization": "Bearer a"}
    if ct:
        headers["Content-Type"] = ct
    req = urllib.request.Request(
        url + urllib.parse.quote(path), data=body, method=method, headers=headers
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


@pytest.fixture(scope="module")
def refdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("refdata")
    key = new_key()
    data = work / "data"
    with running(reference(work, key=key, data=data)) as ref:
        http(ref.url, "PUT", "/home/note.txt", b"hello", "text/plain")
        http(ref.url, "POST", "/home/note.txt", b" world")
        http(ref.url, "PUT", "/home/a b/\u00e9", b"12345", "application/json")
        http(ref.url, "PUT", "/tmp/memory", b"not on disk")
        http(ref.url, "PUT", "/home/gone", b"x")
        http(ref.url, "DELETE", "/home/gone")
    return data, key


def test_ls_data_lists_reference_worlds(refdir: tuple[Path, str]):
    data, _ = refdir
    rows = refdata.ls_data(data)
    assert [(r.world, r.size, r.events, r.content_type) for r in rows] == [
        ("home/a b/\u00e9", 5, 1, "application/json"),
        ("home/note.txt", 11, 2, "text/plain"),
        ("var/log/deletes", 0, 2, "application/octet-stream"),
    ]
    lines = list(refdata.list_worlds(data))
    assert lines[1] == "home/note.txt\t11\t2\ttext/plain"


def test_disk_names_of_reference_match_our_encoder(refdir: tuple[Path, str]):
    data, _ = refdir
    on_disk = {p.name for p in data.iterdir() if (p / "universe.db").is_file()}
    worlds = {r.world for r in refdata.ls_data(data)}
    assert {disknames.encode(w) for w in worlds} == on_disk


def test_verifytool_replays_reference_layout(refdir: tuple[Path, str], tmp_path: Path):
    data, key = refdir
    rows = verifytool.verify_data(data, key.encode())
    assert [(r.world, r.events, r.ok) for r in rows] == [
        ("home/a b/\u00e9", 1, True),
        ("home/note.txt", 2, True),
        ("var/log/deletes", 2, True),
    ]
    wrong = verifytool.verify_data(data, b"0" * 64)
    assert not any(r.ok for r in wrong)
    # Tamper with a copy: body (D3 state) and an event (chain).
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    with sqlite3.connect(copy / disknames.encode("home/note.txt") / "universe.db") as c:
        c.execute("UPDATE stage_meta SET body=x'00'")
    with sqlite3.connect(copy / disknames.encode("home/a b/\u00e9") / "universe.db") as c:
        c.execute("UPDATE events SET size=6")
    by_world = {r.world: r for r in verifytool.verify_data(copy, key.encode())}
    assert by_world["home/note.txt"].detail.startswith("state mismatch: expected body-sha256-")
    assert by_world["home/a b/\u00e9"].detail.startswith(
        "audit chain broken at event 0: expected hmac-"
    )
    assert by_world["var/log/deletes"].ok


def test_ls_data_reads_our_layout_too(tmp_path: Path):
    import asyncio

    async def fill() -> None:
        with Engine.open(EngineConfig(data=tmp_path / "ours", key=b"k" * 32)) as e:
            await e.put("home/x", b"abc", "text/plain", ())
            await e.append("home/x", b"d")

    asyncio.run(fill())
    assert [(r.world, r.size, r.events) for r in refdata.ls_data(tmp_path / "ours")] == [
        ("home/x", 4, 2)
    ]


def test_ls_data_of_missing_dir_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        refdata.ls_data(tmp_path / "missing")


def _etag_of(url: str, path: str) -> str:
    req = urllib.request.Request(
        url + urllib.parse.quote(path), headers={"Authorization": "Bearer a"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["etag"].strip('"')


def _write(url: str, method: str, path: str, body: bytes | None = None) -> str | None:
    req = urllib.request.Request(
        url + urllib.parse.quote(path),
        data=body,
        method=method,
        headers={"Authorization": "Bearer a"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        tag = resp.headers.get("etag")
        return tag.strip('"') if tag else None


def test_import_keeps_chains_and_etags_and_continues_like_the_reference(
    refdir: tuple[Path, str], tmp_path: Path
):
    import asyncio
    import shutil

    from elastik.server import importer

    src, key = refdir
    copy = tmp_path / "src"
    shutil.copytree(src, copy)
    dst = tmp_path / "ours"
    rows = importer.import_reference(copy, dst, key.encode())
    assert [(r.world, r.events, r.imported) for r in rows] == [
        ("home/a b/\u00e9", 1, True),
        ("home/note.txt", 2, True),
        ("var/log/deletes", 2, True),
    ]
    assert all(r.ok for r in verifytool.verify_data(dst, key.encode()))

    with running(reference(tmp_path, key=key, data=copy)) as ref:
        worlds = ["home/note.txt", "home/a b/\u00e9", "var/log/deletes"]
        ref_tags = {w: _etag_of(ref.url, "/" + w) for w in worlds}
        ref_post = _write(ref.url, "POST", "/home/note.txt", b"!")
        _write(ref.url, "DELETE", "/home/a b/\u00e9")
        ref_ledger = _etag_of(ref.url, "/var/log/deletes")

    async def ours() -> tuple[dict[str, str], str | None, str]:
        with Engine.open(EngineConfig(data=dst, key=key.encode())) as e:
            tags = {}
            for w in worlds:
                state = e.read(w)
                assert state is not None
                tags[w] = state.etag
            post = (await e.append("home/note.txt", b"!")).etag
            await e.delete("home/a b/\u00e9")
            led = e.read("var/log/deletes")
            assert led is not None
            return tags, post, led.etag

    tags, post, ledger = asyncio.run(ours())
    assert tags == ref_tags
    assert post == ref_post
    assert ledger == ref_ledger


def test_import_skips_broken_and_existing_worlds(refdir: tuple[Path, str], tmp_path: Path):
    import shutil

    from elastik.server import importer

    src, key = refdir
    copy = tmp_path / "src"
    shutil.copytree(src, copy)
    with sqlite3.connect(copy / disknames.encode("home/note.txt") / "universe.db") as c:
        c.execute("UPDATE events SET size=0")
    dst = tmp_path / "ours"
    first = {r.world: r for r in importer.import_reference(copy, dst, key.encode())}
    assert not first["home/note.txt"].imported
    assert first["home/note.txt"].detail.startswith("audit chain broken at event 0")
    assert first["home/a b/\u00e9"].imported
    again = importer.import_reference(copy, dst, key.encode())
    assert all(not r.imported for r in again)
    assert {r.detail for r in again if r.world != "home/note.txt"} == {
        "already exists in destination"
    }
    with pytest.raises(FileNotFoundError):
        importer.import_reference(tmp_path / "missing", dst, key.encode())
    with pytest.raises(ValueError):
        importer.import_reference(dst, tmp_path / "other", key.encode())
