"""Repeated log records, rate-limited: a flood of connections must not become a flood of log.

Under a descriptor shortage asyncio logs every failed accept with a traceback, and a
peer opening sockets makes the guards log a line per socket: 123 MB of log in 35 s
was measured. `RepeatFilter` lets the first `burst` records of one kind (logger,
level, message template) through in each `window` seconds, drops the rest, and says
how many it dropped with the next record of that kind it lets through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatFilter(logging.Filter):
    def __init__(self, *, burst: int = 5, window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int, int]] = {}
        self.dropped = 0
        self._last: tuple[logging.LogRecord | None, bool] = (None, True)

    def filter(self, record: logging.LogRecord) -> bool:
        # One filter sits on every handler: a record reaching several is counted once.
        if record is self._last[0]:
            return self._last[1]
        allowed = self._decide(record)
        self._last = (record, allowed)
        return allowed

    def _decide(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        since, count, dropped = self._seen.get(kind, (now, 0, 0))
        if now - since >= self.window:
            since, count = now, 0
        if count >= self.burst:
            self._seen[kind] = (since, count, dropped + 1)
            self.dropped += 1
            return False
        self._seen[kind] = (since, count + 1, 0)
        if dropped:
            record.msg = f"{record.msg} [{dropped} similar messages dropped]"
        if len(self._seen) > 10_000:  # many kinds (they are templates): start over
            self._seen.clear()
        return True


def install(logger: logging.Logger | None = None) -> RepeatFilter:
    """Put one RepeatFilter on every handler of `logger` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        for existing in handler.filters:
            if isinstance(existing, RepeatFilter):
                return existing
    limiter = RepeatFilter()
    for handler in target.handlers:
        handler.addFilter(limiter)
    return limiter
