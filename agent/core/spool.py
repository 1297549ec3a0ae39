"""A command's output as it arrives: two capped byte spools, in memory while small and in an
unlinked temporary file beyond that, plus whoever listens to it live.

Both ways of running a command (agent/ssh/exec.py and shell.py) write into a
`CommandOutput`; the service then shows a head and a tail of it and keeps the rest
behind a paging handle (agent/core/outputs.py). Memory stays bounded whatever the
command prints: `SPOOL_MEMORY` per stream, then the disk, up to the command's cap.
Uses the standard library's `SpooledTemporaryFile`: the file is created only when
needed, without a name on disk, and disappears when closed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

SPOOL_MEMORY = 64 * 1024  # bytes per stream kept in memory before spilling to a file
STDERR_CAP = 64 * 1024  # stderr is for errors: kept up to this much, whatever max_output says


def stderr_cap(max_output: int) -> int:
    return min(max_output, STDERR_CAP)

# Called with (stderr?, bytes) for every piece of output kept, as it arrives.
Listener = Callable[[bool, bytes], None]


class Spool:
    """The bytes of one stream, up to `cap`; past it `overflow` is set and the rest dropped."""

    def __init__(self, cap: int, directory: Path | None = None) -> None:
        self.cap = cap
        self.size = 0
        self.overflow = False
        self._file = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by close()
            max_size=SPOOL_MEMORY, dir=None if directory is None else str(directory))

    def write(self, data: bytes) -> bytes:
        """Keep what fits; returns the part kept."""
        room = self.cap - self.size
        if len(data) > room:
            data = data[:room]
            self.overflow = True
        if data:
            self._file.seek(self.size)
            self._file.write(data)
            self.size += len(data)
        return data

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        self._file.seek(offset)
        return self._file.read(min(length, self.size - offset))

    def text(self, limit: int | None = None) -> str:
        return self.read(0, self.size if limit is None else limit).decode(
            "utf-8", errors="replace")

    @property
    def on_disk(self) -> bool:
        return bool(getattr(self._file, "_rolled", False))

    def close(self) -> None:
        self._file.close()


class CommandOutput:
    """stdout and stderr of one command, capped, with an optional live listener."""

    def __init__(self, stdout_cap: int, stderr_cap: int, *, directory: Path | None = None,
                 listener: Listener | None = None) -> None:
        self.stdout = Spool(stdout_cap, directory)
        self.stderr = Spool(stderr_cap, directory)
        self.listener = listener
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
        spool = self.spool(stderr)
        kept = spool.write(data)
        if kept and self.listener is not None:
            self.listener(stderr, kept)
        return not spool.overflow

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
