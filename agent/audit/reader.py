"""Reading the audit log back: records, calls (start + end merged), filters, one-line views,
one call by its id, and who may see a call's record.

Used by `tailnet-agent audit` (and `audit show`), the replay and share pages, and by
tests that count records. Tolerant: a line that is not JSON is skipped with a warning, a
start without an end is an "unfinished" call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from agent.access.identity import Identity
from agent.access.policy import Policy

from . import casts
from .chain import PREV, SEQ
from .writer import LIMITED_EVENT, NOT_SHIPPED_EVENT, REMOVED_EVENT

log = logging.getLogger(__name__)

# Records that are not part of a call: a removed log file, a count of rate-limited calls,
# records not shipped to syslog, a removed recording, a chat turn shared and a share
# opened (agent/chat/routes/shares.py).
SHARED_EVENT, OPENED_EVENT = "turn-shared", "share-opened"
NOTE_EVENTS = (REMOVED_EVENT, LIMITED_EVENT, NOT_SHIPPED_EVENT, casts.REMOVED_EVENT,
               SHARED_EVENT, OPENED_EVENT)


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

    def merged(self, *, chain: bool = False) -> dict[str, Any]:
        """One object for the call. Its records' places in the chain (`seq`, and `end_seq`)
        only with `chain`: for the operator; a caller's own view would learn from them how
        many records others' calls made."""
        data = {k: v for k, v in self.start.items() if k not in ("event", SEQ, PREV)}
        if self.end is not None:
            data.update({k: v for k, v in self.end.items()
                         if k not in ("event", "time", SEQ, PREV)})
            data["end_time"] = self.end["time"]
        else:
            data["outcome"] = "unfinished"
        if chain:
            data[SEQ] = self.start.get(SEQ)
            if self.end is not None:
                data["end_seq"] = self.end.get(SEQ)
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


def removals(path: Path) -> list[dict[str, Any]]:
    """The `archive-removed` records (the writer puts them at the top of a fresh file)."""
    found: list[dict[str, Any]] = []
    for file in log_files(path):
        with open(file, "rb") as f:
            found += removals_at_top(f)
    return found


def removals_at_top(f: IO[bytes]) -> list[dict[str, Any]]:
    """The `archive-removed` records among the first lines of one open file."""
    found: list[dict[str, Any]] = []
    for _, line in zip(range(20), f, strict=False):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == REMOVED_EVENT:
                found.append(record)
    return found


def read_calls(path: Path, notes: list[tuple[int, dict[str, Any]]] | None = None
               ) -> list[CallRecord]:
    """Calls in the log's order; records that are not part of a call (removed files, counts
    of rate-limited calls, records not shipped) go to `notes` when given, with the number of
    calls before them. Seals are neither."""
    calls: dict[str, CallRecord] = {}
    for record in read_records(path):
        if record.get("event") in NOTE_EVENTS:
            if notes is not None:
                notes.append((len(calls), record))
            continue
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
    return (f"{data['time'][:23]} {call.call} {data.get('identity', '?')} "
            f"[{data.get('node') or data.get('source', '')}] {data.get('command', '?')} "
            f"on {data.get('host') or '?'}: {detail}{took}")


