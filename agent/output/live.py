"""Live output: the lines a running command prints, collected for whoever shows them as they
arrive (MCP progress notifications, the chat's tool card).

`feed` is the CommandOutput listener: it gets what the spool keeps, already redacted
(agent/output/spool.py), for every chunk the SSH layer receives, so it only splits lines
and keeps a bounded batch per stream; a command printing 50 MB keeps at most
`max_chars` per stream between two drains and counts the rest. `drain` hands over the
batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

MAX_LINE = 1000  # characters of one line shown live; the result has the whole line


@dataclass
class _Batch:
    lines: list[str] = field(default_factory=list)
    chars: int = 0
    skipped: int = 0


@dataclass
class _Stream:
    partial: bytes = b""
    batch: _Batch = field(default_factory=_Batch)


class LiveOutput:
    def __init__(self, *, max_chars: int = 4000) -> None:
        self.max_chars = max_chars
        self.started = time.monotonic()
        self.lines = 0
        self.bytes = 0
        self._streams = {False: _Stream(), True: _Stream()}

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def feed(self, stderr: bool, data: bytes) -> None:
        self.bytes += len(data)
        stream = self._streams[stderr]
        pieces = (stream.partial + data).splitlines()
        if data and data[-1:] not in (b"\n", b"\r"):
            stream.partial = pieces.pop() if pieces else b""
            if len(stream.partial) > MAX_LINE * 4:  # a line with no end in sight
                pieces.append(stream.partial)
                stream.partial = b""
        else:
            stream.partial = b""
        for raw in pieces:
            self._line(stream, raw.decode("utf-8", errors="replace"))

    def _line(self, stream: _Stream, line: str) -> None:
        self.lines += 1
        batch = stream.batch
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE] + "…"
        if batch.skipped or batch.chars + len(line) > self.max_chars:
            batch.skipped += 1
            return
        batch.lines.append(line)
        batch.chars += len(line) + 1

    def note(self, text: str) -> None:
        """A line from the agent itself (e.g. waiting for an approval), shown like output."""
        batch = self._streams[False].batch
        batch.lines.append(f"[{text}]")
        batch.chars += len(text) + 3

    def drain(self) -> str:
        """The lines since the last drain (stderr's marked); "" when none."""
        parts: list[str] = []
        for stderr, stream in self._streams.items():
            batch, stream.batch = stream.batch, _Batch()
            if not batch.lines and not batch.skipped:
                continue
            text = "".join(f"{line}\n" for line in batch.lines)
            if stderr:
                text = "".join(f"[stderr] {line}\n" for line in text.splitlines())
            if batch.skipped:
                text += f"[{batch.skipped} more lines; the result shows the output]\n"
            parts.append(text)
        return "".join(parts)
