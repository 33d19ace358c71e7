"""Path contracts: a "frontend" writes /home/order/{id}; a worker listening on
/home/order/* answers with /home/receipt/{id}. The only shared contract is the paths.

Run: python examples/02_path_contracts.py
"""

import http.client
import json
import secrets
import socket
import tempfile
import threading

import elastik


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@elastik.listen("/home/order/*")
def on_order(body, path, e):
    order = json.loads(body)
    order_id = path.rsplit("/", 1)[-1]
    e.put_json(f"/home/receipt/{order_id}", {"status": "accepted", "sku": order["sku"]})


def frontend_put(url: str, token: str) -> None:
    """What a browser's fetch() would do: a plain HTTP PUT, no SDK."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(
        "PUT",
        "/home/order/123",
        body=json.dumps({"sku": "tea", "qty": 2}),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    assert conn.getresponse().status in (200, 201)  # 200 when an earlier try created it
    conn.close()


with tempfile.TemporaryDirectory() as data:
    e = elastik.start(key=secrets.token_hex(32), write_token="w", port=free_port(), data=data)
    try:
        # The worker runs until it has handled one order.
        worker = threading.Thread(target=elastik.run, args=(e,), kwargs={"max_events": 1})
        worker.start()
        # last_event_id=0 in run() would also replay an order written before the worker
        # subscribed; here the frontend simply writes until the worker has answered.
        while worker.is_alive():
            frontend_put(e.url, "w")
            worker.join(0.2)
        print("receipt:", e.get_json("/home/receipt/123"))
        assert e.get_json("/home/receipt/123") == {"status": "accepted", "sku": "tea"}
    finally:
        elastik.stop()
print("ok")
