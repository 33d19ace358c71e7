"""Conditional and partial requests: optimistic updates, create-only, ranges, 304s.

Run: python examples/04_conditionals.py
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
    e = elastik.start(key=secrets.token_hex(32), write_token="w", port=free_port(), data=data)
    try:
        e.put("config", b"v1")
        etag = e.head("config")["etag"]
        e.put("config", b"v2", if_match=etag)  # optimistic update: succeeds
        try:
            e.put("config", b"v3", if_match=etag)  # same (now stale) ETag: refused
        except elastik.PreconditionFailed as exc:
            print("stale write refused:", exc.text)

        e.put("lock", b"mine", create_only=True)  # If-None-Match: *
        try:
            e.put("lock", b"theirs", create_only=True)
        except elastik.PreconditionFailed:
            print("lock already taken")

        e.put("big.bin", bytes(range(256)) * 8)
        chunk = e.get("big.bin", range=(0, 1023))  # Range: bytes=0-1023
        print("first KiB:", len(chunk))

        current = e.checksum("config")
        print("304 gives None:", e.get("config", if_none_match=current))
        print("cached:", e.get_cached("config"), e.get_cached("config"))

        r = e.request("OPTIONS", "note")  # raw escape hatch
        print(r.status, r.headers["allow"])
    finally:
        elastik.stop()
print("ok")
