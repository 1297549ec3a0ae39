"""`tailnet-agent audit verify`: walk the chain through every file and say where it breaks.

The files are read oldest first (audit.jsonl.N ... audit.jsonl.1, audit.jsonl) as one
stream of lines. Each line must be a record in canonical form whose `prev` is the hash of
the line before and whose `seq` is one more (agent.audit.chain). Where that fails,
the line before, the line itself and the line after tell what happened, and the finding
names it: a record **edited** (the next record holds another hash for it), records
**removed** (`seq` jumps; at a file's start: the end of the file before was cut, or a file
is missing), **reordered** (two records follow each other the wrong way round, or a
missing record turns up later), **inserted** (the next line follows the one before it),
**damaged** (not a record at all), **truncated** (the log ends inside a line). After a
finding the walk starts again from the next line, so one change gives one finding.

The chain's first record must start a log (`seq` 1, `prev` GENESIS), follow records
written before there was a chain, or start where an `archive-removed` record says the
budget removed a file (its last `seq` and hash): a removal is a note, not a finding.
With the public key, every seal must verify and every rotated file must end in one.

What no chain can show: the end of the newest file cut off while no agent was running
(nothing follows it), or a stretch written again with every hash after it computed anew.
The copy a syslog receiver kept can (`shipped`): a record whose line differs from the one
shipped with its `seq` is edited, and records shipped beyond the local log's end were cut.

Recordings (`recordings`, the casts directory): each end record names its call's cast and
holds its sha256, so a cast that was changed is **cast-changed**, and one that is gone
while no `cast-removed` record says the budget removed it is **cast-missing**.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .casts import REMOVED_EVENT as CAST_REMOVED
from .casts import cast_path, inline_cast, valid_id
from .chain import GENESIS, PREV, SEAL_EVENT, SEQ, Link, is_chained, line_hash, seal_problem
from .reader import log_files, removals_at_top
from .shape import canonical


class Unreadable(Exception):
    """The log could not be read: nothing was verified (exit status 2)."""


@dataclass(frozen=True)
class Place:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Finding:
    place: Place
    # edited, removed, reordered, inserted, damaged, truncated, unsigned, signature,
    # cast-changed, cast-missing
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.place}: {self.kind}: {self.detail}"


@dataclass
class Verification:
    files: list[Path]
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        count = f"{self.records} records in {len(self.files)} file(s)"
        if self.ok:
            span = (f", seq {self.first_seq} to {self.last_seq}" if self.first_seq is not None
                    else "")
            return f"audit log OK: {count}{span}, every link intact"
        return (f"audit log NOT OK: {len(self.findings)} problem(s) in {count}; the first at "
                f"{self.findings[0].place}")


@dataclass
class _Line:
    place: Place
    raw: bytes
    path: Path
    last_in_file: bool
    record: dict[str, Any] | None = None  # a JSON object
    problem: tuple[str, str] | None = None  # (kind, detail): why it is no record of ours

    @cached_property
    def chained(self) -> bool:
        return self.record is not None and self.problem is None and is_chained(self.record)

    @cached_property
    def link(self) -> Link:
        seq = self.record[SEQ] if self.chained and self.record is not None else 0
        return Link(seq, line_hash(self.raw))

    @property
    def prev(self) -> str:
        return str(self.record.get(PREV)) if self.record is not None else ""


def _parse(place: Place, raw: bytes, path: Path, last_in_file: bool) -> _Line:
    line = _Line(place, raw, path, last_in_file)
    if not raw.endswith(b"\n"):
        line.problem = ("truncated", f"{path.name} ends inside this line: cut short, or the "
                        "agent stopped while writing it")
        return line
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        line.problem = ("damaged", "not a JSON record (edited or inserted)")
        return line
    line.record = record
    if (SEQ in record or PREV in record) and not is_chained(record):
        line.problem = ("edited", "its seq or prev is not a number and a SHA-256")
    elif is_chained(record) and canonical(record, strict=True).encode("ascii") != raw[:-1]:
        line.problem = ("edited", "it is not in the form the agent writes (keys sorted, no "
                        "spaces)")
    return line


@dataclass
class _File:
    path: Path
    handle: IO[bytes]
    size: int  # what the walk reads: the file as it was when it was opened


@contextlib.contextmanager
def _snapshot(path: Path) -> Iterator[list[_File]]:
    """The log's files as they are at one moment: listed, opened and measured while its
    writers wait (a shared lock on the directory, a few milliseconds), so a rotation or a
    record written during the walk changes nothing in what is walked."""
    opened: list[_File] = []
    try:
        lock = None
        with contextlib.suppress(OSError):  # a reader without the lock still reads
            lock = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            for file in log_files(path):
                handle = open(file, "rb")  # noqa: SIM115 - closed below
                opened.append(_File(file, handle, os.fstat(handle.fileno()).st_size))
        except OSError as exc:
            raise Unreadable(f"cannot read {exc.filename or path}: {exc.strerror or exc}"
                             ) from None
        finally:
            if lock is not None:
                os.close(lock)
        yield opened
    finally:
        for each in opened:
            each.handle.close()


def _lines(files: list[_File]) -> Iterator[_Line]:
    for file in files:
        try:
            file.handle.seek(0)
            lines = file.handle.read(file.size).splitlines(keepends=True)
        except OSError as exc:
            raise Unreadable(f"cannot read {file.path}: {exc.strerror or exc}") from None
        for number, raw in enumerate(lines, start=1):
            yield _parse(Place(file.path.name, number), raw, file.path, number == len(lines))


class _Walk:
    def __init__(self, result: Verification, removed: list[dict[str, Any]],
                 key: Ed25519PublicKey | None, current: Path) -> None:
        self.result = result
        self.starts = {(r.get("last_seq"), r.get("last_hash")): r for r in removed}
        self.key = key
        self.current = current
        self.shipped: dict[int, str] | None = None  # seq -> hash of the line received
        self.last: _Line | None = None  # the line the next one must follow
        self.before: _Line | None = None  # and the one before that
        self.started = False  # a chained record has been seen
        self.resync = False  # after a finding: take the next line as it is
        self.legacy = 0
        self.seals = 0
        self.signed: _Line | None = None  # the last seal that verified
        self.missing: dict[int, Place] = {}  # seq -> where it was found missing (few)
        self.recordings: Path | None = None  # the casts directory, when casts are checked
        self.casts: dict[str, tuple[Place, str]] = {}  # call -> (its end record, sha256)
        self.inline_casts = 0  # casts held by their records, checked as they were read
        self.casts_removed: set[str] = set()  # calls whose cast the budget removed

    def find(self, place: Place, kind: str, detail: str) -> None:
        self.result.findings.append(Finding(place, kind, detail))
        self.resync = True

    def run(self, lines: Iterator[_Line]) -> None:
        line = next(lines, None)
        while line is not None:
            after = next(lines, None)
            skip_next = self.step(line, after)
            if line.last_in_file:
                self.file_end(line)
            if skip_next and after is not None:
                if after.last_in_file:
                    self.file_end(after)
                after = next(lines, None)
            line = after
        self.shipped_after_the_end()
        self.check_casts()
        if self.legacy:
            self.result.notes.append(f"{self.legacy} record(s) at the start were written before "
                                     "the chain (no seq, no prev): they are not covered")
        self.coverage()

    def accept(self, line: _Line) -> None:
        self.before, self.last = self.last, line
        self.resync = False
        self.result.records += 1
        seq = line.link.seq
        if line.chained:
            if self.result.first_seq is None:
                self.result.first_seq = seq
            self.result.last_seq = seq
            assert line.record is not None
            self.check_seal(line, line.record)
            self.check_shipped(line)
        if line.record is not None:
            self.note_cast(line.place, line.record)

    def note_cast(self, place: Place, record: Mapping[str, Any]) -> None:
        """Remember the cast an end record names, or one the budget removed."""
        if self.recordings is None:
            return
        ref = record.get("cast")
        if record.get("event") == CAST_REMOVED and isinstance(ref, str):
            self.casts_removed.add(ref)
        elif isinstance(ref, Mapping) and isinstance(ref.get("sha256"), str) and valid_id(
                str(ref.get("id", ""))):
            inline = inline_cast(ref)
            if inline is None:
                self.casts[str(ref["id"])] = (place, str(ref["sha256"]))
            elif hashlib.sha256(inline).hexdigest() == ref["sha256"]:
                self.inline_casts += 1  # a small cast, in its record (recorder.py)
            else:
                self.result.findings.append(Finding(
                    place, "cast-changed", "the recording in this record does not match the "
                    "sha256 it holds: it was changed after the call"))

    def check_casts(self) -> None:
        """Every cast an end record names is on disk as it was recorded, or was removed by
        the budget with a record saying so (a cast held by its record was checked as the
        record was read, `note_cast`)."""
        if self.recordings is None:
            return
        checked = self.inline_casts
        for call, (place, sha256) in self.casts.items():
            if call in self.casts_removed:
                continue
            path = cast_path(self.recordings, call)
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:
                self.result.findings.append(Finding(
                    place, "cast-missing", f"the recording {path.name} this record names is "
                    f"not in {self.recordings}, and no cast-removed record says the budget "
                    "removed it"))
                continue
            except OSError as exc:
                raise Unreadable(f"cannot read {path}: {exc.strerror or exc}") from None
            checked += 1
            if digest != sha256:
                self.result.findings.append(Finding(
                    place, "cast-changed", f"the recording {path.name} does not match the "
                    "sha256 this record holds: it was changed after the call"))
        if not checked and not self.casts_removed:
            return
        self.result.notes.append(
            f"{checked} recording(s) match their records"
            + (f"; {len(self.casts_removed)} removed for the recordings budget, each recorded"
               if self.casts_removed else ""))

    def check_shipped(self, line: _Line) -> None:
        if self.shipped is None:
            return
        sent = self.shipped.pop(line.link.seq, None)
        if sent is not None and sent != line.link.hash:
            self.result.findings.append(Finding(line.place, "edited", "it is not the record "
                                                f"seq {line.link.seq} that was shipped"))

    def shipped_after_the_end(self) -> None:
        """Records the receiver holds beyond the local log's end: its end was cut."""
        if not self.shipped or self.last is None:
            return
        end = self.result.last_seq or 0
        later = sorted(seq for seq in self.shipped if seq > end)
        if later:
            self.result.findings.append(Finding(
                self.last.place, "truncated", f"the log ends at seq {end}, the shipped copy "
                f"goes on to seq {later[-1]} ({len(later)} record(s) more): the end was cut"))

    def step(self, line: _Line, after: _Line | None) -> bool:
        """Check one line against the last; True when `after` was dealt with too."""
        if line.problem is not None:
            self.find(line.place, *line.problem)
            self.before, self.last = self.last, line
            return False
        if not line.chained:
            if self.started:
                self.find(line.place, "inserted", "a record without seq and prev after the "
                          "chain began")
                self.before, self.last = self.last, line
                return False
            self.legacy += 1
            self.result.records += 1
            self.before, self.last = self.last, line
            return False
        assert line.record is not None
        seq, prev = line.record[SEQ], line.prev
        last = self.last
        if not self.started:
            self.started = True
            if not self.resync:
                self.first(line, seq, prev)
            self.accept(line)
            return False
        if self.resync or last is None:
            self.accept(line)
            return False
        if line.raw == last.raw:
            self.find(line.place, "inserted", "a copy of the line before it")
            self.resync = False  # the line before stays the one to follow
            return False
        expected = last.link
        if prev == expected.hash and seq == expected.seq + 1:
            self.accept(line)
            return False
        if prev == expected.hash:
            self.find(line.place, "edited", f"its seq is {seq}, the record before it has "
                      f"{expected.seq}")
            self.accept(line)
            return False
        before = self.before
        if before is not None and before.chained and prev == before.link.hash and (
                seq == before.link.seq + 1):
            # This one follows the line two back: the one between does not belong.
            self.find(last.place, "inserted", f"it (seq {expected.seq}) is not part of the "
                      f"chain: the next record ({line.place}) follows the one before it")
            self.last = before
            self.accept(line)
            return False
        if after is not None and after.chained and after.prev == expected.hash and (
                after.link.seq == expected.seq + 1):
            # The next line follows the one before this: this one is out of place.
            if prev == line_hash(after.raw) and seq == after.link.seq + 1:
                self.find(line.place, "reordered", f"it (seq {seq}) and the next line (seq "
                          f"{after.link.seq}) are the wrong way round")
                self.accept(after)
                self.accept(line)
                return True
            self.not_in_place(line, seq)
            return False
        if seq == expected.seq + 1:
            self.find(last.place, "edited", f"its hash is not the one the next record "
                      f"({line.place}) holds for it")
            self.accept(line)
            return False
        if seq > expected.seq + 1:
            self.find(line.place, "removed", self.gap(line, expected.seq + 1, seq - 1))
            for lost in range(expected.seq + 1, min(seq, expected.seq + 1 + 1000)):
                self.missing[lost] = line.place
            self.accept(line)
            return False
        self.not_in_place(line, seq)
        return False

    def not_in_place(self, line: _Line, seq: int) -> None:
        """A record that does not belong where it is: inserted, or moved from a gap."""
        gap = self.missing.pop(seq, None)
        if gap is not None:
            self.find(line.place, "reordered", f"this is record seq {seq}, found missing at "
                      f"{gap}")
        else:
            self.find(line.place, "inserted", f"it (seq {seq}) is not part of the chain: "
                      "the next line follows the one before it")
        self.resync = False  # the line before stays the one to follow

    def first(self, line: _Line, seq: int, prev: str) -> None:
        """The chain's first record: a new log, after pre-chain records, or after a file the
        budget removed."""
        if self.last is not None:  # records from before the chain
            if prev != self.last.link.hash or seq != 1:
                self.find(line.place, "edited", "the first chained record does not follow the "
                          "record before it")
            return
        if seq == 1 and prev == GENESIS:
            return
        removal = self.starts.get((seq - 1, prev))
        if removal is not None:
            self.result.notes.append(
                f"the chain starts at {line.place} (seq {seq}): {removal.get('file')} was "
                f"removed for the budget at {removal.get('time')} with the records up to seq "
                f"{seq - 1} (from {removal.get('first')} to {removal.get('last')})")
            return
        if seq == 1:
            self.find(line.place, "edited", "the first record of the log does not start the "
                      "chain")
            return
        self.find(line.place, "removed", f"the {seq - 1} record(s) before it (seq 1 to "
                  f"{seq - 1}) are missing and no removal record accounts for them: an older "
                  "file was deleted, or the start of this one cut")

    def gap(self, line: _Line, first: int, last: int) -> str:
        count = (f"1 record (seq {first})" if first == last
                 else f"{last - first + 1} records (seq {first} to {last})")
        before = self.last
        if line.place.line != 1 or before is None or before.path == line.path:
            return f"{count} before this line are missing"
        hole = _hole(before.path, line.path)
        if hole:
            return f"{count} before this line are missing: {hole} is gone"
        return f"{count} before this line are missing: the end of {before.place.file} was cut"

    def check_seal(self, line: _Line, record: Mapping[str, Any]) -> None:
        if record.get("event") != SEAL_EVENT:
            return
        self.seals += 1
        if self.key is None:
            return
        problem = seal_problem(record, self.key)
        if problem is not None:
            self.result.findings.append(Finding(line.place, "signature",
                                                f"this seal does not verify: {problem}"))
        else:
            self.signed = line

    def file_end(self, line: _Line) -> None:
        if self.key is None or line.path == self.current:
            return
        if self.signed is not line:
            self.result.findings.append(Finding(
                line.place, "unsigned", f"{line.place.file} ends without a seal signed by the "
                "key: it was rotated without the signing key, or its end was rewritten"))

    def coverage(self) -> None:
        if self.key is None:
            if self.seals:
                self.result.notes.append(f"{self.seals} seal(s) not checked: give the signing "
                                         "key's public half (--public-key) to check them")
            return
        if self.signed is None:
            self.result.notes.append("no seal verifies with the key: nothing is signed")
            return
        after = (self.result.last_seq or 0) - self.signed.link.seq
        self.result.notes.append(
            f"signed up to {self.signed.place} (seq {self.signed.link.seq})"
            + (f"; the {after} record(s) after it are not sealed yet (the agent seals at "
               "rotation and shutdown)" if after else ""))


