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
bounded, strict-JSON, ASCII line (agent.core.audit_shape). Known secret values (API
key, key passphrases) are replaced before writing.

Rotation never drops history silently. The file rotates by size (`audit.jsonl` ->
`audit.jsonl.1` -> `audit.jsonl.2` ...) and rotated files are kept while the log and
its rotated files stay within `budget` bytes. Past it, the oldest file is removed and
an `archive-removed` record (file, size, time of its first and last record) opens the
new file, a warning goes to the log, and `tailnet-agent doctor` reports it.

A caller over its rate limit cannot fill the budget with refusals either: the first
such refusal in each LIMITED_WINDOW seconds is recorded as a call (start and end),
the others of that window are counted in one `limited` record.
Reading the log back (`tailnet-agent audit`) is agent.core.audit_records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .audit_shape import shape
from .errors import AuditUnavailable
from .identity import Identity

log = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
REMOVED_EVENT = "archive-removed"
LIMITED_EVENT = "limited"
LIMITED_WINDOW = 10.0  # seconds


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
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.budget = budget
        self.removed = 0  # rotated files removed for the budget since start
        # Only values long enough to be secrets: redacting "a" would mangle every line.
        self._secrets = sorted({s for s in secrets_to_hide if s and len(s) >= 6}, key=len,
                               reverse=True)
        self._lock = threading.Lock()
        # Told of every record that could not be written (the metrics count them).
        self.on_failure: Callable[[], None] | None = None
        self._limited: dict[str, _Limited] = {}

    def new_call_id(self) -> str:
        return secrets.token_hex(8)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
            # json.dumps escapes some characters; hide the escaped form too.
            escaped = json.dumps(secret, ensure_ascii=True)[1:-1]
            if escaped != secret:
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
            first, last = _first_and_last_time(oldest)
            removed.append({"time": _now(), "event": REMOVED_EVENT, "file": oldest.name,
                            "bytes": sizes.pop(oldest), "first": first, "last": last})
            oldest.unlink()
            self.removed += 1
            log.warning(
                "audit log budget reached (%d bytes, TAILNET_AGENT_AUDIT_BUDGET): removed %s "
                "with the records from %s to %s; raise the budget or move old files elsewhere "
                "to keep more history", self.budget, oldest, first, last)
        return removed

    def _append(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(f"short write ({written} of {len(data)} bytes)")

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

    def _line(self, record: Mapping[str, Any]) -> bytes:
        return (self._redact(shape(self._hide(record))) + "\n").encode("ascii")

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record; raises AuditUnavailable when it cannot."""
        data = self._line(record)
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                try:
                    size = self.path.stat().st_size
                except FileNotFoundError:
                    size = 0
                if size and size + len(data) > self.max_bytes:
                    for removal in self._rotate():
                        self._append(self._line(removal))
                self._append(data)
        except OSError as exc:
            if self.on_failure is not None:
                self.on_failure()
            raise AuditUnavailable(
                f"cannot write the audit log {self.path}: {exc}. Nothing was run: every call "
                "must be recorded first. Fix the file's directory or permissions (or set "
                "TAILNET_AGENT_AUDIT_LOG / --audit-log to a writable path) and try again."
            ) from None

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
                    self.write({"time": _now(), "event": LIMITED_EVENT,
                                **identity_fields(state.identity), "calls": state.suppressed,
                                "window_s": LIMITED_WINDOW,
                                "note": "calls refused by the rate limit, not recorded one "
                                        "by one"})
                except AuditUnavailable as exc:
                    log.error("%s (a count of %d rate-limited calls is lost)", exc,
                              state.suppressed)

    def start(self, call: str, identity: Identity, **fields: Any) -> None:
        self.write({"time": _now(), "event": "start", "call": call,
                    **identity_fields(identity), **fields})

    def end(self, call: str, identity: Identity, **fields: Any) -> None:
        """The closing record; the call is over, so a failure here is logged, not raised."""
        try:
            self.write({"time": _now(), "event": "end", "call": call,
                        "identity": identity.principal, **fields})
        except AuditUnavailable as exc:
            log.error("%s (call %s has a start record but no end record)", exc, call)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class _Limited:
    identity: Identity
    since: float
    suppressed: int = 0


def _first_and_last_time(path: Path) -> tuple[str | None, str | None]:
    """The `time` of a file's first and last record (for the removal record)."""

    def time_of(line: bytes) -> str | None:
        try:
            value = json.loads(line).get("time")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    try:
        with open(path, "rb") as f:
            first = time_of(f.readline())
            f.seek(max(0, path.stat().st_size - 8192))
            tail = f.read().splitlines()
    except OSError:
        return None, None
    return first, time_of(tail[-1]) if tail else None
