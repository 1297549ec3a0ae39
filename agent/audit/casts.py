"""The recordings on disk: one asciinema cast per call that ran (agent/audit/recorder.py),
bounded in total, and read back for `tailnet-agent audit show` and the replay page.

Where: TAILNET_AGENT_RECORDINGS, by default `casts/` beside the audit log (so
`$XDG_STATE_HOME/tailnet-agent/casts/`), mode 0700, one file `<call id>.cast` (0600)
per call; or, for a cast of at most INLINE_MAX bytes, in the call's end record itself
(`inline`, see agent/audit/recorder.py). A cast is tied to its call by the call's audit
end record, which names it and holds its sha256 (`"cast": {"id", "sha256", "bytes"}`):
reading a cast back checks that hash, so a recording changed after the fact is refused,
not shown.

Bounds: each recording stops at TAILNET_AGENT_RECORDING_MAX_BYTES; all of them together
stay within TAILNET_AGENT_RECORDINGS_BUDGET, counted by a `DiskBudget` (the spool's
accounting, agent/output/spool.py) that a recording charges before each write. When a
recording needs room, the oldest finished casts go first, each only after a
`cast-removed` record in the audit log says which call's recording went, how big it
was and when it was made; if that record cannot be written, nothing is removed and the
new recording is cut instead (it says so). Casts already on disk when the agent starts
count from the start, oldest by modification time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.errors import AuditUnavailable
from agent.output.spool import DiskBudget

from .recorder import CUT_PREFIX, STDERR_MARK, STDOUT_MARK, CastRef, Recording

log = logging.getLogger(__name__)

REMOVED_EVENT = "cast-removed"
SUFFIX = ".cast"
# Call ids are hex (AuditLog.new_call_id); nothing else names a file here.
_ID = re.compile(r"[0-9a-f]{8,64}")

# Writes one record to the audit log (AuditLog.write); raises AuditUnavailable.
RecordWriter = Callable[[Mapping[str, Any]], None]


def valid_id(call: str) -> bool:
    return _ID.fullmatch(call) is not None


def checked_id(call: str) -> str:
    """`call`, if it is a call id (raises ValueError, saying why, otherwise)."""
    if not valid_id(call):
        raise ValueError(f"{call[:40]!r} is not a call id (16 hex digits, as the audit log "
                         "shows them)")
    return call


def cast_path(directory: Path, call: str) -> Path:
    return directory / f"{checked_id(call)}{SUFFIX}"


class CastStore:
    def __init__(self, directory: Path, *, per_call: int, budget: int,
                 record: RecordWriter | None = None,
                 inline: Callable[[str], bool] | None = None) -> None:
        """`inline(text)`: whether a small cast may be kept in its audit record (None:
        every cast is a file)."""
        self.directory = directory
        self._prefix = os.path.join(directory, "")  # a cast's file: prefix + id + SUFFIX
        self.inline = inline
        self.per_call = per_call
        self.budget = DiskBudget(budget)
        self.budget.reclaim = self._reclaim
        self.record = record  # where removals are recorded (the audit log)
        self.removed = 0  # casts removed for the budget since start
        self._lock = threading.Lock()
        self._finished: OrderedDict[str, int] = OrderedDict()  # call -> bytes, oldest first
        self._scanned = False

    def _scan(self) -> None:
        """Count the casts already on disk (once, before the first recording)."""
        with self._lock:
            if self._scanned:
                return
            self._scanned = True
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            found = []
            for path in self.directory.glob(f"*{SUFFIX}"):
                if valid_id(path.stem):
                    stat = path.stat()
                    found.append((stat.st_mtime, path.stem, stat.st_size))
            for _, call, size in sorted(found):
                self._finished[call] = size
                self.budget.used += size
        if self.budget.used > self.budget.limit:  # the budget was lowered since
            self._reclaim(self.budget.used - self.budget.limit)

    def start(self, call: str, title: str) -> Recording:
        """A new recording for `call`. Raises OSError when its file cannot be made."""
        if not self._scanned:
            self._scan()
        return Recording(call, f"{self._prefix}{checked_id(call)}{SUFFIX}", title=title,
                         cap=self.per_call, budget=self.budget, on_finished=self._finished_one,
                         inline=self.inline)

    def _finished_one(self, ref: CastRef) -> None:
        with self._lock:
            self._finished[ref.id] = ref.bytes

    def _reclaim(self, wanted: int) -> None:
        """A recording needs `wanted` more bytes: remove the oldest finished casts, each
        recorded first, until they are free (or none is left)."""
        freed, count = 0, 0
        while freed < wanted:
            with self._lock:
                if not self._finished:
                    break
                call, size = next(iter(self._finished.items()))
            path = cast_path(self.directory, call)
            try:
                made = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                recorded: str | None = made.isoformat(timespec="milliseconds")
            except OSError:
                recorded = None
            if self.record is not None:
                try:
                    self.record({"time": _now(), "event": REMOVED_EVENT, "cast": call,
                                 "bytes": size, "recorded": recorded,
                                 "reason": "recordings budget (TAILNET_AGENT_RECORDINGS_BUDGET)"})
                except AuditUnavailable as exc:
                    log.error("%s (so the recording of call %s is kept, and the new recording "
                              "is cut)", exc, call)
                    break
            with self._lock:
                self._finished.pop(call, None)
            path.unlink(missing_ok=True)
            self.budget.give_back(size)
            self.removed += 1
            freed += size
            count += 1
        if count:
            log.warning("recordings budget reached (%d bytes, TAILNET_AGENT_RECORDINGS_BUDGET): "
                        "removed the %d oldest recording(s), %d bytes; the audit log says which "
                        "(`cast-removed`). Raise the budget to keep more.", self.budget.limit,
                        count, freed)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- reading a cast back -------------------------------------------------------------------


class CastUnavailable(Exception):
    """A cast that cannot be shown: the message says why and what to do."""


class CastMissing(CastUnavailable):
    pass


class CastChanged(CastUnavailable):
    pass


@dataclass(frozen=True)
class Output:
    """A cast read back as the command's output: each stream as it came, and whether (and
    why) the recording stopped early."""

    stdout: str
    stderr: str
    duration: float
    cut: str | None = None


def load(directory: Path, ref: Mapping[str, Any]) -> bytes:
    """The cast a call's end record names (its `cast` field: in the record itself, or a
    file), checked against the sha256 recorded there (a `sha256` of None: not checked, for
    a call that has no end record). Raises CastMissing (removed, or never written) or
    CastChanged."""
    call = str(ref.get("id", ""))
    data = inline_cast(ref)
    where = "the recording in its audit record"
    if data is None:
        path = cast_path(directory, call)
        where = f"the recording {path}"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CastMissing(f"the recording of call {call} is not in {directory}") from None
    expected = ref.get("sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CastChanged(
            f"{where} does not match the sha256 its audit record holds "
            f"({str(expected)[:16]}...): it was changed after the call, so it is not shown. "
            "Compare it with a copy kept elsewhere")
    return data


def inline_cast(ref: Mapping[str, Any]) -> bytes | None:
    """The cast an end record holds itself (None: its cast is a file)."""
    text = ref.get("inline")
    return text.encode("utf-8", errors="replace") if isinstance(text, str) else None


def output(cast: bytes) -> Output:
    """A cast's output per stream, as the command printed it (the `\\r\\n` the recorder
    wrote for each line end read back as `\\n`)."""
    streams: dict[bool, list[str]] = {False: [], True: []}
    stderr = False
    duration = 0.0
    cut: str | None = None
    # Lines end at "\n" only: a JSON string may hold U+2028 and the like unescaped.
    for line in cast.decode("utf-8", errors="replace").split("\n")[1:]:
        if not line:
            continue
        try:
            t, code, data = json.loads(line)
        except (ValueError, TypeError):
            continue
        duration = max(duration, float(t))
        if code == "o":
            streams[stderr].append(data)
        elif code == "m" and data in (STDOUT_MARK, STDERR_MARK):
            stderr = data == STDERR_MARK
        elif code == "m" and str(data).startswith(CUT_PREFIX):
            cut = str(data)[len(CUT_PREFIX):]
    return Output("".join(streams[False]).replace("\r\n", "\n"),
                  "".join(streams[True]).replace("\r\n", "\n"), duration, cut)
