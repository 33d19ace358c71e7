"""Counters the gateway exports: every drop, every rejection, every request by outcome.

One ``Counters`` per gateway process. Front doors and layers increment named counters;
``snapshot()`` gives a dict (for tests and other components, e.g. the outbox or a metrics
exporter) and ``render()`` the ``/proc``-style text served at CoAP
``/.well-known/gateway/stats``: one ``<name> <value> <kind>`` line per counter, sorted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping


class Counters:
    def __init__(self) -> None:
        self._c: Counter[str] = Counter()
        # Gauges are read when rendered (table sizes), registered by their owners.
        self._gauges: dict[str, Callable[[], int]] = {}
        # Sources give several values at once (e.g. the outbox's stats()), under a prefix.
        self._sources: dict[str, Callable[[], Mapping[str, float]]] = {}

    def inc(self, name: str, n: int = 1) -> None:
        self._c[name] += n

    def get(self, name: str) -> int:
        if name in self._gauges:
            return self._gauges[name]()
        return self._c[name]

    def gauge(self, name: str, read: Callable[[], int]) -> None:
        self._gauges[name] = read

    def source(self, prefix: str, read: Callable[[], Mapping[str, float]]) -> None:
        self._sources[prefix] = read

    def _sourced(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for prefix, read in self._sources.items():
            try:
                values = read()
            except Exception:
                continue
            out.update({f"{prefix}.{k}": v for k, v in values.items()})
        return out

    def snapshot(self) -> dict[str, float]:
        out: dict[str, float] = dict(self._c)
        out.update({k: f() for k, f in self._gauges.items()})
        out.update(self._sourced())
        return out

    def render(self) -> str:
        lines = [f"{k} {v} counter" for k, v in sorted(self._c.items())]
        gauges: dict[str, float] = {k: f() for k, f in self._gauges.items()}
        gauges.update(self._sourced())
        lines += [f"{k} {v} snapshot" for k, v in sorted(gauges.items())]
        return "".join(line + "\n" for line in lines)
