"""LogReader: the shipper's view of the log, in order across rotations and removals."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.access.identity import Identity
from agent.audit.chain import line_hash
from agent.audit.follow import LogReader
from agent.audit.writer import AuditLog

ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")


def test_reading_while_the_log_rotates_misses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=5_000)
    reader = LogReader(path)
    reader.seek_after(0)
    seen: list[int] = []
    lines: dict[int, bytes] = {}
    for n in range(300):
        log.start(f"c{n}", ALICE, command="uptime", parameters={"n": n})
        if n % 7 == 0:  # the reader falls behind by a few records, over rotations
            for link, record, line in reader.read(5, 1 << 20):
                seen.append(link.seq)
                lines[link.seq] = line
                assert link.hash == line_hash(line) and record["seq"] == link.seq
    while batch := reader.read(50, 1 << 20):
        for link, _, line in batch:
            seen.append(link.seq)
            lines[link.seq] = line
    assert seen == list(range(1, 301))
    assert len(list(tmp_path.glob("audit.jsonl.*"))) > 10
    on_disk = {int(line.split(b'"seq":')[1].split(b",")[0]): line + b"\n"
               for f in tmp_path.iterdir() for line in f.read_bytes().splitlines()}
    assert lines == on_disk


def test_a_reader_behind_a_file_the_budget_removed_says_where_the_log_starts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=10_000, budget=30_000)
    with caplog.at_level(logging.ERROR):
        for n in range(400):
            log.start(f"c{n}", ALICE, command="uptime", parameters={"n": n})
    reader = LogReader(path)
    oldest = reader.seek_after(0)
    assert oldest is not None and oldest > 1
    first = reader.read(1, 1 << 20)
    assert first[0][0].seq == oldest
    assert reader.seek_after(oldest + 10) is None  # still there: no gap
    assert reader.read(1, 1 << 20)[0][0].seq == oldest + 11
