"""Python ergonomics: the mapping protocol, helpers, codecs, open(), WorldRef, tmp(),
concurrent get_many/put_many, and the error classes.

Run: python examples/05_ergonomics.py
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
        approve_token="a",  # DELETE needs the approve token
        port=free_port(),
        data=data,
    )
    try:
        e["note"] = "hello"  # PUT /home/note
        assert e["note"] == b"hello" and "note" in e and e.exists("note")
        assert e.sizeof("note") == 5
        e.copy("note", "note-copy")
        del e["note"]
        e.update({"a": b"1", "b": b"2"})
        print("keys:", sorted(e.keys()))
        print("pop:", e.pop("a"), "setdefault:", e.setdefault("c", b"3"))

        print("audited:", e.is_audited("b"), "verified:", e.verify("b"))
        print(e.diff("note-copy", "hello, world\n"))
        e.put("poem", "line one\nline two\n" + "long " * 40)
        print(e.preview("poem", width=30, max_lines=3))

        e.put_gzip("log.gz", "hello " * 100)
        assert e.get_gzip("log.gz") == b"hello " * 100
        e.put_csv("table.csv", [["t", "v"], ["1", "20.5"]])
        print(e.get_csv("table.csv"))
        e.put_struct("dev/s0", ">ff", 1.0, 2.0)
        print(e.get_struct("dev/s0", ">ff"))

        e.put_many({f"bulk/{i}": str(i) for i in range(8)})
        print(e.get_many([f"bulk/{i}" for i in range(3)]))

        e.put("report.pdf", b"%PDF" + bytes(2000))
        with e.open("report.pdf") as f:  # Range-backed, read-only
            header = f.read(4)
            f.seek(1024)
            chunk = f.read(16)
        print(header, len(chunk))

        report = e / "home" / "reports" / "q1"
        report.write("revenue up")
        print(report.read_text(), report.stat()["etag"][:12])
        for child in (e / "home" / "reports").iterdir():
            print(child.name, child.suffix)

        with e.tmp("scratch") as path:
            e.put(path, "working...")
        assert not e.exists("tmp/scratch")

        try:
            e.get("missing")
        except elastik.NotFound as exc:
            print("not there:", exc)
        print(elastik.__version__)
        elastik.show_config()
    finally:
        elastik.stop()
print("ok")
