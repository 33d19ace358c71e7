"""Idempotency-Keys of CoAP exchanges: stable across retransmissions (and across a restart,
through the journal), fresh for new messages, and sorted by time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.coap import journal as journal_mod
from gateway.coap.idemkeys import (
    EXCHANGE_LIFETIME,
    MAX_TRANSMIT_SPAN,
    ExchangeKeys,
)
from gateway.coap.journal import ExchangeJournal

EP = ("127.0.0.1", 40000)


def test_retransmissions_keep_the_first_key() -> None:
    keys = ExchangeKeys()
    first = 6000.0
    k1 = keys.key(*EP, 7, b"\x01\x02", first)
    assert keys.key(*EP, 7, b"\x01\x02", first + MAX_TRANSMIT_SPAN) == k1
    assert keys.key(*EP, 7, b"\x01\x02", first + EXCHANGE_LIFETIME - 1) == k1


def test_different_exchanges_get_different_keys() -> None:
    keys = ExchangeKeys()
    now = 1000.0
    base = keys.key(*EP, 7, b"\x01", now)
    assert keys.key(*EP, 8, b"\x01", now) != base  # other MID
    assert keys.key(*EP, 7, b"\x02", now) != base  # other token
    assert keys.key("127.0.0.1", 40001, 7, b"\x01", now) != base  # other port
    assert keys.key("127.0.0.2", 40000, 7, b"\x01", now) != base  # other host


def test_mid_reused_after_the_exchange_lifetime_is_a_new_request() -> None:
    keys = ExchangeKeys()
    k1 = keys.key(*EP, 7, b"", 1000.0)
    k2 = keys.key(*EP, 7, b"", 1000.0 + EXCHANGE_LIFETIME + 1)
    assert k1 != k2


def test_keys_sort_in_the_order_exchanges_were_first_seen() -> None:
    keys = ExchangeKeys()
    made = [keys.key(*EP, mid, b"\x09", 1_763_800_000.0 + mid * 0.0013) for mid in range(500)]
    assert made == sorted(made)
    assert all(len(k) <= 255 for k in made)  # the core's limit


def test_recent_exchanges_are_kept_past_the_soft_capacity() -> None:
    keys = ExchangeKeys(capacity=100, hard_capacity=400)
    first = keys.key(*EP, 0, b"", 5.0)
    for mid in range(1, 300):  # all within the transmit span: nothing may go yet
        keys.key(*EP, mid, b"", 5.0 + mid * 0.01)
    assert len(keys) == 300 and keys.evictions == 0
    assert keys.key(*EP, 0, b"", 40.0) == first  # a retransmission still maps to its key
    for mid in range(300, 1000):  # past the hard bound the oldest go regardless
        keys.key(*EP, mid, b"", 8.0)
    assert len(keys) == 400 and keys.evictions == 600
    keys.key(*EP, 5000, b"", 8.0 + MAX_TRANSMIT_SPAN + 1)  # now all are past the span
    assert len(keys) == 100


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


# -- the journal: a restarted gateway gives a retransmission its first key -------------------


def restarted(directory: Path, now: float) -> ExchangeKeys:
    journal = ExchangeJournal(directory)
    keys = ExchangeKeys(on_new=journal.record)
    keys.restore(journal.load(), now)
    return keys


def test_a_restarted_gateway_gives_a_retransmission_its_first_key(tmp_path: Path) -> None:
    journal = ExchangeJournal(tmp_path)
    keys = ExchangeKeys(on_new=journal.record)
    t0 = 1_763_800_000.25
    odd_host = ("fe80::1%eth0 x", 5683)  # whatever the remote says, spaces included
    k1 = keys.key(*EP, 7, b"\x01\x02", t0)
    k2 = keys.key(*odd_host, 65535, b"", t0 + 1)
    # killed here: the journal is all that is left
    again = restarted(tmp_path, t0 + 30)
    assert again.key(*EP, 7, b"\x01\x02", t0 + 30) == k1
    assert again.key(*odd_host, 65535, b"", t0 + 31) == k2
    assert again.key(*EP, 8, b"\x01\x02", t0 + 30) != k1  # a new exchange stays new


def test_the_journal_keeps_at_least_the_last_rotation_and_drops_older(tmp_path: Path) -> None:
    journal = ExchangeJournal(tmp_path)
    keys = ExchangeKeys(on_new=journal.record)
    start = 1_763_800_020.0
    old = keys.key(*EP, 1, b"", start)
    recent = keys.key(*EP, 2, b"", start + journal_mod.ROTATE_S * 2 + 1)  # file 0 reused
    later = start + journal_mod.ROTATE_S * 2 + 2
    again = restarted(tmp_path, later)
    assert again.key(*EP, 2, b"", later) == recent
    assert again.key(*EP, 1, b"", later) != old  # its file was emptied on rotation
    files = [tmp_path / name for name in journal_mod.FILES if (tmp_path / name).exists()]
    assert len(files) == 1 and os.path.getsize(files[0]) < 100  # one line: the recent one


def test_torn_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    journal = ExchangeJournal(tmp_path)
    keys = ExchangeKeys(on_new=journal.record)
    t0 = 1_763_800_000.0
    k = keys.key(*EP, 3, b"\xaa", t0)
    journal.close()
    with open(tmp_path / journal_mod.FILES[int(t0 // journal_mod.ROTATE_S) % 2], "ab") as f:
        f.write(b"garbage line\n12 zz 1 2 00\n1763800000999 3132")  # torn at the end
    again = restarted(tmp_path, t0 + 10)
    assert again.key(*EP, 3, b"\xaa", t0 + 10) == k
    assert len(again) == 1  # only the sighting above: the garbage added nothing


def test_an_unwritable_journal_is_counted_and_keys_still_work(tmp_path: Path) -> None:
    missing = tmp_path / "gone"  # never created: open() fails
    journal = ExchangeJournal(missing)
    keys = ExchangeKeys(on_new=journal.record)
    k = keys.key(*EP, 1, b"", 100.0)
    assert keys.key(*EP, 1, b"", 101.0) == k
    assert journal.errors >= 1
    assert journal.load() == []


def test_outbox_keys_sort_by_time_and_do_not_repeat() -> None:
    import time

    from gateway.forwarder import _new_key

    first = _new_key()
    time.sleep(0.002)
    later = [_new_key() for _ in range(1000)]
    assert all(first < k for k in later)
    assert len(set(later)) == 1000