def _hole(before: Path, after: Path) -> str | None:
    """The rotated file missing between two neighbours in the walk, if one is."""

    def number(path: Path) -> int:
        suffix = path.name.rsplit(".", 1)[-1]
        return int(suffix) if suffix.isdigit() else 0

    gone = number(before) - number(after) - 1
    if gone <= 0:
        return None
    names = [f"{after.name.rsplit('.', 1)[0] if number(after) else after.name}.{n}"
             for n in range(number(after) + 1, number(before))]
    return ", ".join(names)


def shipped_copy(path: Path) -> dict[int, str]:
    """seq -> line hash of every record in a receiver's file (each line holds one record's
    JSON after whatever header the receiver writes; the first copy of a record counts)."""
    found: dict[int, str] = {}
    try:
        with open(path, "rb") as f:
            for raw in f:
                start = raw.find(b"{")
                if start < 0:
                    continue
                line = raw[start:].rstrip(b"\r\n")
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and is_chained(record):
                    found.setdefault(record[SEQ], line_hash(
                        canonical(record, strict=True).encode("ascii")))
    except OSError as exc:
        raise Unreadable(f"cannot read the shipped copy {path}: {exc.strerror or exc}") from None
    return found


def verify(path: Path, key: Ed25519PublicKey | None = None,
           shipped: Path | None = None, recordings: Path | None = None) -> Verification:
    """Walk the log at `path` and its rotated files (and compare them with the `shipped`
    copy, and the casts in `recordings` with their records, when given); raises
    Unreadable when it cannot."""
    with _snapshot(path) as files:
        if not files:
            raise Unreadable(f"no audit log at {path} (nothing has run, or the agent writes "
                             "elsewhere: --audit-log / TAILNET_AGENT_AUDIT_LOG)")
        try:
            removed = [r for f in files for r in removals_at_top(f.handle)]
        except OSError as exc:
            raise Unreadable(f"cannot read the audit log: {exc.strerror or exc}") from None
        result = Verification([f.path for f in files])
        walk = _Walk(result, removed, key, path)
        walk.recordings = recordings
        if shipped is not None:
            walk.shipped = shipped_copy(shipped)
            result.notes.append(f"compared with the {len(walk.shipped)} record(s) of "
                                f"{shipped}")
        walk.run(_lines(files))
    return result
