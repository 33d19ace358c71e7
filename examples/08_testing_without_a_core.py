"""Testing without a core: FakeElastik has the whole client API over an in-memory store.

Run: python examples/08_testing_without_a_core.py
"""

import elastik
from elastik import FakeElastik


def archive_orders(e: elastik.Elastik) -> int:
    """Code under test: move every order to the archive."""
    return e.mv("home/orders", "home/archive/orders", recursive=True)


e = FakeElastik(persist_allow="x-meta-*")
e.put("note", "hello")
assert e.get_text("note") == "hello"
e.put("orders/1", "tea", customer="ann")
e.put("orders/2", "cake")
assert archive_orders(e) == 2
assert e.ls("home/archive/orders") == ["home/archive/orders/1", "home/archive/orders/2"]
assert e.head("home/archive/orders/1").get("x-meta-customer") == "ann"
try:
    e.get("orders/1")
except elastik.NotFound:
    print("moved away")
print(e.tree())
print("ok")
