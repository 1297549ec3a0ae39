"""Big outputs: a result shows a head and a tail; the rest is read page by page by handle.

`present` turns what a command produced (two spools, agent/output/spool.py) into what a
caller is shown: the whole output when it is small, otherwise its first `head` and last
`tail` bytes (cut at line ends) with a note naming a handle. `read` serves further pages
of that output by byte offset. Neither redacts: the spools hold output redacted as it
arrived, so any piece of them, at any offset and of any size, shows only that.

A fan-out that shows less than it ran keeps one document the same way
(`keep_document`, agent.fanout.view): its lines carry names, and `handle/<name>`
reads the line of that name alone (a host, or a group of hosts).

Handles belong to the identity that ran the command (another caller's handle is "not
found"), expire after `ttl` seconds, and are bounded: at most `max_handles` (and
`per_identity` per caller); the oldest go first. Kept output lives in the spools:
`SPOOL_MEMORY` per stream in memory, the rest in unlinked temporary files that vanish
with the handle. Their bytes count against the store's `budget`, which running commands
share (TAILNET_AGENT_OUTPUT_DISK): when a running command needs room, the oldest kept
outputs are dropped for it.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.access.identity import Identity
from agent.errors import CallRefused

from .redact import marker
from .results import CommandResult
from .spool import CommandOutput, DiskBudget, Spool

MAX_PAGE = 256 * 1024  # bytes one read_output call returns at most


class UnknownOutput(CallRefused):
    """No such handle for this caller (never existed, expired, or someone else's)."""


@dataclass(frozen=True)
class Page:
    handle: str
    stream: str
    offset: int
    next_offset: int | None  # None: this page reaches the end
    total_bytes: int
    text: str
    redacted: dict[str, int]
    expires_in_s: float
    command: str
    host: str


@dataclass
class _Kept:
    owner: str  # Identity.key
    output: CommandOutput
    command: str
    host: str
    expires: float
    # A kept document's named lines: name -> (offset, length) in stdout.
    index: dict[str, tuple[int, int]] | None = None

    @property
    def size(self) -> int:
        return self.output.size


class OutputStore:
    def __init__(self, *, head: int = 8000, tail: int = 2000, ttl: float = 1800.0,
                 max_handles: int = 64, per_identity: int = 16, max_bytes: int = 1 << 30,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.head, self.tail, self.ttl = head, tail, ttl
        self.max_handles, self.per_identity = max_handles, per_identity
        self.budget = DiskBudget(max_bytes)
        self.budget.reclaim = self._reclaim
        self._clock = clock
        self._kept: OrderedDict[str, _Kept] = OrderedDict()  # oldest first
        # Pages are read in worker threads while the event loop keeps and drops outputs.
        self._lock = threading.RLock()

    # -- showing a result ------------------------------------------------------------------

    def present(self, result: CommandResult, identity: Identity) -> CommandResult:
        """`result` as the caller sees it: head and tail, and a handle if needed."""
        output = result.output
        if output is None:
            return result
        self._expire()
        handle = new_handle()
        stdout, cut_out = self._shown(output.stdout, result.stdout_note, handle, "stdout")
        stderr, cut_err = self._shown(output.stderr, result.stderr_note, handle, "stderr")
        kept = None
        if cut_out or cut_err:
            self._keep(handle, _Kept(identity.key, output, result.command, result.host,
                                     self._clock() + self.ttl))
            kept = handle
        else:
            output.close()
        return dataclasses.replace(result, stdout=stdout, stderr=stderr,
                                   stdout_bytes=output.stdout.size, output_handle=kept,
                                   redacted=dict(output.redacted), digest=output.digest,
                                   output=None)

    def _shown(self, spool: Spool, note: str, handle: str, stream: str) -> tuple[str, bool]:
        if spool.size <= self.head + self.tail:
            return spool.text() + note, False
        head = _cut_after_last_line(spool.read(0, self.head))
        tail_start = spool.size - self.tail
        tail = _cut_before_first_line(spool.read(tail_start, self.tail))
        hidden = spool.size - len(tail) - len(head)
        where = f", stream=\"{stream}\"" if stream != "stdout" else ""
        middle = (f"\n[... {hidden} bytes not shown; read them with read_output("
                  f"handle=\"{handle}\", offset={len(head)}{where}) ...]\n")
        return _decode(head) + middle + _decode(tail) + note, True

    def keep_document(self, identity: Identity, handle: str,
                      lines: Sequence[tuple[Sequence[str], str]], *, command: str,
                      host: str, directory: Path | None = None) -> bool:
        """Keep `lines` (each with the names that read it alone) as one output under
        `handle` (from `new_handle`). Its text is already redacted (made of outputs that
        were); it counts against the budget like any output, and a line that no longer
        fits is left out with its names. False if not even the first line fit."""
        self._expire()
        output = CommandOutput(1 << 62, 0, directory=directory, redact=False,
                               budget=self.budget)
        index: dict[str, tuple[int, int]] = {}
        for names, text in lines:
            start = output.stdout.size
            data = text.encode()
            if len(output.stdout.write(data)) < len(data):
                break
            index.update((name, (start, len(data))) for name in names)
        if output.stdout.size == 0:
            output.close()
            return False
        self._keep(handle, _Kept(identity.key, output, command, host,
                                 self._clock() + self.ttl, index))
        return True

    # -- paging ------------------------------------------------------------------------------

    def read(self, identity: Identity, handle: str, *, offset: int = 0,
             max_bytes: int = 64 * 1024, stream: str = "stdout") -> Page:
        with self._lock:
            self._expire()
            base, _, name = handle.partition("/")
            kept = self._kept.get(base)
            if kept is None or kept.owner != identity.key:
                raise UnknownOutput(
                    f"no output {handle[:40]!r} for {identity.principal}: handles belong to "
                    f"whoever ran the command and last {self.ttl / 60:g} minutes. Run the "
                    "command again.")
            if stream not in ("stdout", "stderr"):
                raise UnknownOutput(f"stream must be stdout or stderr, not {stream[:20]!r}")
            spool = kept.output.spool(stream == "stderr")
            start, size = 0, spool.size
            if name:
                window = kept.index.get(name) if kept.index is not None else None
                if window is None:
                    raise UnknownOutput(
                        f"no host or group {name[:70]!r} in output {base[:40]!r}: name a host "
                        "of that fan-out (or group-<n>), or read the handle alone for all")
                start, size = window
            if not 0 <= offset <= size:
                raise UnknownOutput(f"offset {offset} is outside the output (0 to {size})")
            length = max(1, min(max_bytes, MAX_PAGE, size - offset))
            data = spool.read(start + offset, length) if offset < size else b""
            end = offset + len(data)
            if end < size:
                data = _cut_after_last_line(data)
                end = offset + len(data)
            text = _decode(data)
            return Page(handle=handle, stream=stream, offset=offset,
                        next_offset=end if end < size else None, total_bytes=size,
                        text=text, redacted=_markers(text),
                        expires_in_s=round(kept.expires - self._clock(), 1),
                        command=kept.command, host=name or kept.host)

    # -- bounds ------------------------------------------------------------------------------

    def _keep(self, handle: str, kept: _Kept) -> None:
        with self._lock:
            mine = [h for h, k in self._kept.items() if k.owner == kept.owner]
            for old in mine[: max(0, len(mine) - self.per_identity + 1)]:
                self._drop(old)
            self._kept[handle] = kept
            while len(self._kept) > self.max_handles:
                self._drop(next(iter(self._kept)))

    def _reclaim(self, wanted: int) -> None:
        """A running command needs `wanted` bytes of the budget: drop the oldest kept outputs
        until they are free (or nothing is kept)."""
        with self._lock:
            freed = 0
            while self._kept and freed < wanted:
                handle = next(iter(self._kept))
                freed += self._kept[handle].size
                self._drop(handle)

    @property
    def bytes_kept(self) -> int:
        with self._lock:
            return sum(k.size for k in self._kept.values())

    def __len__(self) -> int:
        return len(self._kept)

    def _expire(self) -> None:
        now = self._clock()
        with self._lock:
            for handle in [h for h, k in self._kept.items() if k.expires <= now]:
                self._drop(handle)

    def _drop(self, handle: str) -> None:
        with self._lock:
            kept = self._kept.pop(handle, None)
            if kept is not None:
                kept.output.close()

    def close(self) -> None:
        with self._lock:
            for handle in list(self._kept):
                self._drop(handle)


def new_handle() -> str:
    """A fresh, unguessable output handle."""
    return "out-" + secrets.token_urlsafe(12)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _cut_after_last_line(data: bytes) -> bytes:
    """Whole lines only (a page ends where a reader expects it); failing a line end, whole
    words."""
    for sep in (b"\n", b" "):
        at = data.rfind(sep)
        if at >= 0:
            return data[: at + 1]
    return data


def _cut_before_first_line(data: bytes) -> bytes:
    for sep in (b"\n", b" "):
        at = data.find(sep)
        if 0 <= at < len(data) - 1:
            return data[at + 1 :]
    return data


_MARKER = re.compile(re.escape(marker("KIND")).replace("KIND", "([^]\\n]{1,60})"))


def _markers(text: str) -> dict[str, int]:
    """The redaction markers in a page, by kind."""
    return dict(Counter(_MARKER.findall(text)))
