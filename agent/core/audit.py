"""The audit log: one JSON line when a tool call is decided, one when it is over.

Design (the simplest honest one): every call gets a random call id and exactly
two records, `"event": "start"` and `"event": "end"`, appended to the same file.
The start record is written *before* anything runs; if it cannot be written the
call is refused (fail closed). A call refused by policy, limits or validation
still has both records, so "every call appears exactly once" means: one call id,
one start, one end. A crash between the two leaves a start without an end, which
`tailnet-agent audit` shows as "unfinished".

Lines are appended with one `write` on an O_APPEND descriptor, so concurrent
writers (threads or processes) never interleave within a line. The file rotates
by size: `audit.jsonl` -> `audit.jsonl.1` -> ... up to `backups` old files.
Lines are pure ASCII (JSON escapes), so no value can break a line for any reader.
Known secret values (API key, key passphrases) are replaced before writing.
Reading the log back (`tailnet-agent audit`) is agent.core.audit_records.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import AuditUnavailable
from .identity import Identity

log = logging.getLogger(__name__)

MAX_VALUE_CHARS = 2000  # a hostile 1 MB argument must not become a 1 MB log line
REDACTED = "[REDACTED]"


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS] + f"...[{len(value) - MAX_VALUE_CHARS} more chars]"
    if isinstance(value, Mapping):
        return {str(_clip(k)): _clip(v) for k, v in list(value.items())[:100]}
    if isinstance(value, list | tuple):
        return [_clip(v) for v in list(value)[:100]]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return _clip(repr(value))


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
        backups: int = 5,
        secrets_to_hide: Iterable[str] = (),
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        # Only values long enough to be secrets: redacting "a" would mangle every line.
        self._secrets = sorted({s for s in secrets_to_hide if s and len(s) >= 6}, key=len,
                               reverse=True)
        self._lock = threading.Lock()
        # Told of every record that could not be written (the metrics count them).
        self.on_failure: Callable[[], None] | None = None

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

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record; raises AuditUnavailable when it cannot."""
        # ASCII only: a hostile value with U+2028 or U+0085 stays on its line for every reader.
        line = self._redact(json.dumps(_clip(dict(record)), ensure_ascii=True)) + "\n"
        data = line.encode("utf-8")
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                try:
                    size = self.path.stat().st_size
                except FileNotFoundError:
                    size = 0
                if size and size + len(data) > self.max_bytes:
                    self._rotate()
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    written = os.write(fd, data)
                finally:
                    os.close(fd)
                if written != len(data):
                    raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            if self.on_failure is not None:
                self.on_failure()
            raise AuditUnavailable(
                f"cannot write the audit log {self.path}: {exc}. Nothing was run: every call "
                "must be recorded first. Fix the file's directory or permissions (or set "
                "TAILNET_AGENT_AUDIT_LOG / --audit-log to a writable path) and try again."
            ) from None

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
