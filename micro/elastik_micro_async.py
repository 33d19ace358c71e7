# elastik_micro_async: AsyncClient, the asyncio flavour of elastik_micro.Client.
#
# Optional companion module: copy it next to elastik_micro.py only on boards that run
# several asyncio tasks. It reuses the sync client's sans-IO steps (_prep, _begin, _due,
# _feed, _done, the Block2 _g* steps) and only replaces the blocking wait.
import asyncio

from elastik_micro import Client

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_POST = const(2)  # request codes, as in elastik_micro (its const names are not exported)
_PUT = const(3)
_DELETE = const(4)
# How often AsyncClient looks at its non-blocking socket while waiting: short against
# ACK_TIMEOUT (2 s by default), long enough that an idle board is not busy-polling.
_POLL_MS = const(10)


class AsyncClient(Client):
    """Client whose put/post/get/delete are coroutines, for boards running several asyncio
    tasks. Requests from several tasks on one client take turns (one buffer)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._sock.setblocking(False)
        self._lock = asyncio.Lock()
        self._sleep = asyncio.sleep

    async def _axfer(self, n):
        self._begin(n)
        while True:
            ms = self._due()
            d = self._recv()
            if not d:
                await self._sleep(min(ms, _POLL_MS) / 1000)
            elif self._feed(d):
                return

    async def _awrite(self, code, path, value, cf):
        async with self._lock:
            n = self._prep(code, path, value, cf)
            if not self._con:
                self._send(n)
                return None
            await self._axfer(n)
            return self._done()

    async def put(self, path, value, content_format=0):
        return await self._awrite(_PUT, path, value, content_format)

    async def post(self, path, value):
        return await self._awrite(_POST, path, value, None)

    async def delete(self, path):
        return await self._awrite(_DELETE, path, b"", None)

    async def get(self, path, max_bytes=4096):
        async with self._lock:
            self._gstart(path, max_bytes)
            while True:
                await self._axfer(self._gnext())
                r = self._gfeed()
                if r is not None:
                    return r
