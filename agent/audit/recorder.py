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

A small cast is kept in that record instead of a file (`inline`): most calls print a line
or two (`hostname`, `uptime`, a service's status), and a file per call cost an inode and
a file creation each, a thousand per fan-out over 1,000 hosts (0.02 ms of CPU each on a
healthy ext4, 0.4 ms on this project's build machine's /tmp). A cast stays in memory
while it is at most INLINE_MAX bytes and the command has run at most SPILL_SECONDS;
past either, it goes to its file at once, which from then on is written as output
arrives (its buffer written out whenever SPILL_SECONDS have passed since it last was).
So a command that runs for a while is on disk as it runs, and what a crash of the agent
can lose is the output of about its last SPILL_SECONDS (before, up to the file buffer's
8 KiB), for a call the audit log shows as unfinished anyway. An inline cast is in the
hash chain itself; one the audit log would alter (it holds a value the log hides,
`AuditLog.hides`) goes to its file instead, so its sha256 always matches.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from agent.output.spool import DiskBudget

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 120, 30
STDOUT_MARK, STDERR_MARK = "stdout", "stderr"
CUT_PREFIX = "cut: "
# Kept back from the budget while recording, for the "cut" marker that may end the cast.
CUT_ROOM = 256
# A cast at most this big (bytes, so at most as many characters: an audit record keeps a
# string of up to 1,000 whole, agent.audit.shape) is kept in its call's end record.
INLINE_MAX = 1000
SPILL_SECONDS = 1.0  # a command running longer has its cast written to its file as it goes
_UTF8 = codecs.getincrementaldecoder("utf-8")


@dataclass(frozen=True)
class CastRef:
    """What a call's audit end record says of its recording."""

    id: str  # the call's id; the file is <id>.cast in the recordings directory
    sha256: str
    bytes: int
    cut: str | None = None  # why the recording stopped early: "cap", "budget", "error"
    inline: str | None = None  # the whole cast, when it is kept in the record (no file)

    def fields(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "sha256": self.sha256, "bytes": self.bytes}
        if self.cut is not None:
            data["cut"] = self.cut
        if self.inline is not None:
            data["inline"] = self.inline
        return data


class Recording:
    """The cast of one call, being written. `feed` is a CommandOutput recorder."""

    def __init__(self, call: str, path: Path | str, *, title: str, cap: int, budget: DiskBudget,
                 clock: Callable[[], float] = time.monotonic,
                 on_finished: Callable[[CastRef], None] | None = None,
                 inline: Callable[[str], bool] | None = None) -> None:
        """`on_finished` is told of a cast that went to its file; `inline(text)` says
        whether a small cast may be kept in the audit record (None: never)."""
        self.call = call
        self.path = path
        self.cap = cap
        self._budget = budget
        self._clock = clock
        self._on_finished = on_finished
        self._inline = inline
        self._file: IO[bytes] | None = None
        self._flushed = 0.0  # when the file's buffer was last written out
        self._pending: list[bytes] = []  # the cast so far, while it may stay inline
        self._started = clock()
        self._hash = hashlib.sha256()
        self._size = 0
        self._last = 0.0
        self._stream = False  # stderr? (a cast starts with stdout)
        # Per stream, made when the stream first has output (most calls have no stderr).
        self._decoders: dict[bool, codecs.IncrementalDecoder] = {}
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
            if inline is None or os.path.exists(path):
                self._open()  # the file now (and no file twice for one call)
            elif not os.access(os.path.dirname(path) or ".", os.W_OK | os.X_OK):
                # No recording, no run: the file it may need must be possible.
                parent = os.path.dirname(path) or "."
                code = errno.EACCES if os.path.isdir(parent) else errno.ENOENT
                raise OSError(code, os.strerror(code), parent)
        except OSError:
            budget.give_back(len(data) + CUT_ROOM)
            raise
        if not self._write(data):
            budget.give_back(len(data))

    def _open(self) -> None:
        """Create the cast's file (never over another) and write what was kept so far."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        file = os.fdopen(fd, "wb")
        try:
            file.write(b"".join(self._pending))
        except OSError:
            file.close()  # what was kept stays kept (and may still go in the record)
            raise
        self._file, self._pending = file, []

    def _spill(self) -> bool:
        """The cast to its file from now on; False (and the recording cut) if it cannot."""
        try:
            self._open()
        except OSError as exc:
            log.error("recording %s: cannot write %s: %s; the rest of the output is not "
                      "recorded", self.call, self.path, exc)
            self._cut = "error"
            return False
        return True

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
        decoder = self._decoders.get(stderr)
        if decoder is None:
            decoder = self._decoders[stderr] = _UTF8(errors="replace")
        text = decoder.decode(data)
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
        spilled = False
        if self._file is None:
            if (self._size + len(data) <= INLINE_MAX
                    and self._clock() - self._started <= SPILL_SECONDS):
                self._pending.append(data)
                self._hash.update(data)
                self._size += len(data)
                return True
            if not self._spill():
                return False
            spilled = True
        assert self._file is not None
        try:
            self._file.write(data)
            if spilled or self._clock() - self._flushed > SPILL_SECONDS:
                self._file.flush()
                self._flushed = self._clock()
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
            for stream in (False, True):
                decoder = self._decoders.get(stream)
                rest = decoder.decode(b"", final=True) if decoder is not None else ""
                if rest:
                    self._event(stream, rest)
        # The room kept for a cut marker goes back; a file's bytes stay charged until the
        # cast store removes it, an inline cast's go back too (it is on no disk of ours).
        self._budget.give_back(self._reserved)
        self._reserved = 0
        inline = self._inline_text()
        if inline is not None:
            self._budget.give_back(self._size)
        elif self._file is None and self._pending and not self._spill():
            # Nowhere to keep it: the record says so (`cut`), and `audit verify` reports
            # the missing file.
            self._budget.give_back(self._size)
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                log.error("recording %s: cannot close %s: %s", self.call, self.path, exc)
                self._cut = self._cut or "error"
        self._ref = CastRef(self.call, self._hash.hexdigest(), self._size, self._cut, inline)
        if inline is None and self._on_finished is not None:
            self._on_finished(self._ref)
        return self._ref

    def _inline_text(self) -> str | None:
        """The cast as text, if it stays in the record (it never went to a file)."""
        if self._file is not None or self._inline is None or not self._pending:
            return None
        try:
            text = b"".join(self._pending).decode("utf-8")
        except UnicodeDecodeError:  # the recorder writes UTF-8; nothing else stays inline
            return None
        return text if self._inline(text) else None


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
    """One event of the cast; `code` is one of ours ("o", "m"), a JSON string as it is."""
    return f'[{t:.6f}, "{code}", {json.dumps(data, ensure_ascii=False)}]\n'.encode()
