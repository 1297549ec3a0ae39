"""PgidReader.wait: how long a stop waits for a command's process-group report."""

from __future__ import annotations

import asyncio
import time
import warnings

from agent.ssh.giveup import REPORT_WAIT_SECONDS
from agent.ssh.reap import PgidReader
from whitelist.render import StopTarget


async def test_a_report_that_comes_late_on_a_loaded_host_is_still_used() -> None:
    # 1.2 s: later than the wait used to allow (1 s), as a report can be on a host that is
    # starting dozens of sudos at once.
    reader = PgidReader()
    later = asyncio.get_running_loop().call_later(
        1.2, lambda: reader.feed(b"tailnet-agent-sudo:4242\nrest"))
    try:
        assert await reader.wait(REPORT_WAIT_SECONDS) == StopTarget(4242, through_sudo=True)
    finally:
        later.cancel()


async def test_a_closed_channel_ends_the_wait_at_once() -> None:
    reader = PgidReader()
    closed = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, closed.set)

    async def wait_closed() -> None:
        await closed.wait()

    started = time.monotonic()
    assert await reader.wait(10.0, unless=wait_closed()) is None
    assert time.monotonic() - started < 2.0  # not the 10 s


async def test_a_report_seen_already_needs_no_wait() -> None:
    reader = PgidReader()
    assert reader.feed(b"tailnet-agent-pgid:99\nout") == b"out"

    async def never() -> None:
        await asyncio.Event().wait()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would be an error
        assert await asyncio.wait_for(reader.wait(10.0, unless=never()), 1) == StopTarget(99)
