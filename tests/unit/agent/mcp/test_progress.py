"""A fan-out's progress reaches an MCP client throttled: the first host at once, then at
most one notification every FANOUT_EVERY seconds, the last host always, and every host
counted once."""

from __future__ import annotations

from typing import Any, cast

from mcp.server.mcpserver import Context

from agent.mcp.progress import FanoutProgress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Sent:
    """What `ctx.report_progress` would have sent."""

    def __init__(self) -> None:
        self.notifications: list[tuple[float, float | None, str | None]] = []

    async def report_progress(self, progress: float, total: float | None = None,
                              message: str | None = None) -> None:
        self.notifications.append((progress, total, message))


async def test_a_thousand_hosts_make_a_few_notifications_and_every_host_is_counted() -> None:
    sent, clock = Sent(), Clock()
    progress = FanoutProgress(cast(Context[Any, Any], sent), every=0.25, clock=clock)
    for done in range(1, 1001):
        clock.now = done * 0.003  # a host ends every 3 ms: the fan-out takes 3 s
        await progress(done, 1000, f"web-{done:04d}: ok")
    notes = sent.notifications
    assert notes[0] == (1, 1000, "web-0001: ok")  # the first at once
    assert notes[-1][0] == 1000 and notes[-1][2] is not None
    assert notes[-1][2].startswith("web-1000: ok")  # the last always
    assert 12 <= len(notes) <= 14  # one every 0.25 s of 3 s, plus the first and the last
    done = [n[0] for n in notes]
    assert done == sorted(done)
    more = [int(m.split("and ")[1].split(" ")[0]) if "more since" in m else 0
            for _, _, m in notes if m is not None]
    assert len(notes) + sum(more) == 1000


async def test_slow_hosts_are_each_reported() -> None:
    sent, clock = Sent(), Clock()
    progress = FanoutProgress(cast(Context[Any, Any], sent), every=0.25, clock=clock)
    for done in range(1, 4):
        clock.now = done * 1.0
        await progress(done, 3, f"db-{done}: ok")
    assert sent.notifications == [(1, 3, "db-1: ok"), (2, 3, "db-2: ok"), (3, 3, "db-3: ok")]
