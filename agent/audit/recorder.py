"""One command's output as a recording: an asciinema v2 cast, written as the output arrives.

asciicast v2 is the format Tailscale SSH records sessions in, and what `asciinema play`
and every asciinema player read: a header line, then one JSON array per event. What a
recording holds is exactly what the spool was handed (agent/output/spool.py calls `feed`
where the redactor releases bytes), so a secret the command printed is in the cast as
its redaction marker, never as itself; a command with `redact: false` is redacted for its
recording all the same (the recording is part of the audit trail, which is always
redacted).

The file, as written here:

- header: `{"version": 2, "width": 120, "height": 30, "timestamp": <unix start>,
  "title": "<command> on <host>"}`. The command ran without a terminal, so the size is
  nominal: wide enough that a player wraps few lines.
- `[t, "o", text]` for each piece of output, `t` in seconds since the command started
  (monotonic, never decreasing, microseconds). Text is UTF-8 decoded across chunk edges
  (bytes that are not UTF-8 become U+FFFD, as asciinema's own recorder does), and each
  `\\n` is written `\\r\\n`, as a terminal's line discipline (onlcr) shows it: the
  command had no terminal, and without the carriage return a player draws a staircase.
  Reading `\\r\\n` back as `\\n` gives the output as it came (agent.audit.casts does).
- stderr is output too ("o"), interleaved with stdout as it arrived, the way a terminal
  shows both; a marker event `[t, "m", "stderr"]` opens each run of stderr and
  `[t, "m", "stdout"]` the next run of stdout (markers are asciicast's own navigation
  points; a cast that starts with stdout has no marker before it).
- `[t, "m", "cut: ..."]` last, when the recording stopped early: at the per-call cap
  (TAILNET_AGENT_RECORDING_MAX_BYTES), or when the recordings' budget had no room.

Each line written is counted against the cast store's `DiskBudget` before it is written,
and hashed (sha256): `finish` returns the cast's reference for the call's audit end
record, which is how a cast is tied to its call and checked later.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.output.spool import DiskBudget

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 120, 30
STDOUT_MARK, STDERR_MARK = "stdout", "stderr"
CUT_PREFIX = "cut: "
# Kept back from the budget while recording, for the "cut" marker that may end the cast.
CUT_ROOM = 256


@dataclass(frozen=True)
class CastRef:
    """What a call's audit end record says of its recording."""

    id: str  # the call's id; the file is <id>.cast in the recordings directory
    sha256: str
    bytes: int
    cut: str | None = None  # why the recording stopped early: "cap", "budget", "error"

    def fields(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "sha256": self.sha256, "bytes": self.bytes}
        if self.cut is not None:
            data["cut"] = self.cut
        return data


