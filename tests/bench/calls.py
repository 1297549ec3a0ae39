"""What the benchmark times, and how: calls as zero-argument coroutines, sampled interleaved.

Figures that a target compares are sampled interleaved (one turn of each, round after
round), so that load from other processes on a shared machine falls on all of them
alike instead of skewing one ratio. A turn is one call, or `burst` calls in a row on the
same connection where what is measured depends on how closely requests follow each
other (tests/bench/bench_http.py says why).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp import Client

Call = Callable[[], Awaitable[object]]
HOSTNAME = ("execute_command", {"command": "hostname"})


async def interleaved(calls: dict[str, Call], rounds: int, warmup: int = 5, burst: int = 1
                      ) -> dict[str, list[float]]:
    """Seconds per call for each of `calls`: `rounds` x `burst` samples each."""
    for _ in range(warmup):
        for call in calls.values():
            await call()
    out: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            for _ in range(burst):
                started = time.perf_counter()
                await call()
                out[key].append(time.perf_counter() - started)
    return out


def tool(client: Client, name: str, arguments: dict[str, Any]) -> Call:
    async def call() -> object:
        result = await client.call_tool(name, arguments)
        if result.is_error:
            raise RuntimeError(f"tool call {name} failed: {result.content}")
        return result

    return call
