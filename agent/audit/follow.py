"""Reading the audit log in order from a `seq` on, as the shipper does, across rotations.

The file being read stays open when the writer renames it (audit.jsonl -> audit.jsonl.1),
so nothing written to it before the rename is missed; at its end the reader goes on with
the file whose first record comes next. Only chained records are returned, each with its
line as written (what is shipped is the line, byte for byte).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any

from .chain import SEQ, START, Link, line_hash, parse_chained
from .reader import log_files


class LogReader:
    """Reads the log's chained records in order from a `seq` on, across rotations (a file
    renamed while it is read stays open; the next file is found by its first `seq`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._inode = 0
        self.last: Link = START  # the last record read

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def seek_after(self, seq: int) -> int | None:
        """Read from the first record after `seq`; returns the `seq` of the oldest record the
        log still holds when it is later than seq + 1 (the ones between are gone)."""
        self.close()
        files = log_files(self.path)
        chosen, oldest = None, None
        for file in reversed(files):  # newest first
            first = _first_seq(file)
            if first is None:
                continue
            oldest = first
            chosen = file
            if first <= seq + 1:
                break
        self.last = Link(seq, "")
        if chosen is None:
            return None
        self._open(chosen)
        return oldest if oldest is not None and oldest > seq + 1 else None

    def _open(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._file = open(path, "rb")  # noqa: SIM115 - kept open across calls
            self._inode = os.fstat(self._file.fileno()).st_ino

    def read(self, max_records: int, max_bytes: int) -> list[tuple[Link, dict[str, Any], bytes]]:
        """The next records (those at or before the last one read are skipped)."""
        found: list[tuple[Link, dict[str, Any], bytes]] = []
        size = 0
        while len(found) < max_records and size < max_bytes:
            if self._file is None:
                if self._reopen():
                    continue
                break
            position = self._file.tell()
            line = self._file.readline()
            if not line.endswith(b"\n"):
                self._file.seek(position)  # the end, or a line being written
                if self._rotated():
                    continue
                break
            record = parse_chained(line)
            if record is None or record[SEQ] <= self.last.seq:
                continue
            link = Link(record[SEQ], line_hash(line))
            found.append((link, record, line))
            size += len(line)
            self.last = link
        return found

    def _rotated(self) -> bool:
        """At the end of the file read: when the log moved on to another file, go there."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            return False
        if inode == self._inode or self._file is None:
            return False
        if self._file.read(1):  # written to before it was renamed: read that first
            self._file.seek(-1, os.SEEK_CUR)
            return True
        finished, last = self._inode, self.last
        self.seek_after(last.seq)
        self.last = last
        if self._inode == finished:  # records are missing after it: take the next file
            self.close()
            files = log_files(self.path)
            inodes = [_inode(f) for f in files]
            if finished in inodes and inodes.index(finished) + 1 < len(files):
                self._open(files[inodes.index(finished) + 1])
        return self._file is not None and self._inode != finished

    def _reopen(self) -> bool:
        """No file was open (the log did not exist yet): open the one to read now."""
        last = self.last
        self.seek_after(last.seq)
        self.last = last
        return self._file is not None


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return 0


def _first_seq(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            line = f.readline()
    except OSError:
        return None
    record = parse_chained(line)
    return record[SEQ] if record is not None else 0 if line else None
