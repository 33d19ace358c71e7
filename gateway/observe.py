"""Change feed for Observe: the core's ``/listen`` SSE stream, shared per (world, credentials).

A CoAP observation registers a ``Watch`` on its world. The hub keeps one upstream SSE
stream per (world path, authorization header) no matter how many devices observe it, and
wakes every watch of that world on each ``put``/``post``/``delete`` event. After a stream
breaks it reconnects with ``Last-Event-ID`` and wakes every watch anyway (something may
have changed while it was down); watchers re-read the world and send a notification only
when its ETag changed, so spurious wake-ups cost one GET and no datagram.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from .core_client import CoreClient, ListenRefused
from .counters import Counters
from .flow import UpstreamUnavailable

log = logging.getLogger("gateway.observe")

# Reconnect back-off after a broken /listen stream, seconds (doubling up to the max).
RECONNECT_MIN = 0.2
RECONNECT_MAX = 5.0


class Watch:
    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.failed_status: int | None = None  # the core refused the stream (e.g. 401)

    def wake(self) -> None:
        self.changed.set()

    async def wait(self) -> None:
        await self.changed.wait()
        self.changed.clear()


class _Stream:
    def __init__(self, key: tuple[str, str], world: str, headers: Mapping[str, str]) -> None:
        self.key = key
        self.world = world
        self.headers = dict(headers)
        self.watches: set[Watch] = set()
        self.open = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class ObserveHub:
    def __init__(self, core: CoreClient, counters: Counters) -> None:
        self.core = core
        self.counters = counters
        self._streams: dict[tuple[str, str], _Stream] = {}
        counters.gauge("observe_streams", lambda: len(self._streams))

    def __len__(self) -> int:
        return len(self._streams)

    @contextlib.asynccontextmanager
    async def watch(
        self, world: str, headers: Mapping[str, str], *, open_timeout: float = 5.0
    ) -> AsyncIterator[Watch]:
        """Register a watch on ``world`` (canonical, no leading slash) and wait until the
        upstream stream is open, so no change after this returns can be missed."""
        key = (world, headers.get("authorization", ""))
        stream = self._streams.get(key)
        if stream is None:
            stream = _Stream(key, world, headers)
            self._streams[key] = stream
            stream.task = asyncio.create_task(self._run(stream), name=f"listen {world}")
        w = Watch()
        stream.watches.add(w)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.open.wait(), open_timeout)
            yield w
        finally:
            stream.watches.discard(w)
            if not stream.watches and self._streams.get(key) is stream:
                del self._streams[key]
                if stream.task is not None:
                    stream.task.cancel()

    async def _run(self, stream: _Stream) -> None:
        delay = RECONNECT_MIN
        last_id: str | None = None
        while True:
            try:
                async for ev in self.core.listen(stream.world, stream.headers, last_id):
                    if ev.event == "_open":
                        if stream.open.is_set():
                            # Reconnected: anything may have changed meanwhile.
                            for w in list(stream.watches):
                                w.wake()
                        stream.open.set()
                        delay = RECONNECT_MIN
                        continue
                    if ev.id is not None:
                        last_id = ev.id
                    path = ev.fields.get("path", "").lstrip("/")
                    if ev.event == "lag" or path == stream.world:
                        self.counters.inc("observe_events")
                        for w in list(stream.watches):
                            w.wake()
            except asyncio.CancelledError:
                raise
            except ListenRefused as exc:
                self.counters.inc("observe_stream_refused")
                # Dead stream: later watchers must start a fresh one, not join this.
                if self._streams.get(stream.key) is stream:
                    del self._streams[stream.key]
                for w in list(stream.watches):
                    w.failed_status = exc.status
                    w.wake()
                stream.open.set()
                return
            except UpstreamUnavailable:
                self.counters.inc("observe_stream_reconnects")
            except Exception:
                self.counters.inc("observe_stream_errors")
                log.exception("listen stream for an observed world failed")
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX, delay * 2)

    async def close(self) -> None:
        tasks = [s.task for s in self._streams.values() if s.task is not None]
        self._streams.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
