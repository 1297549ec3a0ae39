"""Big outputs: a result shows a head and a tail; the rest is read page by page by handle.

`present` turns what a command produced (two spools, agent/core/spool.py) into what a
caller is shown: the whole output when it is small, otherwise its first `head` and last
`tail` bytes (cut at line ends) with a note naming a handle. `read` serves further pages
of that output by byte offset. Every piece is redacted (agent/core/redact.py) as it is
shown, so secrets never leave, whatever part of the output is read.

Handles belong to the identity that ran the command (another caller's handle is "not
found"), expire after `ttl` seconds, and are bounded: at most `max_handles` (and
`per_identity` per caller) and `max_bytes` of output kept; the oldest go first. Kept
output lives in the spools: `SPOOL_MEMORY` per stream in memory, the rest in unlinked
temporary files that vanish with the handle.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .errors import CallRefused
from .identity import Identity
from .redact import KEY_LOOKBACK, Redactor
from .results import CommandResult
from .spool import CommandOutput, Spool

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


@dataclass
class _Kept:
    owner: str  # Identity.key
    output: CommandOutput
    command: str
    host: str
    redact: bool
    expires: float

    @property
    def size(self) -> int:
        return self.output.size


class OutputStore:
    def __init__(self, *, head: int = 8000, tail: int = 2000, ttl: float = 1800.0,
                 max_handles: int = 64, per_identity: int = 16, max_bytes: int = 1 << 30,
                 redactor: Redactor | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.head, self.tail, self.ttl = head, tail, ttl
        self.max_handles, self.per_identity, self.max_bytes = max_handles, per_identity, max_bytes
        self.redactor = redactor or Redactor()
        self._clock = clock
        self._kept: OrderedDict[str, _Kept] = OrderedDict()  # oldest first

    # -- showing a result ------------------------------------------------------------------

    def present(self, result: CommandResult, identity: Identity, *, redact: bool) -> CommandResult:
        """`result` as the caller sees it: redacted, head and tail, and a handle if needed."""
        output = result.output
        if output is None:
            return result
        self._expire()
        handle = "out-" + secrets.token_urlsafe(12)
        counts: Counter[str] = Counter()
        keep = output.size <= self.max_bytes
        stdout, cut_out = self._shown(output.stdout, result.stdout_note, redact, counts,
                                      handle if keep else None, "stdout")
        stderr, cut_err = self._shown(output.stderr, result.stderr_note, redact, counts,
                                      handle if keep else None, "stderr")
        kept = None
        if (cut_out or cut_err) and keep:
            self._keep(handle, _Kept(identity.key, output, result.command, result.host, redact,
                                     self._clock() + self.ttl))
            kept = handle
        else:
            output.close()
        return dataclasses.replace(result, stdout=stdout, stderr=stderr,
                                   stdout_bytes=output.stdout.size, output_handle=kept,
                                   redacted=dict(counts), output=None)

    def _shown(self, spool: Spool, note: str, redact: bool, counts: Counter[str],
               handle: str | None, stream: str) -> tuple[str, bool]:
        if spool.size <= self.head + self.tail:
            return self._redacted(spool.text(), redact, counts) + note, False
        head = _cut_after_last_line(spool.read(0, self.head))
        tail_start = spool.size - self.tail
        tail = _cut_before_first_line(spool.read(tail_start, self.tail))
        tail_start = spool.size - len(tail)
        hidden = tail_start - len(head)
        where = f", stream=\"{stream}\"" if stream != "stdout" else ""
        how = (f"read them with read_output(handle=\"{handle}\", offset={len(head)}{where})"
               if handle else "the output was too big to keep for paging "
               "(TAILNET_AGENT_OUTPUT_DISK)")
        middle = f"\n[... {hidden} bytes not shown; {how} ...]\n"
        head_text = self._redacted(_decode(head), redact, counts)
        tail_text = self._redacted(_decode(tail), redact, counts,
                                   inside_key=_inside_key(spool, tail_start))
        return head_text + middle + tail_text + note, True

    def _redacted(self, text: str, redact: bool, counts: Counter[str], *,
                  inside_key: bool = False) -> str:
        if not redact:
            return text
        text, found, _ = self.redactor.redact(text, inside_key=inside_key)
        counts.update(found)
        return text

    # -- paging ------------------------------------------------------------------------------

    def read(self, identity: Identity, handle: str, *, offset: int = 0,
             max_bytes: int = 64 * 1024, stream: str = "stdout") -> Page:
        self._expire()
        kept = self._kept.get(handle)
        if kept is None or kept.owner != identity.key:
            raise UnknownOutput(
                f"no output {handle[:40]!r} for {identity.principal}: handles belong to whoever "
                f"ran the command and last {self.ttl / 60:g} minutes. Run the command again.")
        if stream not in ("stdout", "stderr"):
            raise UnknownOutput(f"stream must be stdout or stderr, not {stream[:20]!r}")
        spool = kept.output.spool(stream == "stderr")
        if not 0 <= offset <= spool.size:
            raise UnknownOutput(f"offset {offset} is outside the output (0 to {spool.size})")
        length = max(1, min(max_bytes, MAX_PAGE))
        data = spool.read(offset, length)
        end = offset + len(data)
        if end < spool.size:
            data = _cut_after_last_line(data)
            end = offset + len(data)
        counts: Counter[str] = Counter()
        text = self._redacted(_decode(data), kept.redact, counts,
                              inside_key=_inside_key(spool, offset))
        return Page(handle=handle, stream=stream, offset=offset,
                    next_offset=end if end < spool.size else None, total_bytes=spool.size,
                    text=text, redacted=dict(counts),
                    expires_in_s=round(kept.expires - self._clock(), 1))

    # -- bounds ------------------------------------------------------------------------------

    def _keep(self, handle: str, kept: _Kept) -> None:
        mine = [h for h, k in self._kept.items() if k.owner == kept.owner]
        for old in mine[: max(0, len(mine) - self.per_identity + 1)]:
            self._drop(old)
        self._kept[handle] = kept
        while len(self._kept) > self.max_handles or (
                len(self._kept) > 1 and self.bytes_kept > self.max_bytes):
            self._drop(next(iter(self._kept)))

    @property
    def bytes_kept(self) -> int:
        return sum(k.size for k in self._kept.values())

    def __len__(self) -> int:
        return len(self._kept)

    def _expire(self) -> None:
        now = self._clock()
        for handle in [h for h, k in self._kept.items() if k.expires <= now]:
            self._drop(handle)

    def _drop(self, handle: str) -> None:
        kept = self._kept.pop(handle, None)
        if kept is not None:
            kept.output.close()

    def close(self) -> None:
        for handle in list(self._kept):
            self._drop(handle)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _cut_after_last_line(data: bytes) -> bytes:
    """Whole lines only (a secret cut in two would not be recognised); failing a line end,
    whole words."""
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


def _inside_key(spool: Spool, offset: int) -> bool:
    start = max(0, offset - KEY_LOOKBACK)
    return Redactor.inside_key_at(_decode(spool.read(start, offset - start)))