class Recording:
    """The cast of one call, being written. `feed` is a CommandOutput recorder."""

    def __init__(self, call: str, path: Path, *, title: str, cap: int, budget: DiskBudget,
                 clock: Callable[[], float] = time.monotonic,
                 on_finished: Callable[[CastRef], None] | None = None) -> None:
        self.call = call
        self.path = path
        self.cap = cap
        self._budget = budget
        self._clock = clock
        self._on_finished = on_finished
        self._started = clock()
        self._hash = hashlib.sha256()
        self._size = 0
        self._last = 0.0
        self._stream = False  # stderr? (a cast starts with stdout)
        self._decoders = {stream: codecs.getincrementaldecoder("utf-8")(errors="replace")
                          for stream in (False, True)}
        self._cut: str | None = None
        self._ref: CastRef | None = None
        header = json.dumps({"version": 2, "width": WIDTH, "height": HEIGHT,
                             "timestamp": int(time.time()), "title": title},
                            ensure_ascii=False) + "\n"
        data = header.encode()
        # The header, and room for a cut marker, before anything else.
        self._reserved = 0
        self._take(len(data) + CUT_ROOM, "a new recording")
        self._reserved = CUT_ROOM
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            budget.give_back(len(data) + CUT_ROOM)
            raise
        self._file = os.fdopen(fd, "wb")
        if not self._write(data):
            budget.give_back(len(data))

    def _take(self, wanted: int, what: str) -> None:
        granted = self._budget.take(wanted)
        if granted < wanted:
            self._budget.give_back(granted)
            raise OSError(f"the recordings budget (TAILNET_AGENT_RECORDINGS_BUDGET) has no "
                          f"room for {what}")

    @property
    def size(self) -> int:
        return self._size

    def feed(self, stderr: bool, data: bytes) -> None:
        """Record output the redactor released (a CommandOutput recorder)."""
        if self._cut is not None or self._ref is not None or not data:
            return
        text = self._decoders[stderr].decode(data)
        if text:
            self._event(stderr, text)

    def _event(self, stderr: bool, text: str) -> None:
        now = self._time()
        marker = b""
        if stderr != self._stream:
            marker = _line(now, "m", STDERR_MARK if stderr else STDOUT_MARK)
        text = text.replace("\n", "\r\n")
        room = self.cap - CUT_ROOM - self._size - len(marker)
        line = _line(now, "o", text)
        fits = len(line) <= room
        if not fits:  # what fits under the cap is recorded, then the cast says it was cut
            text = _fitting(now, text, room)
            line = _line(now, "o", text) if text else b""
        if line:
            data = marker + line
            try:
                self._take(len(data), "more output")
            except OSError:
                self._stop("budget", "the recordings budget (TAILNET_AGENT_RECORDINGS_BUDGET) "
                                     "had no room left")
                return
            if not self._write(data):
                self._budget.give_back(len(data))
                return
            self._stream = stderr
        if not fits:
            self._stop("cap", f"the recording reached its cap of {self.cap} bytes "
                              "(TAILNET_AGENT_RECORDING_MAX_BYTES)")

    def _time(self) -> float:
        # Monotonic by construction: never before the previous event.
        self._last = max(self._last, round(self._clock() - self._started, 6))
        return self._last

    def _write(self, data: bytes) -> bool:
        try:
            self._file.write(data)
        except OSError as exc:
            log.error("recording %s: cannot write %s: %s; the rest of the output is not "
                      "recorded", self.call, self.path, exc)
            self._cut = "error"
            return False
        self._hash.update(data)
        self._size += len(data)
        return True

    def _stop(self, why: str, text: str) -> None:
        self._cut = why
        # Written in the room kept back at the start (the texts here are shorter than it).
        marker = _line(self._time(), "m", CUT_PREFIX + text)
        if self._write(marker):
            self._reserved -= len(marker)

    def finish(self) -> CastRef:
        """Close the cast (what the decoders still hold is written first); its reference
        for the audit end record. Called again, returns the same reference."""
        if self._ref is not None:
            return self._ref
        if self._cut is None:
            for stream, decoder in self._decoders.items():
                rest = decoder.decode(b"", final=True)
                if rest:
                    self._event(stream, rest)
        try:
            self._file.close()
        except OSError as exc:
            log.error("recording %s: cannot close %s: %s", self.call, self.path, exc)
            self._cut = self._cut or "error"
        # The room kept for a cut marker goes back; the file's bytes stay charged until the
        # cast store removes it.
        self._budget.give_back(self._reserved)
        self._reserved = 0
        self._ref = CastRef(self.call, self._hash.hexdigest(), self._size, self._cut)
        if self._on_finished is not None:
            self._on_finished(self._ref)
        return self._ref


def _fitting(t: float, text: str, room: int) -> str:
    """The longest start of `text` whose event line takes at most `room` bytes."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if len(_line(t, "o", text[:middle])) <= room:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def _line(t: float, code: str, data: str) -> bytes:
    return f"[{t:.6f}, {json.dumps(code)}, {json.dumps(data, ensure_ascii=False)}]\n".encode()
