"""A turn's events as Server-Sent Events: a snapshot, then the live tail.

Every connection (the page that asked, a reload, a second tab, a reconnect) gets the
whole turn so far first, then each new batch of events. Deltas are batched: after a
message with only new text, the stream waits `RENDER_INTERVAL` before the next, so a
fast answer is re-rendered a few times a second rather than once per token, while
the first characters still go out as soon as they arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from .agent_loop import ChatTurn
from .events import TextDelta, TurnFinished
from .sse import sse_message
from .turn_view import TurnView

RENDER_INTERVAL = 0.05  # seconds
KEEP_ALIVE = 15.0  # seconds without an event before a comment line keeps proxies patient


async def turn_events(turn: ChatTurn, confirm_url: str) -> AsyncIterator[bytes]:
    view = TurnView(turn.id, confirm_url)
    seen = len(turn.log)
    yield view.snapshot(turn.log.events[:seen])
    if turn.log.finished:
        yield sse_message("done", "")
        return
    while True:
        try:
            await asyncio.wait_for(turn.log.wait_past(seen), KEEP_ALIVE)
        except TimeoutError:
            yield b": still here\n\n"
            continue
        batch = turn.log.events[seen:]
        seen += len(batch)
        yield view.update(batch)
        if isinstance(batch[-1], TurnFinished):
            yield sse_message("done", "")
            return
        if all(isinstance(event, TextDelta) for event in batch):
            await asyncio.sleep(RENDER_INTERVAL)
