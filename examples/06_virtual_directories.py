"""Virtual directories over the flat key space: ls, tree, du, mv, rm, glob.

Run: python examples/06_virtual_directories.py
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
        key=secrets.token_hex(32), write_token="w", approve_token="a", port=free_port(), data=data
    )
    try:
        e.put_many(
            {
                "home/sensor/kitchen/temp": "21.5",
                "home/sensor/kitchen/hum": "40",
                "home/sensor/hall/temp": "19.0",
                "home/draft": "v1",
            }
        )
        print(e.ls("home/sensor"))  # immediate children; virtual dirs end in /
        print(e.ls("home/sensor", depth=-1))  # all descendants
        print(e.tree("home"))
        print(e.du("home/sensor"))
        e.mv("home/draft", "home/final")  # copy + delete
        try:
            e.mv("home/final", "home/sensor/hall/temp")
        except FileExistsError as exc:
            print("refused:", exc)
        print([ref.path for ref in (e / "home").rglob("temp")])
        try:
            e.rm("home", recursive=True)
        except ValueError as exc:
            print("guarded:", exc)
        print("deleted:", e.rm("home/sensor", recursive=True))
        print(e.tree("home"))
    finally:
        elastik.stop()
print("ok")
