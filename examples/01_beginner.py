"""The beginner surface: start a core, put bytes, get bytes, look at the headers, stop.

Run: python examples/01_beginner.py
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
        key=secrets.token_hex(32),  # the audit-chain HMAC key (>= 32 bytes)
        write_token="write-token",  # ordinary PUT/POST
        port=free_port(),
        data=data,
    )
    try:
        e.put("note", "hello")  # PUT /home/note
        print(e.get("note"))  # b'hello'
        print(e.get_text("note"))  # hello
        print(e.head("note")["etag"])  # "hmac-..." (audited)
        e.post("note", ", world")  # append bytes
        assert e.get("note") == b"hello, world"
        # Module-level calls use the client start() returned.
        elastik.put("greeting", b"hi")
        print(elastik.list_paths())
    finally:
        elastik.stop()
print("ok")
