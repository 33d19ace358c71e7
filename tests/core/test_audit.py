"""The audit chain as pure functions: §14.4 HMAC, §14.5 meta_sha256, §14.7 walk, D3 state."""

from __future__ import annotations

import hashlib

from elastik.server import audit

KEY = b"ab" * 32
FORM = "application/x-www-form-urlencoded"


def _put_event(
    eid: int, prev: str, body: bytes, ct: str = FORM, headers=(), key: bytes = KEY
) -> audit.Event:
    sha = hashlib.sha256(body).hexdigest()
    meta = audit.meta_sha256(ct, headers)
    mac = audit.event_hmac(key, prev, "put", "home/note", sha, len(body), ct, meta)
    return audit.Event(eid, "put", "home/note", sha, len(body), ct, meta, mac, prev, headers)


def test_worked_example_hmac_matches_protocol():
    ev = _put_event(1, "", b"hello")
    assert ev.hmac == "03907046cda1580d6af39876b32e585214f6bbbbf6e1c93f3bd8d6bd37636e93"
    assert ev.body_sha256.startswith("2cf24d") and ev.body_sha256.endswith("9824")
    assert ev.meta_sha256.startswith("a386d0") and ev.meta_sha256.endswith("7222")


def test_hmac_message_is_length_prefixed_fields_in_order():
    msg = audit.hmac_message("", "put", "home/é", "s" * 64, 5, "text/plain", "m" * 64)
    assert msg.startswith(b"prev\x000\x00\x00type\x003\x00put\x00target\x007\x00home/\xc3\xa9\x00")
    assert b"size\x001\x005\x00content-type\x0010\x00text/plain\x00" in msg
    assert msg.endswith(b"meta-sha256\x0064\x00" + b"m" * 64 + b"\x00")


def test_meta_sha256_sorts_headers_by_name():
    a = audit.meta_sha256("t", [("x-meta-a", "1"), ("cache-control", "no")])
    b = audit.meta_sha256("t", [("cache-control", "no"), ("x-meta-a", "1")])
    want = hashlib.sha256(b"content-type\x00t\x00cache-control\x00no\x00x-meta-a\x001\x00")
    assert a == b == want.hexdigest()


def test_delete_meta_constant_matches_protocol():
    assert audit.DELETE_META_SHA256 == (
        "73cef1995ad42da4128abdc33ae53908459031537f1f980a06e0232386272a3e"
    )
    assert audit.meta_sha256("", ()) == audit.DELETE_META_SHA256


def _chain(n: int) -> list[audit.Event]:
    out: list[audit.Event] = []
    prev = ""
    for i in range(n):
        ev = _put_event(i + 1, prev, b"v%d" % i)
        out.append(ev)
        prev = ev.hmac
    return out


def test_valid_chain_reports_genesis_latest_and_count():
    events = _chain(3)
    brk, walker = audit.verify_chain(KEY, events)
    assert brk is None
    assert walker.count == 3
    assert walker.first is events[0] and walker.last is events[2]


def test_zero_events_fail_at_index_zero():
    brk, _ = audit.verify_chain(KEY, [])
    assert brk == audit.Break("0", "at-least-one-event", "no-events")


def test_broken_link_names_previous_and_stored_prev():
    events = _chain(3)
    bad = events[2].__class__(**{**_asdict(events[2]), "prev_hmac": "f" * 64})
    brk, _ = audit.verify_chain(KEY, [events[0], events[1], bad])
    assert brk == audit.Break("2", f"hmac-{events[1].hmac}", f"hmac-{'f' * 64}")


def test_tampered_meta_is_rule_b():
    events = _chain(2)
    bad = audit.Event(**{**_asdict(events[1]), "content_type": "text/html"})
    brk, _ = audit.verify_chain(KEY, [events[0], bad])
    recomputed = audit.meta_sha256("text/html", ())
    assert brk == audit.Break(
        "1", f"meta-sha256-{recomputed}", f"meta-sha256-{events[1].meta_sha256}"
    )


def test_tampered_field_covered_by_hmac_is_rule_c():
    events = _chain(2)
    bad = audit.Event(**{**_asdict(events[1]), "size": 999})
    brk, _ = audit.verify_chain(KEY, [events[0], bad])
    assert brk is not None and brk.at == "1"
    assert brk.expected == "hmac-" + bad.recomputed_hmac(KEY)
    assert brk.actual == "hmac-" + events[1].hmac


def test_wrong_key_fails_first_event_rule_c():
    brk, _ = audit.verify_chain(b"x" * 32, _chain(2))
    assert brk is not None and brk.at == "0" and brk.expected.startswith("hmac-")


def test_break_message_is_the_startup_text():
    msg = audit.Break("3", "hmac-a", "hmac-b").message("home/x")
    assert msg == (
        "build Engine failed: audit chain verification failed for home/x: "
        "audit chain broken at event 3: expected hmac-a, actual hmac-b"
    )


def test_state_check_names_the_field():
    ev = _put_event(1, "", b"hello", "text/plain", (("cache-control", "x"),))
    hdrs = (("cache-control", "x"),)
    assert audit.check_state(ev, b"hello", "text/plain", hdrs) is None
    brk = audit.check_state(ev, b"HELLO", "text/plain", hdrs)
    assert brk is not None and brk.at == "state"
    assert brk.expected == "body-sha256-" + ev.body_sha256
    assert brk.actual == "body-sha256-" + hashlib.sha256(b"HELLO").hexdigest()
    brk = audit.check_state(ev, b"hello", "text/html", hdrs)
    assert brk == audit.Break("state", "content-type-text/plain", "content-type-text/html")
    brk = audit.check_state(ev, b"hello", "text/plain", ())
    assert brk is not None and brk.expected == "meta-sha256-" + ev.meta_sha256


def test_state_check_of_ledger_expects_empty_creation_state():
    assert audit.check_state(None, b"", "application/octet-stream", ()) is None
    brk = audit.check_state(None, b"x", "application/octet-stream", ())
    assert brk is not None and brk.expected == "body-sha256-" + hashlib.sha256(b"").hexdigest()


def test_key_check_value_depends_on_key():
    assert audit.key_check_value(KEY) != audit.key_check_value(b"cd" * 32)
    assert audit.key_check_value(KEY) == audit.key_check_value(bytes(KEY))


def _asdict(ev: audit.Event) -> dict:
    return {name: getattr(ev, name) for name in audit.Event.__slots__}
