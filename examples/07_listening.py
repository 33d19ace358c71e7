"""Listening for changes: handlers get the body first and ask for context by name;
actions (Reply, MoveTo, Archive, Drop) are optional; lifecycle hooks run around run().

Run: python examples/07_listening.py
"""

import secrets
import socket
import tempfile

import elastik
from elastik import Archive, Reply


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@elastik.listen("/home/inbox/*")
def on_inbox(body, path, meta, e):
    if b"urgent" in body:
        e.put("/home/alerts/latest", body)  # plain side effects are fine
    return Archive("/home/archive/")  # ...and so is an action


@elastik.listen("/home/ping")
def on_ping(body, etag, method):
    return Reply("/home/pong", f"{method} {etag[:12]}")


@elastik.on_startup
def ready(e):
    print("worker up at", e.url)


@elastik.on_shutdown
def gone():
    print("worker down")


with tempfile.TemporaryDirectory() as data:
    e = elastik.start(
        key=secrets.token_hex(32),
        write_token="w",
        approve_token="a",
        port=free_port(),
        data=data,
        env={"ELASTIK_PERSIST_HEADERS": "x-meta-*"},
    )
    try:
        e.put("/home/inbox/1", "urgent: the tea is cold", sender="ann")
        e.put("/home/inbox/2", "fyi")
        e.put("/home/ping", "?")
        # Replay what the core buffered since it started (Last-Event-ID 0), handle three
        # events, return. A long-running worker calls elastik.run(e) and never returns.
        elastik.run(e, max_events=3, last_event_id=0)
        print("alert:", e.get_text("/home/alerts/latest"))
        print("archived:", e.ls("home/archive"))
        print("pong:", e.get_text("/home/pong"))
        assert not e.exists("/home/inbox/1")
    finally:
        elastik.stop()
print("ok")
