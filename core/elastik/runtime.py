"""Process-wide settings for the long-running services (the core and the gateway).

Garbage-collector thresholds: CPython's defaults (700, 10, 10) run the cycle collector
every few hundred net allocations. A server allocates a few hundred objects per request
and keeps large tables alive (the gateway's exchange cache, the core's memory worlds and
caches), so under load the collector ran every few requests and re-scanned those tables:
about 18 % of the gateway's CPU and 10 % of the core's on memory writes (measured with
bench/gateway_coap.py at 64 outstanding and bench/core_vs_reference.py; see
docs/benchmarks.md). Reference counting frees almost everything at once; the collector only
has to find cycles, so running it about 15 times less often costs a few MB of garbage at
most and no correctness.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (10_000, 20, 20)

__all__ = ["GC_THRESHOLDS", "tune_gc"]


def tune_gc() -> None:
    """Call once start-up is done: freeze what start-up allocated (modules, configuration;
    never scanned again) and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
