"""`tailnet-agent audit verify`: every way of changing the log is found and named by its place.

The log is written by the real writer (rotating every 20 KB); each test changes the files
the way someone editing them by hand would, then runs the command as a script would and
reads its exit status and lines.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from agent.access.identity import Identity
from agent.audit.chain import Link, chained, line_hash, record_line
from agent.audit.writer import AuditLog
from agent.cli import main

ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")


def write_log(path: Path, calls: int, *, max_bytes: int = 20_000,
              budget: int = 10**9) -> AuditLog:
    log = AuditLog(path, max_bytes=max_bytes, budget=budget)
    for n in range(calls):
        call = log.new_call_id()
        log.start(call, ALICE, tool="run_command", command="uptime", host="web-1",
                  parameters={"n": n})
        log.end(call, ALICE, outcome="ran", exit_status=0, duration_ms=4.2)
    return log


@pytest.fixture
def audit(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write_log(path, 200)  # 400 records, seven files
    assert (tmp_path / "audit.jsonl.6").exists() and not (tmp_path / "audit.jsonl.7").exists()
    return path


def verify(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> tuple[int, list[str]]:
    status = main(["audit", "verify", "--env-file", "/dev/null", "--audit-log", str(path),
                   *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return status, (captured.out + captured.err).splitlines()


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def put(path: Path, new: list[bytes]) -> None:
    path.write_bytes(b"".join(new))


def edited(line: bytes, **changes: object) -> bytes:
    """The line with fields changed, still in canonical form (a careful editor)."""
    record = json.loads(line)
    record.update(changes)
    return record_line(record)


def test_an_untouched_log_verifies(audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = verify(capsys, audit)
    assert status == 0
    assert out == ["audit log OK: 400 records in 7 file(s), seq 1 to 400, every link intact"]


def test_an_edited_field_is_found_at_its_line(audit: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rotated = audit.with_name("audit.jsonl.2")
    content = lines(rotated)
    content[9] = edited(content[9], command="reboot")
    put(rotated, content)
    status, out = verify(capsys, audit)
    assert status == 1
    assert out[0] == ("audit.jsonl.2:10: edited: its hash is not the one the next record "
                      "(audit.jsonl.2:11) holds for it")
    assert out[-1].startswith("audit log NOT OK: 1 problem(s) in 400 records")


def test_the_last_record_of_a_rotated_file_edited_is_found_by_the_next_file(
        audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rotated = audit.with_name("audit.jsonl.3")
    content = lines(rotated)
    content[-1] = edited(content[-1], exit_status=1)
    put(rotated, content)
    status, out = verify(capsys, audit)
    assert status == 1
    assert out[0] == (f"audit.jsonl.3:{len(content)}: edited: its hash is not the one the next "
                      "record (audit.jsonl.2:1) holds for it")


def test_an_edit_that_is_not_canonical_json_is_found_where_it_is(
        audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content = lines(audit)
    record = json.loads(content[4])
    content[4] = (json.dumps(record) + "\n").encode()  # the same record, spaces added
    put(audit, content)
    status, out = verify(capsys, audit)
    assert status == 1
    assert out[0] == ("audit.jsonl:5: edited: it is not in the form the agent writes (keys "
                      "sorted, no spaces)")
    assert len(out) == 2  # one change, one finding


def test_a_deleted_line_is_found(audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rotated = audit.with_name("audit.jsonl.1")
    content = lines(rotated)
    seq = json.loads(content[20])["seq"]
    del content[20]
    put(rotated, content)
    status, out = verify(capsys, audit)
    assert status == 1
    assert out[0] == (f"audit.jsonl.1:21: removed: 1 record (seq {seq}) before this line "
                      "are missing")


def test_two_swapped_lines_are_found(audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content = lines(audit)
    content[6], content[7] = content[7], content[6]
    put(audit, content)
    status, out = verify(capsys, audit)
    assert status == 1
    first = json.loads(content[6])["seq"]
    assert out[0] == (f"audit.jsonl:7: reordered: it (seq {first}) and the next line (seq "
                      f"{first - 1}) are the wrong way round")
    assert len(out) == 2


def test_a_record_moved_further_down_is_found_missing_then_out_of_place(
        audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rotated = audit.with_name("audit.jsonl.1")
    content = lines(rotated)
    moved = content.pop(3)
    content.insert(9, moved)
    put(rotated, content)
    status, out = verify(capsys, audit)
    seq = json.loads(moved)["seq"]
    assert status == 1
    assert out[:2] == [
        f"audit.jsonl.1:4: removed: 1 record (seq {seq}) before this line are missing",
        f"audit.jsonl.1:10: reordered: this is record seq {seq}, found missing at "
        "audit.jsonl.1:4",
    ]


def test_an_inserted_forged_line_is_found(audit: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rotated = audit.with_name("audit.jsonl.2")
    content = lines(rotated)
    # A forger who knows the format: the forged record links to the line before it.
    before = json.loads(content[11])
    forged = chained({"time": before["time"], "event": "start", "call": "f0rged",
                      "identity": "bob@example.com", "command": "uptime"},
                     _link(content[11]))
    content.insert(12, record_line(forged))
    # And one who does not: a plain record copied from elsewhere, changed.
    naive = json.loads(content[30])
    naive.pop("seq"), naive.pop("prev")
    naive["identity"] = "carol@example.com"
    content.insert(31, (json.dumps(naive) + "\n").encode())
    put(rotated, content)
    status, out = verify(capsys, audit)
    assert status == 1
    assert out[0] == (f"audit.jsonl.2:13: inserted: it (seq {forged['seq']}) is not part of "
                      "the chain: the next record (audit.jsonl.2:14) follows the one before it")
    assert out[1] == ("audit.jsonl.2:32: inserted: a record without seq and prev after the "
                      "chain began")
    assert len(out) == 3


def test_a_line_repeated_is_found(audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content = lines(audit)
    content.insert(3, content[2])
    put(audit, content)
    status, out = verify(capsys, audit)
    assert status == 1
    assert out[0] == "audit.jsonl:4: inserted: a copy of the line before it"
    assert len(out) == 2


def _link(line: bytes) -> Link:
    return Link(json.loads(line)["seq"], line_hash(line))


def test_a_rotated_file_cut_short_is_found_at_the_next_file(
        audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rotated = audit.with_name("audit.jsonl.3")
    content = lines(rotated)
    first_cut = json.loads(content[-5])["seq"]
    put(rotated, content[:-5])
    status, out = verify(capsys, audit)
    assert status == 1
    assert out[0] == (f"audit.jsonl.2:1: removed: 5 records (seq {first_cut} to "
                      f"{first_cut + 4}) before this line are missing: the end of audit.jsonl.3 "
                      "was cut")


def test_the_current_file_cut_inside_a_line_is_found(
        audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = audit.read_bytes()
    audit.write_bytes(data[:-40])
    status, out = verify(capsys, audit)
    assert status == 1
    count = data.count(b"\n")
    assert out[0] == (f"audit.jsonl:{count}: truncated: audit.jsonl ends inside this line: cut "
                      "short, or the agent stopped while writing it")


def test_the_current_file_cut_while_the_agent_runs_is_found_by_its_next_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "audit.jsonl"
    log = write_log(path, 50)
    content = lines(path)
    put(path, content[:-3])  # whole lines: nothing shows until the agent writes again
    assert verify(capsys, path)[0] == 0
    with caplog.at_level(logging.ERROR, logger="agent.audit.writer"):
        log.start("next", ALICE, command="uptime")
    assert "was cut short or changed since this agent wrote its record seq 100" in caplog.text
    status, out = verify(capsys, path)
    assert status == 1
    assert out[0] == (f"audit.jsonl:{len(content) - 2}: removed: 3 records (seq 98 to 100) "
                      "before this line are missing")


def test_a_deleted_rotated_file_is_named(audit: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    audit.with_name("audit.jsonl.3").unlink()
    status, out = verify(capsys, audit)
    assert status == 1
    assert "removed:" in out[0] and out[0].startswith("audit.jsonl.2:1: ")
    assert out[0].endswith("before this line are missing: audit.jsonl.3 is gone")


def test_the_oldest_file_deleted_by_hand_is_not_a_budget_removal(
        audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit.with_name("audit.jsonl.6").unlink()
    status, out = verify(capsys, audit)
    assert status == 1
    assert out[0].startswith("audit.jsonl.5:1: removed: the ")
    assert out[0].endswith("are missing and no removal record accounts for them: an older "
                           "file was deleted, or the start of this one cut")


def test_files_the_budget_removed_are_reported_as_such(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "audit.jsonl"
    with caplog.at_level(logging.ERROR, logger="agent.audit.writer"):  # the removal warnings
        write_log(path, 600, budget=100_000)
    status, out = verify(capsys, path)
    assert status == 0, out
    assert out[0].startswith("note: the chain starts at audit.jsonl.")
    assert "was removed for the budget at" in out[0]
    assert out[-1].startswith("audit log OK: ")


def test_records_from_before_the_chain_are_counted_not_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    old = [{"time": "2026-01-01T00:00:00.000+00:00", "event": "start", "call": "old",
            "identity": "alice@example.com"},
           {"time": "2026-01-01T00:00:01.000+00:00", "event": "end", "call": "old",
            "identity": "alice@example.com", "outcome": "ran"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in old))  # as the old writer did
    write_log(path, 3)
    status, out = verify(capsys, path)
    assert status == 0
    assert out == ["note: 2 record(s) at the start were written before the chain (no seq, no "
                   "prev): they are not covered",
                   "audit log OK: 8 records in 1 file(s), seq 1 to 6, every link intact"]


def test_a_log_that_cannot_be_read_exits_2_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = verify(capsys, tmp_path / "none.jsonl")
    assert status == 2 and len(out) == 1 and "no audit log at" in out[0]
    (tmp_path / "dir.jsonl").mkdir()
    status, out = verify(capsys, tmp_path / "dir.jsonl")
    assert status == 2 and len(out) == 1 and "cannot read" in out[0]
    bad_key = tmp_path / "key.pub"
    bad_key.write_text("not a key\n")
    write_log(tmp_path / "audit.jsonl", 1)
    status, out = verify(capsys, tmp_path / "audit.jsonl", "--public-key", str(bad_key))
    assert status == 2 and len(out) == 1 and "is not a public key" in out[0]


def test_garbage_in_the_log_is_one_finding_not_a_traceback(
        audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content = lines(audit)
    content.insert(2, b"\x00\xff{\"not json\n")
    content.insert(5, b"[1, 2]\n")
    put(audit, content)
    status, out = verify(capsys, audit)
    assert status == 1
    assert out[:2] == ["audit.jsonl:3: damaged: not a JSON record (edited or inserted)",
                       "audit.jsonl:6: damaged: not a JSON record (edited or inserted)"]


def test_ten_thousand_records_with_rotations_verify(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 5000, max_bytes=500_000)
    started = time.perf_counter()
    status, out = verify(capsys, path)
    took = time.perf_counter() - started
    assert status == 0, out
    assert out[-1].startswith("audit log OK: 10000 records in ")
    assert len(list(tmp_path.glob("audit.jsonl.*"))) >= 5
    print(f"verify: 10,000 records in {took:.3f} s")  # the figure: tests/bench/bench_audit.py
