"""Waiting for a condition instead of sleeping for a guess: a test that sleeps then asserts
fails on a loaded machine and wastes the rest of the sleep on an idle one.

`wait_until(predicate, timeout, what)` in async tests (the predicate may be a coroutine
function: the event loop keeps serving while it waits), `wait_until_sync` in threads and
sync tests. Both poll through `_Waiting`: the first truthy value of `predicate()` is the
answer; after `timeout` seconds an AssertionError names what was awaited and what the
predicate said last.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

EVERY = 0.02  # s between two polls


class _Waiting(Generic[T]):
    """One wait: the deadline, and the verdict on each value the predicate gave."""

    def __init__(self, timeout: float, what: object) -> None:
        self.timeout = timeout
        self.what = what
        self.deadline = time.monotonic() + timeout

    def done(self, value: T) -> bool:
        """True when `value` answers; raises when it does not and the time is up."""
        if value:
            return True
        if time.monotonic() > self.deadline:
            raise AssertionError(f"not true after {self.timeout:g} s: {self.what} "
                                 f"(last: {value!r})")
        return False


async def wait_until(predicate: Callable[[], T | Awaitable[T]], timeout: float = 15.0,  # noqa: ASYNC109 - a bound on polling, not on one call
                     what: object = "", *, every: float = EVERY) -> T:
    """The first truthy value of `predicate()` (awaited if it is awaitable), polled every
    `every` seconds for at most `timeout`."""
    waiting: _Waiting[T] = _Waiting(timeout, what or predicate)
    while True:
        value = predicate()
        result: T = await value if inspect.isawaitable(value) else value  # type: ignore[assignment]
        if waiting.done(result):
            return result
        await asyncio.sleep(every)


def wait_until_sync(predicate: Callable[[], T], timeout: float = 15.0, what: object = "", *,
                    every: float = EVERY) -> T:
    """`wait_until` for a thread or a sync test: blocks while it polls."""
    waiting: _Waiting[T] = _Waiting(timeout, what or predicate)
    while not waiting.done(result := predicate()):
        time.sleep(every)
    return result
