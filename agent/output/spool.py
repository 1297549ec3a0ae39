"""A command's output as it arrives: redacted, then kept in two capped byte spools (in memory
while small, in an unlinked temporary file beyond that), and passed to whoever listens live.

Both ways of running a command (agent/ssh/exec.py and shell.py) write into a
`CommandOutput`; the service then shows a head and a tail of it and keeps the rest
behind a paging handle (agent/output/store.py). Two guarantees hold here, where the
bytes are written, so that no reader has to repeat them:

- Secrets are replaced on the way in (agent/output/redact.py, one `StreamRedactor` per
  stream): a spool, and so every view of it, only ever holds redacted bytes. A command
  with `redact: false` is spooled as it came. The call's recording (agent/audit/recorder.py)
  is handed the redacted bytes where the redactor releases them, whatever `redact`
  says: the recording is part of the audit trail, which is always redacted.
- Disk is bounded by one `DiskBudget` (TAILNET_AGENT_OUTPUT_DISK) shared by every spool,
  running or kept: a spool takes bytes from it as it writes and gives them back when
  it closes. A write that finds no room first asks the budget's `reclaim` (the output
  store drops its oldest kept outputs); what still does not fit is cut, and the
  stream's `cut` says why ("disk", or "cap" for the command's own max_output).

Memory stays bounded whatever the command prints: `SPOOL_MEMORY` per stream, then the
disk. Each spool also keeps a digest of what it kept, as it is written, so that outputs
can be compared whole (a fan-out groups hosts whose outputs are identical) without
reading them back. Uses the standard library's `SpooledTemporaryFile`: the file is created only when
needed, without a name on disk, and disappears when closed.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import weakref
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .redact import StreamRedactor

SPOOL_MEMORY = 64 * 1024  # bytes per stream kept in memory before spilling to a file
STDERR_CAP = 64 * 1024  # stderr is for errors: kept up to this much, whatever max_output says


def stderr_cap(max_output: int) -> int:
    return min(max_output, STDERR_CAP)

# Called with (stderr?, bytes) for every piece of output kept, as it arrives.
Listener = Callable[[bool, bytes], None]


class DiskBudget:
    """Bytes held by all spools together, at most `limit`; thread-safe (pages are read, and
    kept outputs dropped, in worker threads)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        # Asked for this many bytes when a write finds too little room (the output store
        # drops its oldest kept outputs); called without the budget's lock held.
        self.reclaim: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    def take(self, wanted: int) -> int:
        """Room for up to `wanted` more bytes: how many were granted."""
        with self._lock:
            short = wanted - (self.limit - self.used)
        if short > 0 and self.reclaim is not None:
            self.reclaim(short)
        with self._lock:
            granted = max(0, min(wanted, self.limit - self.used))
            self.used += granted
            self.peak = max(self.peak, self.used)
            return granted

    def give_back(self, size: int) -> None:
        with self._lock:
            self.used -= size


class _Charge:
    """What one spool took from the budget, given back once (at close, or when the spool is
    collected without being closed)."""

    def __init__(self, budget: DiskBudget) -> None:
        self.budget = budget
        self.size = 0

    def release(self) -> None:
        size, self.size = self.size, 0
        if size:
            self.budget.give_back(size)


