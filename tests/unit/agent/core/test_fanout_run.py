"""fanout.together: concurrent calls that end together. Cancelled, or when one fails, it
returns only once every call has ended (a host's call still stopping its remote command
is waited for), and a failure is raised as itself."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from agent.core.fanout_run import together
from agent.errors import HostError


async def call(name: str, seconds: float, ended: list[str], *,
               stopping: float = 0.0, fails: bool = False) -> str:
    try:
        await asyncio.sleep(seconds)
        if fails:
            raise HostError(name, f"{name} failed")
        return name
    except asyncio.CancelledError:
        await asyncio.shield(asyncio.sleep(stopping))  # like a remote command being stopped
        raise
    finally:
        ended.append(name)


async def test_results_come_in_order() -> None:
    ended: list[str] = []
    assert await together(call(n, s, ended) for n, s in (("a", 0.03), ("b", 0.01))) == ["a", "b"]


@pytest.mark.parametrize("how", ["task", "anyio scope"])
async def test_a_cancel_returns_only_once_every_call_has_ended(how: str) -> None:
    ended: list[str] = []
    calls = [call(f"host-{i}", 10, ended, stopping=0.05 * i) for i in range(6)]
    if how == "task":
        task = asyncio.create_task(together(calls))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:  # cancelled again on every await, as the MCP SDK cancels a handler
        with anyio.move_on_after(0.02):
            await together(calls)
    assert sorted(ended) == [f"host-{i}" for i in range(6)]


async def test_a_failure_cancels_the_others_and_is_raised_as_itself() -> None:
    ended: list[str] = []
    with pytest.raises(HostError, match="b failed"):
        await together([call("a", 10, ended, stopping=0.05), call("b", 0.01, ended, fails=True)])
    assert sorted(ended) == ["a", "b"]