def _printable(text: str) -> str:
    """Escape what a terminal would act on: a caller chose some of these values."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def format_note(note: dict[str, Any]) -> str:
    if note.get("event") == REMOVED_EVENT:
        return (f"{str(note.get('time'))[:23]} -- {note.get('file')} was removed (audit budget "
                f"reached): its records from {note.get('first')} to {note.get('last')} are gone")
    if note.get("event") == casts.REMOVED_EVENT:
        return (f"{str(note.get('time'))[:23]} -- the recording of call {note.get('cast')} "
                f"({note.get('bytes')} bytes, made {note.get('recorded')}) was removed "
                "(recordings budget reached)")
    if note.get("event") == SHARED_EVENT:
        calls = ", ".join(str(c) for c in note.get("calls") or []) or "none"
        return (f"{str(note.get('time'))[:23]} {note.get('identity', '?')} shared a chat answer "
                f"(share {str(note.get('share'))[:8]}..., calls: {calls}) until "
                f"{note.get('until')}")
    if note.get("event") == OPENED_EVENT:
        verdict = "opened" if note.get("allowed") else "was refused"
        return (f"{str(note.get('time'))[:23]} {note.get('identity', '?')} "
                f"[{note.get('node') or note.get('source', '')}] {verdict} the answer "
                f"{note.get('shared_by')} shared (share {str(note.get('share'))[:8]}...)")
    if note.get("event") == NOT_SHIPPED_EVENT:
        return (f"{str(note.get('time'))[:23]} -- {note.get('records')} record(s), seq "
                f"{note.get('first_seq')} to {note.get('last_seq')}, were not sent to "
                f"{note.get('sink')}: {note.get('reason')}")
    return (f"{str(note.get('time'))[:23]} {note.get('identity', '?')}: {note.get('calls')} more "
            f"call(s) refused by the rate limit in {note.get('window_s')} s (counted, not "
            "recorded one by one)")


def show(path: Path, flt: AuditFilter, *, as_json: bool) -> Sequence[str]:
    notes: list[tuple[int, dict[str, Any]]] = []
    calls = read_calls(path, notes)
    shown: list[tuple[int, int, str]] = []  # (calls before it, 0 note / 1 call, line)
    for index, call in enumerate(calls):
        if flt.keep(call):
            shown.append((index, 1, json.dumps(call.merged(chain=True), ensure_ascii=True)
                          if as_json
                          else _printable(format_call(call))))
    for position, note in notes:
        if flt.identity is not None and "identity" in note and (
                str(note.get("identity", "")).lower() != flt.identity.lower()):
            continue
        shown.append((position, 0, json.dumps(note, ensure_ascii=True) if as_json
                      else _printable(format_note(note))))
    return [line for _, _, line in sorted(shown, key=lambda item: item[:2])]


# `recent_calls` reads only the end of the log: enough for "what did I just do", and a
# resource read must not parse 60 MB of rotated files.
RECENT_SCAN_BYTES = 2_000_000


def _tail_lines(path: Path, scan: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - scan))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").split("\n")
    return lines[1:] if size > scan else lines  # the first line may be cut


def made_by(record: dict[str, Any], identity: Identity) -> bool:
    """Whether a start record is a call of `identity` (Identity.key: a person by login, a
    tagged node by its tags and its node)."""
    return (record.get("identity") == identity.principal
            and record.get("source") == identity.source
            and (bool(identity.login) or record.get("node") == identity.node))


# Which of the log's calls a view lists for a viewer, from the call's start record.
Selector = Callable[[dict[str, Any], Identity], bool]


def recent_calls(path: Path, identity: Identity, *, limit: int = 50,
                 scan: int = RECENT_SCAN_BYTES, keep: Selector | None = None
                 ) -> list[dict[str, Any]]:
    """The newest calls of one identity (merged start + end), newest first; with `keep`,
    the newest calls `keep` selects for them instead."""
    keep = keep or made_by
    calls: dict[str, CallRecord] = {}
    for line in _tail_lines(path, scan):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        call = str(record.get("call", ""))
        if record.get("event") == "start":
            if keep(record, identity):
                calls.setdefault(call, CallRecord(call, record))
        elif record.get("event") == "end" and call in calls and calls[call].end is None:
            calls[call].end = record
    newest = list(calls.values())[-limit:]
    return [c.merged() for c in reversed(newest)]


# -- one call, and who may see it ----------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """A call looked up by id: its records, and the removal of its recording if recorded."""

    call: CallRecord
    cast_removed: dict[str, Any] | None = None


def find_call(path: Path, call: str) -> Found | None:
    """The call with this id (start and end merged), newest file first; None if the log
    (with its rotated files) has no start record for it. Lines are matched by the id's
    bytes before they are parsed, so a look-up reads files but parses only a few lines."""
    if not casts.valid_id(call):
        return None
    needle = call.encode()
    found: list[dict[str, Any]] = []
    for file in reversed(log_files(path)):
        try:
            data = file.read_bytes()
        except OSError:
            continue
        records = []
        at = data.find(needle)
        while at >= 0:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end
            with contextlib.suppress(ValueError):
                record = json.loads(data[start:end])
                if isinstance(record, dict):
                    records.append(record)
            at = data.find(needle, end)
        found = records + found
        if any(r.get("event") == "start" and r.get("call") == call for r in records):
            break
    start_record = next((r for r in found if r.get("event") == "start"
                         and r.get("call") == call), None)
    if start_record is None:
        return None
    merged = CallRecord(call, start_record)
    merged.end = next((r for r in found if r.get("event") == "end" and r.get("call") == call),
                      None)
    removal = next((r for r in found if r.get("event") == casts.REMOVED_EVENT
                    and r.get("cast") == call), None)
    return Found(merged, removal)


def approved_by(record: dict[str, Any], identity: Identity) -> bool:
    """Whether `identity` is the second person who decided this call (two-person rule)."""
    verdict = record.get("approved_by")
    return (isinstance(verdict, dict) and bool(identity.login)
            and verdict.get("identity") == identity.principal)


def may_see(record: dict[str, Any], identity: Identity, policy: Policy) -> bool:
    """Whether `identity` may see a call's audit record (`record`: its start record), and so
    its recording and a turn shared with it: their own calls (what
    tailnet-agent://audit/recent lists), the calls they approved as the second person,
    and every call for an auditor (a grant with `audit: true`; the local operator)."""
    return (made_by(record, identity) or approved_by(record, identity)
            or policy.audits(identity))


def two_person(record: dict[str, Any], identity: Identity) -> bool:
    """A call under the two-person rule that `identity` asked for or decided (what the
    approvals view lists as decided)."""
    return "approval_request" in record and (made_by(record, identity)
                                             or approved_by(record, identity))