class Spool:
    """The bytes of one stream, up to `cap` (and what the budget grants); past it `cut` says
    why ("cap" or "disk") and the rest is dropped."""

    def __init__(self, cap: int, directory: Path | None = None,
                 budget: DiskBudget | None = None) -> None:
        self.cap = cap
        self.size = 0
        self.cut: str | None = None
        self._digest = hashlib.sha256()  # OpenSSL: 2x blake2b here (a hostile host must not
        # make two outputs look alike, so a collision-resistant hash, not a checksum)
        self._directory = None if directory is None else str(directory)
        # Made by the first write (most stderr streams get none), and so is the finalizer
        # that gives the budget back for a spool collected without being closed.
        self._file: IO[bytes] | None = None
        self._budget = budget
        self._charge: _Charge | None = None
        self._closed = False

    @property
    def overflow(self) -> bool:
        return self.cut is not None

    def write(self, data: bytes) -> bytes:
        """Keep what fits; returns the part kept."""
        if self._closed and data:
            raise ValueError("write to a closed spool")
        room = self.cap - self.size
        if len(data) > room:
            data = data[:room]
            self.cut = self.cut or "cap"
        if data and self._budget is not None:
            if self._charge is None:
                self._charge = _Charge(self._budget)
                weakref.finalize(self, self._charge.release)
            granted = self._charge.budget.take(len(data))
            self._charge.size += granted
            if granted < len(data):
                data = data[:granted]
                self.cut = "disk"
        if data:
            if self._file is None:
                self._file = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - see close()
                    max_size=SPOOL_MEMORY, dir=self._directory)
            self._file.seek(self.size)
            self._file.write(data)
            self._digest.update(data)
            self.size += len(data)
        return data

    @property
    def digest(self) -> str:
        """A digest of every byte kept so far (hex)."""
        return self._digest.hexdigest()

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0 or self._file is None:
            return b""
        self._file.seek(offset)
        return self._file.read(min(length, self.size - offset))

    def text(self, limit: int | None = None) -> str:
        return self.read(0, self.size if limit is None else limit).decode(
            "utf-8", errors="replace")

    def close(self) -> None:
        self._closed = True
        if self._file is not None:
            self._file.close()
        if self._charge is not None:
            self._charge.release()


class CommandOutput:
    """stdout and stderr of one command, redacted (unless `redact` is False), capped, within
    the disk `budget`, with an optional live listener."""

    def __init__(self, stdout_cap: int, stderr_cap: int, *, directory: Path | None = None,
                 listener: Listener | None = None, redact: bool = True,
                 budget: DiskBudget | None = None, recorder: Listener | None = None) -> None:
        self.stdout = Spool(stdout_cap, directory, budget)
        self.stderr = Spool(stderr_cap, directory, budget)
        self.listener = listener
        self.recorder = recorder  # the call's recording: gets the redacted bytes
        self._redact = redact
        self._redactors = ({False: StreamRedactor(), True: StreamRedactor()}
                           if redact or recorder is not None else None)
        self._closed = False

    def spool(self, stderr: bool) -> Spool:
        return self.stderr if stderr else self.stdout

    def feed(self, stderr: bool, data: bytes) -> bool:
        """Keep `data`; False once the stream's cap cut it (the caller may stop reading).

        Output that arrives after close() is dropped: the caller has gone (cancelled, or
        failed on another error) while the channel still delivers what the command wrote
        before its stop. Raising here would be raised inside asyncssh's packet handling,
        which closes the whole connection and fails every other call on it."""
        if self.closed:
            return False
        if self._redactors is not None:
            redacted = self._redactors[stderr].feed(data)
            self._record(stderr, redacted)
            if self._redact:
                data = redacted
        return self._keep(stderr, data)

    def finish(self) -> None:
        """The command is over: what redaction held back (a last line without its end) is
        released. Called once the channel has delivered everything (agent/ssh/collected.py)."""
        if self._redactors is not None and not self.closed:
            for stderr, redactor in self._redactors.items():
                redacted = redactor.finish()
                self._record(stderr, redacted)
                if self._redact:
                    self._keep(stderr, redacted)

    def _record(self, stderr: bool, data: bytes) -> None:
        if data and self.recorder is not None:
            self.recorder(stderr, data)

    def _keep(self, stderr: bool, data: bytes) -> bool:
        spool = self.spool(stderr)
        kept = spool.write(data)
        if kept and self.listener is not None:
            self.listener(stderr, kept)
        return not spool.overflow

    @property
    def redacted(self) -> Counter[str]:
        """Secrets replaced so far, by kind."""
        counts: Counter[str] = Counter()
        if not self._redact:  # redacted for the recording only; the output is as it came
            return counts
        for redactor in (self._redactors or {}).values():
            counts.update(redactor.counts)
        return counts

    @property
    def digest(self) -> str:
        """A digest of both streams as kept: equal digests, equal outputs."""
        return f"{self.stdout.digest}:{self.stderr.digest}"

    @property
    def disk_cut(self) -> bool:
        return "disk" in (self.stdout.cut, self.stderr.cut)

    @property
    def size(self) -> int:
        return self.stdout.size + self.stderr.size

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self.stdout.close()
        self.stderr.close()
