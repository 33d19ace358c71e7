"""The client contract against a real core (ours and the reference)."""

from __future__ import annotations

import io
import json
import warnings

import elastik
import pytest
from elastik import Elastik

from tests.sdk.conftest import APPROVE, Core
from tests.sdk.helpers import RecordingTransport

# -- bytes contract ------------------------------------------------------------------------


def test_put_then_get_is_byte_exact(e: Elastik, p: str) -> None:
    data = bytes(range(256)) * 4
    assert e.put(f"{p}/bin", data)["status"] == 201
    assert e.get(f"{p}/bin") == data
    assert e.head(f"{p}/bin")["content-type"] == "application/octet-stream"


def test_put_str_is_utf8_text(e: Elastik, p: str) -> None:
    e.put(f"{p}/t", "héllo")
    assert e.get(f"{p}/t") == "héllo".encode()
    assert e.head(f"{p}/t")["content-type"] == "text/plain; charset=utf-8"


def test_put_replace_returns_200_and_new_etag(e: Elastik, p: str) -> None:
    first = e.put(f"{p}/x", "a")
    second = e.put(f"{p}/x", "b")
    assert (first["status"], second["status"]) == (201, 200)
    assert first["etag"] != second["etag"] and second["etag"].startswith('"hmac-')


def test_get_missing_raises_not_found_never_none(e: Elastik, p: str) -> None:
    with pytest.raises(elastik.NotFound) as info:
        e.get(f"{p}/missing")
    assert info.value.status == 404
    assert "world not found" in str(info.value)


def test_get_returns_none_only_for_304(e: Elastik, p: str) -> None:
    etag = e.put(f"{p}/c", "v")["etag"]
    assert e.get(f"{p}/c", if_none_match=etag) is None
    assert e.get(f"{p}/c", if_none_match='"other"') == b"v"


def test_put_rejects_non_bytes_data(e: Elastik, p: str) -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        e.put(f"{p}/x", 5)  # type: ignore[arg-type]


def test_post_appends_and_keeps_metadata(e: Elastik, p: str) -> None:
    e.put(f"{p}/log", "a", content_type="text/x-log")
    r = e.post(f"{p}/log", "b")
    assert r["status"] == 200
    assert e.get(f"{p}/log") == b"ab"
    assert e.head(f"{p}/log")["content-type"] == "text/x-log"


def test_post_to_missing_path_is_not_found(e: Elastik, p: str) -> None:
    with pytest.raises(elastik.NotFound):
        e.post(f"{p}/nothing", "x")


def test_delete_true_then_false(e: Elastik, p: str) -> None:
    e.put(f"{p}/d", "x")
    assert e.delete(f"{p}/d") is True
    assert e.delete(f"{p}/d") is False
    assert not e.exists(f"{p}/d")


def test_delete_with_stale_if_match_fails(e: Elastik, p: str) -> None:
    e.put(f"{p}/d", "x")
    with pytest.raises(elastik.PreconditionFailed):
        e.delete(f"{p}/d", if_match='"hmac-stale"')
    assert e.exists(f"{p}/d")


# -- text / json ---------------------------------------------------------------------------


def test_text_and_json_helpers(e: Elastik, p: str) -> None:
    e.put_text(f"{p}/t", "żółw", encoding="utf-16")
    assert e.head(f"{p}/t")["content-type"] == "text/plain; charset=utf-16"
    assert e.get_text(f"{p}/t", encoding="utf-16") == "żółw"
    e.put_json(f"{p}/j", {"debug": True, "name": "ü"})
    assert e.head(f"{p}/j")["content-type"] == "application/json"
    assert e.get_json(f"{p}/j") == {"debug": True, "name": "ü"}
    assert json.loads(e.get(f"{p}/j") or b"") == {"debug": True, "name": "ü"}


# -- metadata ------------------------------------------------------------------------------


