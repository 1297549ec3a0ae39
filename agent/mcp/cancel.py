"""A tool call's cancel, handed to the service the way the service takes it.

The SDK cancels a tool handler through an anyio cancel scope (on notifications/cancelled
at 2025-11-25, when the client closes the response stream at 2026-07-28, and so for the
chat's stop button, which calls through an in-process client), and a cancelled scope
cancels its task again on every await until the task leaves it. The service, though,
stops what a cancelled call started before the call ends: the remote command, its slot,
then its audit end record (agent.ssh.giveup, agent.core.fanout_run). Taking every repeated
cancel on the way would turn that wait into a busy loop. So the service call runs as a
task of its own: the handler's cancel cancels it once, and the handler waits for it in a
shielded scope (anyio's own tool for cleanup that must finish) before it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


async def settled(call: Coroutine[Any, Any, T]) -> T:
    """The result of `call`; if the handler is cancelled, `call` is cancelled once and the
    handler ends (cancelled) only once `call` has."""
    task = asyncio.create_task(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        # Whatever it ends with, the call was cancelled: retrieved, not reported.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        with anyio.CancelScope(shield=True):
            await asyncio.wait({task})
        raise
