"""The CoAP/UDP helper: one datagram in, one out. The core opens its CoAP port when
started with ELASTIK_COAP_PORT; the token travels in CoAP option 65001.

Run: python examples/09_coap.py
"""

import secrets
import socket
import subprocess
import sys
import tempfile
import time

import elastik
from elastik import CoapClient


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


coap_port = free_port(socket.SOCK_DGRAM)
with tempfile.TemporaryDirectory() as data:
    e = elastik.start(
        key=secrets.token_hex(32),
        write_token="write-token",
        port=free_port(),
        data=data,
        env={"ELASTIK_COAP_PORT": str(coap_port)},
    )
    try:
        c = CoapClient("127.0.0.1", coap_port, token="write-token")
        for _ in range(100):  # the CoAP front door may open a moment after HTTP
            try:
                c.get("home/sensor/temp")
                break
            except TimeoutError:
                time.sleep(0.05)
        c.put("home/sensor/temp", "23.5").raise_for_status()
        print(c.get("home/sensor/temp").payload)  # b'23.5'
        print("over HTTP:", e.get_text("sensor/temp"))

        # The same from a shell: python -m elastik coap put|get HOST PORT PATH ...
        cli = [sys.executable, "-m", "elastik", "coap"]
        subprocess.run(
            [
                *cli,
                "put",
                "127.0.0.1",
                str(coap_port),
                "home/sensor/hum",
                "40",
                "--token",
                "write-token",
            ],
            check=True,
        )
        out = subprocess.run(
            [*cli, "get", "127.0.0.1", str(coap_port), "home/sensor/hum"],
            check=True,
            capture_output=True,
        )
        print("cli get:", out.stdout)

        try:
            c.put("home/sensor/blob", b"x" * 2000)  # bigger than one datagram
        except ValueError as exc:
            print("refused before sending:", exc)
        denied = CoapClient("127.0.0.1", coap_port, token="wrong").put("home/x", "1")
        print("wrong token:", denied.status)
    finally:
        elastik.stop()
print("ok")