def test_named_metadata_round_trips(e: Elastik, p: str) -> None:
    e.put(
        f"{p}/report.pdf",
        b"%PDF",
        content_type="application/pdf",
        content_disposition='attachment; filename="report.pdf"',
        cache_control="max-age=60",
        content_language="en",
    )
    meta = e.head(f"{p}/report.pdf")
    assert meta["content-type"] == "application/pdf"
    assert meta["content-disposition"] == 'attachment; filename="report.pdf"'
    assert meta["cache-control"] == "max-age=60"
    assert meta["content-language"] == "en"


def test_extra_kwargs_become_x_meta_headers(e: Elastik, p: str) -> None:
    e.put(f"{p}/n", "hello", project="demo", build_id=7)
    meta = e.head(f"{p}/n")
    assert meta["x-meta-project"] == "demo"  # type: ignore[typeddict-item]
    assert meta["x-meta-build-id"] == "7"  # type: ignore[typeddict-item]


def test_headers_argument_passes_safe_headers(e: Elastik, p: str) -> None:
    e.put(
        f"{p}/logo.png",
        b"\x89PNG",
        content_type="image/png",
        headers={"Access-Control-Allow-Origin": "*"},
    )
    assert e.head(f"{p}/logo.png")["access-control-allow-origin"] == "*"  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    "name",
    [
        "Content-Length",
        "Transfer-Encoding",
        "Host",
        "Connection",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Upgrade",
        "HTTP2-Settings",
        "content-length",
    ],
)
def test_wire_level_headers_are_refused_before_sending(e: Elastik, p: str, name: str) -> None:
    with pytest.raises(ValueError, match="cannot be set via headers="):
        e.put(f"{p}/w", "x", headers={name: "1"})
    with pytest.raises(ValueError, match=name):
        e.request("GET", f"{p}/w", headers={name: "1"})
    assert not e.exists(f"{p}/w")


def test_explicit_authorization_header_wins_over_bearer_token(core: Core, p: str) -> None:
    anon = Elastik(core.url, bearer_token="")
    with pytest.raises(elastik.Unauthorized):
        anon.put(f"{p}/a", "x")
    anon.put(f"{p}/a", "x", headers={"Authorization": f"Bearer {APPROVE}"})
    wrong = Elastik(core.url, bearer_token="wrong")
    wrong.put(f"{p}/b", "x", headers={"authorization": f"Bearer {APPROVE}"})
    assert anon.get(f"{p}/b") == b"x"


def test_near_miss_metadata_kwarg_warns(e: Elastik, p: str) -> None:
    with pytest.warns(UserWarning, match="cache_control"):
        e.put(f"{p}/w", "x", cache_contrl="no-store")


# -- conditionals and ranges ---------------------------------------------------------------


def test_if_match_optimistic_update(e: Elastik, p: str) -> None:
    etag = e.put(f"{p}/cfg", "v1")["etag"]
    new = e.put(f"{p}/cfg", "v2", if_match=etag)["etag"]
    with pytest.raises(elastik.PreconditionFailed, match="If-Match"):
        e.put(f"{p}/cfg", "v3", if_match=etag)
    assert e.get(f"{p}/cfg") == b"v2"
    # unquoted ETags are quoted by the SDK
    e.put(f"{p}/cfg", "v4", if_match=new.strip('"'))
    with pytest.raises(elastik.PreconditionFailed):
        e.put(f"{p}/none", "x", if_match=new)


def test_create_only_is_if_none_match_star(e: Elastik, p: str) -> None:
    assert e.put(f"{p}/lock", "mine", create_only=True)["status"] == 201
    with pytest.raises(elastik.PreconditionFailed):
        e.put(f"{p}/lock", "theirs", create_only=True)
    assert e.get(f"{p}/lock") == b"mine"


