"""Waiting for a condition instead of sleeping for a guess: a test that sleeps then asserts
fails on a loaded machine and wastes the rest of the sleep on an idle one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], T], seconds: float = 15.0, what: str = "") -> T:
    """The first truthy value of `check()`, polled every 20 ms for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {seconds:g} s: {what or check}")
        await asyncio.sleep(0.02)
    return result
