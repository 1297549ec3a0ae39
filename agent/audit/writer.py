"""The audit log: one JSON line when a tool call is decided, one when it is over.

Design (the simplest honest one): every call gets a random call id and exactly
two records, `"event": "start"` and `"event": "end"`, appended to the same file.
The start record is written *before* anything runs; if it cannot be written the
call is refused (fail closed). A call refused by policy, limits or validation
still has both records, so "every call appears exactly once" means: one call id,
one start, one end. A crash between the two leaves a start without an end, which
`tailnet-agent audit` shows as "unfinished".

Lines are appended with one `write` on an O_APPEND descriptor, so concurrent
writers (threads or processes) never interleave within a line. Each record is one
bounded, strict-JSON, ASCII line (agent.audit.shape). Known secret values (API
key, key passphrases) are replaced before writing.

Rotation never drops history silently. The file rotates by size (`audit.jsonl` ->
`audit.jsonl.1` -> `audit.jsonl.2` ...) and rotated files are kept while the log and
its rotated files stay within `budget` bytes. Past it, the oldest file is removed and
an `archive-removed` record (file, size, time of its first and last record) opens the
new file, a warning goes to the log, and `tailnet-agent doctor` reports it.

A caller over its rate limit cannot fill the budget with refusals either: the first
such refusal in each LIMITED_WINDOW seconds is recorded as a call (start and end),
the others of that window are counted in one `limited` record.

Every record is linked to the one before it (`seq` and `prev`, agent.audit.chain),
across rotations and restarts; the removal record names the removed file's last `seq`
and hash, and with a signing key each file's end is sealed at rotation and at shutdown.
The writer keeps the chain's end in memory and checks it against the file before each
append (under a lock on the log's directory, so several processes may share the log):
another agent's records are followed, but a log cut short or changed under it is not
followed: the next record links to the last one this writer wrote, so `tailnet-agent
audit verify` shows the gap where it happened.
Reading the log back (`tailnet-agent audit`) is agent.audit.reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.access.identity import Identity
from agent.errors import AuditUnavailable

from .chain import (
    SEAL_EVENT,
    SEQ,
    START,
    Link,
    Signer,
    chained,
    line_hash,
    link_after,
    parse_chained,
    record_line,
)
from .shape import shape_line

log = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
REMOVED_EVENT = "archive-removed"
LIMITED_EVENT = "limited"
NOT_SHIPPED_EVENT = "not-shipped"  # records the syslog sender left out (audit_ship.py)
LIMITED_WINDOW = 10.0  # seconds
TAIL_BYTES = 16384  # read back from a file's end: more than a record (audit_shape)


def identity_fields(identity: Identity) -> dict[str, Any]:
    return {
        "identity": identity.principal,
        "login": identity.login,
        "node": identity.node,
        "tags": list(identity.tags),
        "source": identity.source,
    }


class AuditLog:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 10_000_000,
        budget: int = 500_000_000,
        secrets_to_hide: Iterable[str] = (),
        signer: Signer | None = None,
    ) -> None:
        self.path = path
        self._file, self._directory = str(path), str(path.parent)  # (pathlib costs, per record)
        self.max_bytes = max_bytes
        self.budget = budget
        self.signer = signer
        self.removed = 0  # rotated files removed for the budget since start
        # Only values long enough to be secrets: redacting "a" would mangle every line.
        self._secrets = sorted({s for s in secrets_to_hide if s and len(s) >= 6}, key=len,
                               reverse=True)
        # The same secrets as JSON escapes them, where that differs from the plain form.
        escaped = ((s, json.dumps(s, ensure_ascii=True)[1:-1]) for s in self._secrets)
        self._escaped = [e for s, e in escaped if e != s]
        self._lock = threading.Lock()
        # Told of every record that could not be written (the metrics count them).
        self.on_failure: Callable[[], None] | None = None
        # Told after every record written (the shipper wakes up).
        self.on_written: Callable[[], None] | None = None
        self._limited: dict[str, _Limited] = {}
        # The chain's end as this writer left it, and the file's (inode, size) just after.
        self._end: _End | None = None
        self._mark: tuple[int, int] | None = None
        self.diverged = 0  # times the log was found cut short or changed under this writer

    def new_call_id(self) -> str:
        return secrets.token_hex(8)

    def hides(self, text: str) -> bool:
        """Whether a record holding `text` would be written with a value of it replaced."""
        return any(secret in text for secret in self._secrets)

    def _redact(self, text: str) -> str:
        """Secrets in the escaped form JSON gives them (`_hide` took out the plain form, and
        replacing it here could change a hash that merely contains it)."""
        for escaped in self._escaped:
            text = text.replace(escaped, REDACTED)
        return text

    def _archives(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.path.parent.glob(f"{self.path.name}.*"):
            suffix = path.name[len(self.path.name) + 1:]
            if suffix.isdigit():
                found.append((int(suffix), path))
        return sorted(found)

    def _rotate(self) -> list[dict[str, Any]]:
        """Rotate; returns the records of archives removed to stay within the budget."""
        archives = self._archives()
        for index, older in reversed(archives):
            older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        archives = self._archives()
        sizes = {path: path.stat().st_size for _, path in archives}
        # The current file may grow to max_bytes; rotated files share the rest.
        room = max(self.budget - self.max_bytes, 0)
        removed: list[dict[str, Any]] = []
        while archives and sum(sizes.values()) > room:
            _, oldest = archives.pop()
            first, last, last_line = _file_ends(oldest)
            end = link_after(last_line) if last_line is not None else None
            # Where the chain of the files that remain starts (audit_verify).
            removed.append({"time": timestamp(), "event": REMOVED_EVENT, "file": oldest.name,
                            "bytes": sizes.pop(oldest), "first": first, "last": last,
                            "last_seq": end.seq if end else None,
                            "last_hash": end.hash if end else None})
            oldest.unlink()
            self.removed += 1
            log.warning(
                "audit log budget reached (%d bytes, TAILNET_AGENT_AUDIT_BUDGET): removed %s "
                "with the records from %s to %s; raise the budget or move old files elsewhere "
                "to keep more history", self.budget, oldest, first, last)
        return removed

    def _append(self, data: bytes, end: _End) -> None:
        """Write one line (or a line and what precedes it) and remember the chain's end."""
        fd = os.open(self._file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = os.write(fd, data)
            stat = os.fstat(fd)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(f"short write ({written} of {len(data)} bytes)")
        self._end, self._mark = end, (stat.st_ino, stat.st_size)

    def _linked(self, record: Mapping[str, Any], after: _End) -> tuple[bytes, _End]:
        """`record` (secrets hidden) as the line after `after`, shaped (agent.audit.shape:
        its link is part of what must fit, and is never cut), and the chain's end it
        leaves. The line is the one JSON text shaping made."""
        sealed = record.get("event") == SEAL_EVENT
        if sealed and self.signer is not None:  # (a seal is ours: small, never shaped)
            linked = self.signer.seal(chained(record, after.link))
            text = record_line(linked).decode("ascii")
        else:
            linked, text = shape_line(chained(record, after.link))
            text += "\n"
        line = self._redact(text).encode("ascii")
        return line, _End(Link(linked[SEQ], line_hash(line)), sealed)

    def _append_record(self, record: Mapping[str, Any], after: _End, prefix: bytes = b""
                       ) -> _End:
        line, end = self._linked(record, after)
        self._append(prefix + line, end)
        return end

    def _head(self) -> tuple[_End, bytes, int]:
        """The chain's end to link the next record to, what to write before it (a newline
        when the file ends inside a line), and the file's size. Another writer's records
        are followed; a log that is shorter than or different from what this writer left is
        not."""
        try:
            stat = os.stat(self._file)
            mark: tuple[int, int] | None = (stat.st_ino, stat.st_size)
        except FileNotFoundError:
            mark = None
        size = mark[1] if mark is not None else 0
        if self._end is not None and mark == self._mark:
            return self._end, b"", size
        last, complete = self._last_line()
        on_disk = _End(link_after(last), _is_seal(last)) if last is not None else None
        prefix = b"" if complete else b"\n"
        if self._end is None or on_disk == self._end:
            return on_disk or _End(START, False), prefix, size
        if on_disk is not None and on_disk.link.seq > self._end.link.seq:
            return on_disk, prefix, size  # another process wrote after us
        self.diverged += 1
        log.error(
            "the audit log %s was cut short or changed since this agent wrote its record seq "
            "%d (the log now ends at %s); the next record links to the one this agent wrote, "
            "so `tailnet-agent audit verify` shows the gap", self.path, self._end.link.seq,
            f"seq {on_disk.link.seq}" if on_disk else "no record")
        return self._end, prefix, size

    def last_link(self) -> Link:
        """The chain's end as the files show it (no lock: a line is written at once)."""
        end, mark = self._end, self._mark
        try:
            stat = self.path.stat()
            if end is not None and mark == (stat.st_ino, stat.st_size):
                return end.link
        except FileNotFoundError:
            pass
        last, _ = self._last_line()
        return link_after(last) if last is not None else START

    def _last_line(self) -> tuple[bytes | None, bool]:
        """The log's last line (of the newest file that has one) and whether it is complete."""
        candidates = [self.path, *(p for _, p in self._archives())]
        for path in candidates:
            try:
                with open(path, "rb") as f:
                    size = f.seek(0, os.SEEK_END)
                    if not size:
                        continue
                    f.seek(max(0, size - TAIL_BYTES))
                    tail = f.read()
            except FileNotFoundError:
                continue
            complete = tail.endswith(b"\n")
            return tail.rstrip(b"\n").rsplit(b"\n", 1)[-1], complete or path != self.path
        return None, True

    def _hide(self, value: Any, depth: int = 0) -> Any:
        """Secrets out of every string, before any of them is cut (a cut could split one)."""
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if depth > 8 or not self._secrets:
            return value
        if isinstance(value, Mapping):
            return {self._hide(k, depth + 1): self._hide(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._hide(v, depth + 1) for v in value]
        return value

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record; raises AuditUnavailable when it cannot."""
        hidden = self._hide(record)
        try:
            with self._locked():
                end, prefix, size = self._head()
                line, after = self._linked(hidden, end)
                if size and size + len(line) > self.max_bytes:
                    end = self._seal(end, "rotation", prefix)
                    prefix = b""
                    for removal in self._rotate():
                        end = self._append_record(removal, end)
                    line, after = self._linked(hidden, end)
                self._append(prefix + line, after)
        except OSError as exc:
            if self.on_failure is not None:
                self.on_failure()
            raise AuditUnavailable(
                f"cannot write the audit log {self.path}: {exc}. Nothing was run: every call "
                "must be recorded first. Fix the file's directory or permissions (or set "
                "TAILNET_AGENT_AUDIT_LOG / --audit-log to a writable path) and try again."
            ) from None
        if self.on_written is not None:
            self.on_written()

    def _seal(self, end: _End, reason: str, prefix: bytes = b"") -> _End:
        """Sign the chain's end (with a signing key, unless a seal is already the end)."""
        if self.signer is None or end.sealed or end.link == START:
            return end
        return self._append_record({"time": timestamp(), "event": SEAL_EVENT, "reason": reason,
                                    "key": self.signer.key_id}, end, prefix)

    def close(self) -> None:
        """Seal the log's end at shutdown (with a signing key); a failure is logged."""
        if self.signer is None:
            return
        try:
            with self._locked():
                end, prefix, _ = self._head()
                self._seal(end, "shutdown", prefix)
        except OSError as exc:
            log.error("cannot seal the audit log %s at shutdown: %s", self.path, exc)
            return
        if self.on_written is not None:
            self.on_written()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This writer's threads one at a time, and other processes writing the same log
        (a lock on its directory: the file itself is renamed by rotation)."""
        with self._lock:
            try:
                fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the lock

    def limited(self, identity: Identity, now: float | None = None) -> bool:
        """A call of `identity` was refused by its rate limit: record it as a call (True),
        or only count it for the window's `limited` record (False)."""
        now = time.monotonic() if now is None else now
        self.flush_limited(now)
        state = self._limited.get(identity.key)
        if state is None:
            self._limited[identity.key] = _Limited(identity, now)
            with contextlib.suppress(RuntimeError):  # no loop: the next call flushes it
                asyncio.get_running_loop().call_later(LIMITED_WINDOW + 0.1, self.flush_limited)
            return True
        state.suppressed += 1
        return False

    def flush_limited(self, now: float | None = None) -> None:
        """Write the `limited` record of every window that is over."""
        now = time.monotonic() if now is None else now
        for key, state in list(self._limited.items()):
            if now - state.since < LIMITED_WINDOW:
                continue
            del self._limited[key]
            if state.suppressed:
                try:
                    self.write({"time": timestamp(), "event": LIMITED_EVENT,
                                **identity_fields(state.identity), "calls": state.suppressed,
                                "window_s": LIMITED_WINDOW,
                                "note": "calls refused by the rate limit, not recorded one "
                                        "by one"})
                except AuditUnavailable as exc:
                    log.error("%s (a count of %d rate-limited calls is lost)", exc,
                              state.suppressed)

    def start(self, call: str, identity: Identity, **fields: Any) -> None:
        self.write({"time": timestamp(), "event": "start", "call": call,
                    **identity_fields(identity), **fields})

    def end(self, call: str, identity: Identity, **fields: Any) -> None:
        """The closing record; the call is over, so a failure here is logged, not raised."""
        try:
            self.write({"time": timestamp(), "event": "end", "call": call,
                        "identity": identity.principal, **fields})
        except AuditUnavailable as exc:
            log.error("%s (call %s has a start record but no end record)", exc, call)


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class _Limited:
    identity: Identity
    since: float
    suppressed: int = 0


def _is_seal(line: bytes) -> bool:
    record = parse_chained(line)
    return record is not None and record.get("event") == SEAL_EVENT


@dataclass(frozen=True)
class _End:
    link: Link
    sealed: bool  # the last record is a seal


def _file_ends(path: Path) -> tuple[str | None, str | None, bytes | None]:
    """The `time` of a file's first and last record, and its last line (for the removal
    record)."""

    def time_of(line: bytes) -> str | None:
        try:
            value = json.loads(line).get("time")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    try:
        with open(path, "rb") as f:
            first = time_of(f.readline())
            f.seek(max(0, path.stat().st_size - TAIL_BYTES))
            tail = f.read().splitlines()
    except OSError:
        return None, None, None
    last = tail[-1] if tail else None
    return first, time_of(last) if last else None, last
