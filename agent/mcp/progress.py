"""Long commands seen from an MCP client: the output lines as progress notifications.

When the client sent a progressToken with its tools/call, the lines a command prints
reach it as `notifications/progress` while it runs: `progress` is the seconds elapsed
(the total is unknown, so none is given), `message` the new lines (redacted, at most
`LiveOutput.max_chars` per stream; more is counted, and the result has it all). Quiet
commands get nothing for their first `FIRST_AFTER` seconds, then one notification a
second while lines arrive and one every `HEARTBEAT` seconds while none do.

Without a progressToken nothing is sent, except a log notification every
`QUIET_HEARTBEAT` seconds: an HTTP client reading the call's event stream (the Python
SDK gives up after 300 silent seconds) then knows the call is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from mcp.server.mcpserver import Context

from agent.output.live import LiveOutput

log = logging.getLogger(__name__)

FIRST_AFTER = 2.0  # seconds: commands shorter than this send no progress at all
INTERVAL = 1.0  # seconds between notifications while output arrives
HEARTBEAT = 15.0  # seconds between notifications while the command prints nothing
QUIET_HEARTBEAT = 60.0  # seconds between log notifications for clients without a token
FANOUT_EVERY = 0.25  # seconds: a fan-out's progress at most this often (the last one always)


def progress_token(ctx: Context) -> str | int | None:
    meta = ctx.request_context.meta
    if meta is None:
        return None
    if isinstance(meta, dict):
        token = meta.get("progressToken", meta.get("progress_token"))
    else:
        token = getattr(meta, "progress_token", None)
    return token if isinstance(token, str | int) else None


async def _report(ctx: Context, live: LiveOutput) -> None:
    await asyncio.sleep(FIRST_AFTER)
    sent_at: float | None = None
    while True:
        text = live.drain().rstrip("\n")
        elapsed = live.elapsed
        if text or sent_at is None or elapsed - sent_at >= HEARTBEAT:
            await ctx.report_progress(round(elapsed, 1), None, text or heartbeat(live))
            sent_at = elapsed
        await asyncio.sleep(INTERVAL)


async def _keep_alive(ctx: Context, live: LiveOutput) -> None:
    while True:
        await asyncio.sleep(QUIET_HEARTBEAT)
        await ctx.info(heartbeat(live))


HEARTBEAT_PREFIX = "[still running: "


def heartbeat(live: LiveOutput) -> str:
    """The message of a notification with no new output (one line, in brackets)."""
    return f"{HEARTBEAT_PREFIX}{live.elapsed:.0f} s, {live.lines} lines so far]"


@contextlib.asynccontextmanager
async def live_progress(ctx: Context) -> AsyncIterator[LiveOutput]:
    """A LiveOutput for the service, reported to the client while the body runs."""
    live = LiveOutput()
    report = _report if progress_token(ctx) is not None else _keep_alive
    reporter = asyncio.create_task(report(ctx, live), name="mcp-progress")
    try:
        yield live
    finally:
        reporter.cancel()
        # A client that went away makes a notification fail: that ends the reports, not
        # the command (its result, or its cancellation, follows its own way).
        (outcome,) = await asyncio.gather(reporter, return_exceptions=True)
        if isinstance(outcome, Exception):
            log.info("progress notifications stopped: %s", outcome)


class FanoutProgress:
    """A fan-out's progress for an MCP client: the first host's end at once, then at most
    one notification every `every` seconds (the count so far, the latest host and how many
    ended since the last one), and the last host's end always. A notification per host
    cost 1,000 SSE events for 1,000 hosts; the result lists every host anyway."""

    def __init__(self, ctx: Context, every: float = FANOUT_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.every = every
        self.clock = clock
        self.sent_at: float | None = None
        self.unsent = 0  # hosts that ended since the last notification

    async def __call__(self, done: int, total: int, message: str) -> None:
        self.unsent += 1
        now = self.clock()
        if done < total and self.sent_at is not None and now - self.sent_at < self.every:
            return
        more, self.unsent, self.sent_at = self.unsent - 1, 0, now
        await self.ctx.report_progress(
            done, total, message + (f" (and {more} more since the last update)" if more else ""))
