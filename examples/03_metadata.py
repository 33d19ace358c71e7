"""Metadata: named representation headers, X-Meta-* keyword arguments, headers=, and the
refusal of wire-level headers.

Run: python examples/03_metadata.py
"""

import secrets
import socket
import tempfile

import elastik


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


with tempfile.TemporaryDirectory() as data:
    e = elastik.start(
        key=secrets.token_hex(32),
        write_token="w",
        port=free_port(),
        data=data,
        env={"ELASTIK_PERSIST_HEADERS": "x-meta-*"},  # let X-Meta-* round-trip
    )
    try:
        e.put(
            "report.pdf",
            b"%PDF-1.7 ...",
            content_type="application/pdf",
            content_disposition='attachment; filename="report.pdf"',
            cache_control="max-age=60",
        )
        meta = e.head("report.pdf")
        print(meta["content-type"], "|", meta["content-disposition"], "|", meta["cache-control"])

        e.put("note", "hello", project="demo")  # sent as X-Meta-Project: demo
        assert e.head("note")["x-meta-project"] == "demo"

        e.put(
            "logo.png",
            b"\x89PNG",
            content_type="image/png",
            headers={"Access-Control-Allow-Origin": "*"},
        )
        assert e.head("logo.png")["access-control-allow-origin"] == "*"

        try:
            e.put("x", "y", headers={"Content-Length": "999"})
        except ValueError as exc:
            print("refused:", exc)
        print("etag:", e.checksum("note"), "audited:", e.is_audited("note"))
    finally:
        elastik.stop()
print("ok")
