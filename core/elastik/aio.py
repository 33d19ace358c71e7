"""Eager coroutine start for asyncio on Python 3.11 (3.12 has ``eager_task_factory``).

A request handler usually finishes without ever waiting (a read from memory, a refusal) or
waits once (for a write to commit). ``start_eager`` runs the coroutine's first step right
away, in the caller's callback: a coroutine that finishes needs no Task, no trip through
the event loop's ready queue and no done-callback; one that suspends is handed to a Task
that continues it exactly where it stopped.

The first step runs outside any Task: code that needs ``asyncio.current_task()`` (such as
``asyncio.timeout``) must not run before the coroutine's first suspension.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["start_eager"]


class _Forward(Generic[T]):
    """Awaitable that drives a coroutine which already ran its first step (it yielded
    ``first``, the future it waits on): every later send and throw goes to the same
    coroutine, so a Task awaiting this behaves as if it had run the coroutine itself."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, T], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, T]:
        coro, value = self._coro, self._first
        self._first = None
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # cancellation and friends go to the coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def _continue(coro: Coroutine[Any, Any, T], first: Any) -> T:
    return await _Forward(coro, first)


def start_eager(
    coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop
) -> tuple[bool, T | asyncio.Task[T]]:
    """Run ``coro`` until it first waits: ``(True, result)`` when it finished, else
    ``(False, task)`` with the Task that continues it. Exceptions raised in that first
    step propagate to the caller; later ones end up in the Task."""
    try:
        first = coro.send(None)
    except StopIteration as done:
        return True, done.value
    return False, loop.create_task(_continue(coro, first))
