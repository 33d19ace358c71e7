"""The must-show errors: each gives the documented exception with a clear message."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import elastik
import pytest
from elastik import Elastik

from tests.sdk.conftest import APPROVE, Core, our_core_available
from tests.support.servers import Proc, free_port, ours, reference


def test_wrong_token_is_unauthorized_with_the_core_reason(core: Core, p: str) -> None:
    e = Elastik(core.url, bearer_token="not-the-token")
    with pytest.raises(elastik.Unauthorized) as info:
        e.put(f"{p}/x", "v")
    err = info.value
    assert err.status == 401 and err.method == "PUT" and err.path == f"/home/{p}/x"
    assert f"elastik 401 PUT /home/{p}/x: auth required: write requires token" in str(err)
    assert "not-the-token" not in str(err)  # no secrets in messages
    assert isinstance(err, elastik.ElastikError)


def test_missing_path_is_not_found(core: Core, p: str) -> None:
    with pytest.raises(elastik.NotFound, match=rf"404 GET /home/{p}/gone: world not found"):
        Elastik(core.url).get(f"{p}/gone")


def test_failed_precondition_is_precondition_failed(core: Core, p: str) -> None:
    e = Elastik(core.url, bearer_token=APPROVE)
    e.put(f"{p}/x", "v")
    with pytest.raises(elastik.PreconditionFailed, match=r"412 PUT .*If-None-Match matched"):
        e.put(f"{p}/x", "w", create_only=True)


def test_unreachable_server_is_unreachable_and_a_connection_error() -> None:
    port = free_port()  # nothing listens there
    e = Elastik(f"http://127.0.0.1:{port}", bearer_token="t")
    for client in (e, Elastik(e.url, keep_alive=True)):
        with pytest.raises(elastik.Unreachable) as info:
            client.get("note")
        assert isinstance(info.value, ConnectionError) and info.value.status == 0
        assert f"cannot reach http://127.0.0.1:{port} (GET /home/note)" in str(info.value)
        assert "refused" in str(info.value).lower()


def test_bad_url_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="http://"):
        Elastik("ftp://example.com")


def test_oversized_coap_payload_is_value_error_before_send() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(0.3)
        port = sink.getsockname()[1]
        c = elastik.CoapClient("127.0.0.1", port, token="w")
        with pytest.raises(ValueError, match="1152-byte datagram limit; use HTTP"):
            c.put("home/sensor/big", b"x" * 1200)
        with pytest.raises(TimeoutError):
            sink.recvfrom(2048)  # nothing was sent


@pytest.fixture(scope="module", params=["ours", "reference"])
def limited(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    if request.param == "ours" and not our_core_available():
        pytest.skip("our core is not written yet")
    make = ours if request.param == "ours" else reference
    work: Path = tmp_path_factory.mktemp(f"limited-{request.param}")
    proc = make(
        work,
        read_token="r",
        extra={"ELASTIK_MAX_WORLD_BYTES": "1000", "ELASTIK_MAX_STORAGE_BYTES": "1500"},
    )
    proc.start()
    yield proc
    proc.stop()


def test_payload_too_large_and_insufficient_storage(limited: Proc) -> None:
    e = Elastik(limited.url, bearer_token=APPROVE)
    with pytest.raises(elastik.PayloadTooLarge) as big:
        e.put("big", b"x" * 1001)
    assert big.value.status == 413
    e.put("a", b"x" * 1000)
    with pytest.raises(elastik.InsufficientStorage, match="507 PUT /home/b: storage quota") as full:
        e.put("b", b"x" * 900)
    assert isinstance(full.value, elastik.ServerError)
    assert full.value.headers["x-storage-quota"] == "1500"


def test_read_token_gates_reads_and_listen(limited: Proc) -> None:
    stranger = Elastik(limited.url, bearer_token="nope")
    with pytest.raises(elastik.Unauthorized, match="read requires read token"):
        stranger.get("anything")
    with pytest.raises(elastik.Unauthorized, match="read requires read token"):
        stranger.list_paths()
    with pytest.raises(elastik.Unauthorized, match="listen requires read token"):
        next(stranger.listen("*"))
    with pytest.raises(elastik.Unauthorized):
        "anything" in stranger  # noqa: B015 - a 401 is not "missing"
    reader = Elastik(limited.url, bearer_token="r")
    assert reader.exists("never-written") is False
