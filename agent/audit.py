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
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .identity import Identity
from .policy import CallRefused

log = logging.getLogger(__name__)

MAX_VALUE_CHARS = 2000  # a hostile 1 MB argument must not become a 1 MB log line
REDACTED = "[REDACTED]"


class AuditUnavailable(CallRefused):
    """The audit log cannot be written, so nothing runs."""


def default_audit_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(state) / "tailnet-agent" / "audit.jsonl"


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


# -- reading -------------------------------------------------------------------------


@dataclass
class CallRecord:
    """A call's start and end records merged (end may be missing: unfinished)."""

    call: str
    start: dict[str, Any]
    end: dict[str, Any] | None = None
    extra: list[dict[str, Any]] = field(default_factory=list)

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.start["time"])

    def merged(self) -> dict[str, Any]:
        data = {k: v for k, v in self.start.items() if k != "event"}
        if self.end is not None:
            data.update({k: v for k, v in self.end.items() if k not in ("event", "time")})
            data["end_time"] = self.end["time"]
        else:
            data["outcome"] = "unfinished"
        return data


def log_files(path: Path) -> list[Path]:
    """The log and its rotated files, oldest first."""
    rotated = sorted(
        (p for p in path.parent.glob(f"{path.name}.*") if p.name.rsplit(".", 1)[1].isdigit()),
        key=lambda p: int(p.name.rsplit(".", 1)[1]),
        reverse=True,
    )
    return [*rotated, *([path] if path.exists() else [])]


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    for file in log_files(path):
        with open(file, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    log.warning("%s:%d is not a JSON line; skipped", file, number)
                    continue
                if isinstance(record, dict):
                    yield record


def read_calls(path: Path) -> list[CallRecord]:
    calls: dict[str, CallRecord] = {}
    for record in read_records(path):
        call = str(record.get("call", ""))
        if record.get("event") == "start" and call not in calls:
            calls[call] = CallRecord(call, record)
        elif record.get("event") == "end" and call in calls and calls[call].end is None:
            calls[call].end = record
        elif call in calls:
            calls[call].extra.append(record)  # a duplicate: shown by --json, counted by tests
    return list(calls.values())


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    identity: str | None = None
    host: str | None = None
    command: str | None = None

    def keep(self, call: CallRecord) -> bool:
        start = call.start
        if self.since is not None and call.time < self.since:
            return False
        if self.identity is not None and self.identity.lower() not in (
            str(start.get("identity", "")).lower(), str(start.get("login") or "").lower()
        ):
            return False
        if self.host is not None and start.get("host") != self.host:
            return False
        return self.command is None or start.get("command") == self.command


def parse_since(text: str, now: float | None = None) -> datetime:
    """'90s', '15m', '1h', '2d', or an ISO time."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        seconds = float(text[:-1]) * units[text[-1]]
        return datetime.fromtimestamp((now or time.time()) - seconds, UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: use a duration like 90s, 15m, 1h, 2d or an ISO time"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_call(call: CallRecord) -> str:
    data = call.merged()
    decision = data.get("decision") or {}
    outcome = data.get("outcome", "?")
    status = data.get("exit_status")
    detail = f"exit {status}" if outcome == "ran" else outcome
    if outcome == "refused":
        detail += f" ({decision.get('rule', '')})"
    elif data.get("error"):
        detail += f" ({data['error'][:120]})"
    duration = data.get("duration_ms")
    took = f" {duration:.0f}ms" if isinstance(duration, int | float) else ""
    return (f"{data['time'][:23]} {data.get('identity', '?')} "
            f"[{data.get('node') or data.get('source', '')}] {data.get('command', '?')} "
            f"on {data.get('host') or '?'}: {detail}{took}")


def _printable(text: str) -> str:
    """Escape what a terminal would act on: a caller chose some of these values."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def show(path: Path, flt: AuditFilter, *, as_json: bool) -> Sequence[str]:
    lines: list[str] = []
    for call in read_calls(path):
        if flt.keep(call):
            lines.append(json.dumps(call.merged(), ensure_ascii=True) if as_json
                         else _printable(format_call(call)))
    return lines
