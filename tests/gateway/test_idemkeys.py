"""Idempotency-Keys of CoAP exchanges: stable across retransmissions, fresh for new messages."""

from __future__ import annotations

import pytest

from gateway.coap.idemkeys import BUCKET_SECONDS, EXCHANGE_LIFETIME, ExchangeKeys

EP = ("127.0.0.1", 40000)


def test_retransmission_across_a_bucket_boundary_keeps_the_first_key() -> None:
    keys = ExchangeKeys()
    first = BUCKET_SECONDS * 10 - 5.0  # 5 s before a bucket boundary
    k1 = keys.key(*EP, 7, b"\x01\x02", first)
    k2 = keys.key(*EP, 7, b"\x01\x02", first + 45.0)  # last retransmission, next bucket
    assert k1 == k2


def test_different_exchanges_get_different_keys() -> None:
    keys = ExchangeKeys()
    now = 1000.0
    base = keys.key(*EP, 7, b"\x01", now)
    assert keys.key(*EP, 8, b"\x01", now) != base  # other MID
    assert keys.key(*EP, 7, b"\x02", now) != base  # other token
    assert keys.key("127.0.0.1", 40001, 7, b"\x01", now) != base  # other port
    assert keys.key("127.0.0.2", 40000, 7, b"\x01", now) != base  # other host


def test_mid_reused_after_the_exchange_lifetime_and_a_bucket_is_a_new_request() -> None:
    keys = ExchangeKeys()
    k1 = keys.key(*EP, 7, b"", 1000.0)
    k2 = keys.key(*EP, 7, b"", 1000.0 + EXCHANGE_LIFETIME + BUCKET_SECONDS)
    assert k1 != k2


def test_table_is_bounded_and_counts_evictions() -> None:
    keys = ExchangeKeys(capacity=100)
    for mid in range(1000):
        keys.key(*EP, mid, b"", 5.0)
    assert len(keys) == 100
    assert keys.evictions == 900


def test_entries_expire_after_the_exchange_lifetime() -> None:
    keys = ExchangeKeys(capacity=1000)
    for mid in range(50):
        keys.key(*EP, mid, b"", 0.0)
    keys.key(*EP, 999, b"", EXCHANGE_LIFETIME + 1.0)
    assert len(keys) == 1
    assert keys.evictions == 0


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ExchangeKeys(capacity=0)
