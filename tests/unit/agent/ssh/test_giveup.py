"""GiveUp.run: a given-up call returns only once its stop has run to its end, however
often it is cancelled meanwhile (asyncio cancels a task once; the MCP SDK's anyio cancel
scopes cancel it again on every await)."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from agent.ssh.giveup import GiveUp


async def test_a_call_cancelled_on_every_await_returns_only_after_its_stop() -> None:
    giveup = GiveUp()
    stopped = asyncio.Event()

    async def stop() -> None:
        await asyncio.sleep(0.2)
        stopped.set()

    async def call() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await giveup.run(stop())
            raise

    with anyio.move_on_after(0.05) as scope:
        await call()
    assert scope.cancelled_caught
    assert stopped.is_set()


async def test_a_stop_not_cancelled_returns_and_one_cancelled_meanwhile_raises_after_it(
) -> None:
    giveup = GiveUp()
    stops: list[str] = []

    async def stop(name: str) -> None:
        await asyncio.sleep(0.1)
        stops.append(name)

    await giveup.run(stop("backup timer"))  # not cancelled: returns normally
    task = asyncio.create_task(giveup.run(stop("cancelled")))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stops == ["backup timer", "cancelled"]