def test_conditional_argument_misuse(e: Elastik, p: str) -> None:
    with pytest.raises(TypeError, match="create_only"):
        e.put(f"{p}/x", "v", if_none_match=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        e.put(f"{p}/x", "v", create_only=True, if_none_match='"a"')
    with pytest.raises(ValueError, match="range"):
        e.get(f"{p}/x", range=(5, 2))
    assert not e.exists(f"{p}/x")


def test_range_reads(e: Elastik, p: str) -> None:
    e.put(f"{p}/big.bin", b"0123456789")
    assert e.get(f"{p}/big.bin", range=(0, 3)) == b"0123"
    assert e.get(f"{p}/big.bin", range=(8, 100)) == b"89"
    with pytest.raises(elastik.ElastikError) as info:
        e.get(f"{p}/big.bin", range=(50, 60))
    assert info.value.status == 416


# -- cache ---------------------------------------------------------------------------------


def test_get_cached_answers_304_from_cache(core: Core, p: str) -> None:
    rec = RecordingTransport(core.url)
    c = Elastik(core.url, bearer_token=APPROVE, transport=rec)
    c.put(f"{p}/n", "one")
    c.clear_cache()
    assert c.get_cached(f"{p}/n") == b"one"
    assert c.get_cached(f"{p}/n") == b"one"
    assert [s for m, _t, _h, s in rec.calls if m == "GET"] == [200, 304]
    Elastik(core.url, bearer_token=APPROVE).put(f"{p}/n", "two")
    assert c.get_cached(f"{p}/n") == b"two"
    c.clear_cache(f"{p}/n")
    assert c.get_cached(f"{p}/n") == b"two"
    assert rec.calls[-1][2].get("If-None-Match") is None


# -- mapping ergonomics --------------------------------------------------------------------


def test_mapping_protocol(e: Elastik, p: str) -> None:
    e[f"{p}/note"] = "hello"
    assert e[f"{p}/note"] == b"hello"
    assert e[f"/{p}/note"] == e[f"home/{p}/note"] == b"hello"
    assert f"{p}/note" in e and f"{p}/nope" not in e and 5 not in e
    with pytest.raises(KeyError):
        e[f"{p}/nope"]
    with pytest.raises(KeyError):
        del e[f"{p}/nope"]
    e.update({f"{p}/a": b"1", f"{p}/b": b"2"})
    keys = [k for k in e if k.startswith(f"home/{p}/")]
    assert sorted(keys) == [f"home/{p}/a", f"home/{p}/b", f"home/{p}/note"]
    assert len(e) >= 3
    assert e.pop(f"{p}/a") == b"1" and e.pop(f"{p}/a", b"gone") == b"gone"
    assert e.setdefault(f"{p}/s", b"first") == b"first"
    assert e.setdefault(f"{p}/s", b"second") == b"first"
    assert f"home/{p}/b" in list(e.keys())
    items = dict((k, v) for k, v in e.items() if k.startswith(f"home/{p}/"))
    assert items[f"home/{p}/b"] == b"2"
    assert b"hello" in [v for k, v in e.items() if k.startswith(f"home/{p}/")]
    del e[f"{p}/note"]
    assert f"{p}/note" not in e


def test_contains_raises_on_auth_failure_instead_of_lying(core: Core, p: str) -> None:
    gated = Elastik(core.url, bearer_token="wrong")
    assert isinstance(gated.exists(f"{p}/x"), bool)  # reads are public on this core


# -- helpers -------------------------------------------------------------------------------


def test_exists_sizeof_checksum_copy(e: Elastik, p: str) -> None:
    e.put(f"{p}/src", "hello", content_type="text/x-note", cache_control="no-store", who="me")
    assert e.exists(f"{p}/src") and e.sizeof(f"{p}/src") == 5
    assert e.checksum(f"{p}/src") == e.head(f"{p}/src")["etag"]
    assert e.copy(f"{p}/src", f"{p}/dst")["status"] == 201
    meta = e.head(f"{p}/dst")
    assert e.get(f"{p}/dst") == b"hello"
    assert meta["content-type"] == "text/x-note" and meta["cache-control"] == "no-store"
    assert meta["x-meta-who"] == "me"  # type: ignore[typeddict-item]


def test_is_audited_and_verify(e: Elastik, p: str) -> None:
    e.put(f"{p}/durable", "x")
    e.put(f"tmp/{p}/mem", "x")
    assert e.is_audited(f"{p}/durable") is True
    assert e.is_audited(f"tmp/{p}/mem") is False
    assert e.verify(f"{p}/durable") is True
    assert e.verify(f"tmp/{p}/mem") is False
    with pytest.raises(elastik.NotFound):
        e.verify(f"{p}/missing")


def test_diff_and_preview(e: Elastik, p: str) -> None:
    e.put(f"{p}/doc", "line one\nline two\n" + "x" * 200 + "\n")
    d = e.diff(f"{p}/doc", "line one\nline 2\n")
    assert "-line two" in d and "+line 2" in d and d.startswith("---")
    pv = e.preview(f"{p}/doc", width=20, max_lines=3)
    assert pv.splitlines()[0] == "line one" and all(len(x) <= 20 for x in pv.splitlines())
    assert e.preview(f"{p}/doc", max_bytes=4) == "line"
    e.put(f"{p}/empty", b"")
    assert e.preview(f"{p}/empty") == ""


def test_gzip_csv_struct(e: Elastik, p: str) -> None:
    e.put_gzip(f"{p}/log.gz", "hello " * 100)
    assert e.head(f"{p}/log.gz")["content-encoding"] == "gzip"
    assert e.sizeof(f"{p}/log.gz") < 600
    assert e.get_gzip(f"{p}/log.gz") == b"hello " * 100
    rows = [["t", "v"], ["1", "a,b"], ["2", 'q"uote']]
    e.put_csv(f"{p}/table.csv", rows)
    assert e.head(f"{p}/table.csv")["content-type"] == "text/csv"
    assert e.get_csv(f"{p}/table.csv") == rows
    e.put_struct(f"tmp/{p}/s0", ">fI", 1.5, 7)
    assert e.get_struct(f"tmp/{p}/s0", ">fI") == (1.5, 7)


def test_list_paths_and_aliases(e: Elastik, p: str) -> None:
    e.put(f"{p}/a", "1")
    e.put(f"tmp/{p}/b", "2")
    listed = e.list_paths()
    assert f"home/{p}/a" in listed and f"tmp/{p}/b" in listed
    assert e.list_keys() == listed
    with pytest.warns(DeprecationWarning):
        assert e.list_worlds() == listed


def test_put_many_and_get_many(e: Elastik, p: str) -> None:
    items = {f"{p}/k{i}": f"v{i}" for i in range(12)}
    results = e.put_many(items, max_workers=4)
    assert {r["status"] for r in results.values()} == {201}
    got = e.get_many(list(items), max_workers=4)
    assert got == {k: v.encode() for k, v in items.items()}
    with pytest.raises(elastik.NotFound):
        e.get_many([f"{p}/k0", f"{p}/missing"])


def test_open_is_read_only_seekable_and_range_backed(core: Core, p: str) -> None:
    rec = RecordingTransport(core.url)
    c = Elastik(core.url, bearer_token=APPROVE, transport=rec)
    data = bytes(range(200))
    c.put(f"{p}/file", data)
    with c.open(f"{p}/file") as f:
        assert f.readable() and f.seekable() and not f.writable()
        assert f.read(8) == data[:8]
        assert f.seek(100) == 100 and f.tell() == 100
        assert f.read(4) == data[100:104]
        assert f.seek(-3, io.SEEK_END) == 197 and f.read() == data[197:]
        assert f.read(10) == b""
        buf = bytearray(5)
        f.seek(10)
        assert f.readinto(buf) == 5 and bytes(buf) == data[10:15]
    ranges = [h.get("Range") for m, _t, h, _s in rec.calls if m == "GET"]
    assert "bytes=0-7" in ranges and "bytes=100-103" in ranges
    with pytest.raises(ValueError):
        f.read()
    assert io.BufferedReader(c.open(f"{p}/file")).read() == data
    with pytest.raises(ValueError, match="rb"):
        c.open(f"{p}/file", "wb")
    with pytest.raises(elastik.NotFound):
        c.open(f"{p}/missing")


def test_open_notices_a_replaced_world(e: Elastik, p: str) -> None:
    e.put(f"{p}/f", b"a" * 100)
    f = e.open(f"{p}/f")
    f.read(10)
    e.put(f"{p}/f", b"b" * 100)
    with pytest.raises(elastik.WorldChanged):
        f.read(10)


def test_tmp_yields_tmp_path_and_cleans_up(e: Elastik) -> None:
    with e.tmp("scratch-sdk") as path:
        assert path == "tmp/scratch-sdk"
        e.put(path, "working")
        assert e.get(path) == b"working"
    assert not e.exists("tmp/scratch-sdk")
    with e.tmp() as anon:
        assert anon.startswith("tmp/") and len(anon) > 8


def test_request_is_the_raw_escape_hatch(e: Elastik, p: str) -> None:
    r = e.request("OPTIONS", f"{p}/note")
    assert r.status == 204 and "PUT" in r.headers["allow"]
    r = e.request("PATCH", f"{p}/note", b"x")
    assert r.status == 405 and not r.ok
    r = e.request("PUT", f"{p}/note", b"x")
    assert r.created and r.etag


# -- path mapping --------------------------------------------------------------------------


def test_path_mapping_table(e: Elastik, p: str) -> None:
    e.put(f"{p}/n", "1")
    assert e.get(f"/{p}/n") == e.get(f"home/{p}/n") == e.get(f"/home/{p}/n") == b"1"
    e.put(f"tmp/{p}/s", "2")
    assert e.get(f"/tmp/{p}/s") == b"2"
    assert e.checksum(f"tmp/{p}/s").startswith('"sha256-')
    assert (e.get_text("proc/version") or "").startswith("elastik-core ")
    assert f"home/{p}/n" in (e.get_text("/proc/worlds") or "")
    assert e.request("HEAD", f"proc/audit/home/{p}/n/verify").status == 200
    assert e.request("HEAD", f"proc/audit/{p}/n/verify").status == 200
    for bad in ("/proc/unknown", "proc/audit/x", "home", "tmp", "a//b", "a/../b", "a\\b"):
        with pytest.raises(ValueError):
            e.get(bad)


def test_keep_alive_client_has_the_same_contract(core: Core, p: str) -> None:
    with Elastik(core.url, bearer_token=APPROVE, keep_alive=True) as c:
        for i in range(20):
            c.put(f"{p}/k", f"v{i}")
            assert c.get(f"{p}/k") == f"v{i}".encode()
        with pytest.raises(elastik.NotFound):
            c.get(f"{p}/missing")
        assert c.delete(f"{p}/k")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert repr(c).endswith("(keep-alive)>")


@pytest.mark.parametrize(
    "name",
    [
        "a b",
        "100%",
        "a%2Fb",
        "q?x=1",
        "frag#1",
        "plus+semi;eq=",
        "é/ü",
        "🚀",
        "..x",
        ".hidden",
        "x.",
        "a:b@c",
        "tab\u00a0nbsp",
        "[br]{ace}",
        "quote\"'",
    ],
)
def test_tricky_names_round_trip(e: Elastik, p: str, name: str) -> None:
    path = f"{p}/{name}"
    assert e.put(path, name)["status"] == 201
    assert e.get(path) == name.encode()
    assert f"home/{path}" in e.list_paths()
    assert e.ls(p) == [f"home/{p}/{name.split('/')[0]}" + ("/" if "/" in name else "")]


def test_debug_flag_is_accepted_with_a_warning(core: Core) -> None:
    with pytest.warns(UserWarning, match="not implemented"):
        Elastik(core.url, debug=True)
