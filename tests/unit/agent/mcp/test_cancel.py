"""settled: the MCP SDK cancels a tool handler on every await (anyio); the service call
under it is cancelled once, and the handler ends only once the call has."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from agent.errors import HostError
from agent.mcp.cancel import settled


async def test_the_call_is_cancelled_once_and_waited_for() -> None:
    cancels = 0
    stopped = False

    async def service_call() -> None:
        nonlocal cancels, stopped
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancels += 1
            for _ in range(20):  # stopping takes several awaits
                try:
                    await asyncio.sleep(0.005)
                except asyncio.CancelledError:
                    cancels += 1
            stopped = True
            raise

    with anyio.move_on_after(0.02) as scope:
        await settled(service_call())
    assert scope.cancelled_caught
    assert (cancels, stopped) == (1, True)


async def test_results_and_errors_pass_through() -> None:
    async def answer() -> int:
        return 42

    async def failure() -> None:
        raise HostError("web-1", "web-1 refused")

    assert await settled(answer()) == 42
    with pytest.raises(HostError, match="web-1 refused"):
        await settled(failure())
