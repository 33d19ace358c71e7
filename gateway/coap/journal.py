"""The on-disk journal of first sightings of CoAP exchanges (the I/O half of idemkeys.py).

An exchange's Idempotency-Key holds the time the gateway first saw it. A gateway killed with
a write in flight and started again must give the device's retransmission the same key, so
the core applies the write once: it reads that time back from here.

Two files in the state directory, ``exchanges.0`` and ``exchanges.1``: a sighting goes to
file ``(time // ROTATE_S) % 2``, which is emptied when its turn comes round again, so the
two always hold at least the last ROTATE_S seconds -- longer than MAX_TRANSMIT_SPAN, the
time in which a device retransmits. One line per new exchange, written with one
``write()`` before the request goes to the core: what a killed process wrote, the kernel
has. No fsync: after a machine crash the gateway is back long after any retransmission.
A journal that cannot be written is counted and logged once; keys then only survive while
the process runs (as before it existed), nothing else fails.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .idemkeys import Exchange

log = logging.getLogger("gateway.coap")

ROTATE_S = 60
FILES = ("exchanges.0", "exchanges.1")


class ExchangeJournal:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.errors = 0
        self._period: int | None = None
        self._fd: int | None = None

    def load(self) -> list[tuple[Exchange, int]]:
        """Every sighting in the files (the caller keeps the recent ones); torn or foreign
        lines are skipped."""
        out: list[tuple[Exchange, int]] = []
        for name in FILES:
            try:
                data = (self.dir / name).read_bytes()
            except FileNotFoundError:
                continue
            except OSError:
                self._failed("read")
                continue
            for line in data.split(b"\n"):
                parts = line.split(b" ")
                if len(parts) != 5:
                    continue
                try:
                    first = int(parts[0])
                    host = bytes.fromhex(parts[1].decode("ascii")).decode("utf-8")
                    port, mid = int(parts[2]), int(parts[3])
                    token = bytes.fromhex(parts[4].decode("ascii"))
                except (ValueError, UnicodeDecodeError):
                    continue
                out.append(((host, port, mid, token), first))
        return out

    def record(self, exchange: Exchange, first_ms: int) -> None:
        period = first_ms // (ROTATE_S * 1000)
        if period != self._period:
            self._rotate(period)
        if self._fd is None:
            return
        host, port, mid, token = exchange
        line = f"{first_ms} {host.encode().hex()} {port} {mid} {token.hex()}\n"
        try:
            os.write(self._fd, line.encode("ascii"))
        except OSError:
            self._failed("write")

    def _rotate(self, period: int) -> None:
        self.close()
        self._period = period
        path = self.dir / FILES[period % 2]
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        except OSError:
            self._failed("open")

    def _failed(self, what: str) -> None:
        if self.errors == 0:
            log.warning(
                "exchange journal in %s: %s failed; CoAP retransmissions that reach a"
                " restarted gateway may be applied twice",
                self.dir,
                what,
            )
        self.errors += 1

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
