"""`tailnet-agent audit`: show and filter the log by identity, host, command and time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.access.identity import Identity
from agent.audit.reader import recent_calls
from agent.audit.writer import AuditLog
from agent.cli import main

ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")
BOB = Identity(login="bob@example.com", node="phone.tailnet.test")


def write_log(path: Path) -> None:
    log = AuditLog(path)
    old = {"time": "2020-01-01T00:00:00.000+00:00", "event": "start", "call": "old1",
           "identity": "alice@example.com", "login": "alice@example.com", "host": "web",
           "command": "uptime", "decision": {"allowed": True, "rule": "r", "reason": ""}}
    log.write(old)
    log.write({"time": "2020-01-01T00:00:01.000+00:00", "event": "end", "call": "old1",
               "identity": "alice@example.com", "outcome": "ran", "exit_status": 0})
    for identity, host, command, outcome in (
        (ALICE, "web", "disk_usage", "ran"),
        (BOB, "db", "make_marker", "refused"),
        (BOB, "web", "hostname", "ran"),
    ):
        call = log.new_call_id()
        allowed = outcome == "ran"
        log.start(call, identity, host=host, command=command, parameters={},
                  decision={"allowed": allowed, "rule": "rule-x" if allowed else "default deny",
                            "reason": "because"})
        log.end(call, identity, outcome=outcome, exit_status=0 if allowed else None,
                duration_ms=5.0)
    log.write({"time": "2026-01-01T00:00:00.000+00:00", "event": "start", "call": "crash",
               "identity": "carol", "host": "web", "command": "uptime"})


def run(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> list[str]:
    assert main(["audit", "--env-file", "/dev/null", "--audit-log", str(path), *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_audit_shows_one_line_per_call_and_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    lines = run(capsys, path)
    assert len(lines) == 5
    assert "bob@example.com [phone.tailnet.test] make_marker on db: refused (default deny)" in (
        lines[2])
    assert lines[4].endswith("uptime on web: unfinished")
    assert len(run(capsys, path, "--since", "1h")) == 3
    assert len(run(capsys, path, "--since", "2025-12-31T00:00:00")) == 4
    assert len(run(capsys, path, "--identity", "bob@example.com")) == 2
    assert len(run(capsys, path, "--host", "web")) == 4
    (only,) = run(capsys, path, "--command", "disk_usage", "--identity", "ALICE@example.com")
    assert "disk_usage on web: exit 0" in only
    records = [json.loads(line) for line in run(capsys, path, "--json", "--host", "db")]
    assert len(records) == 1
    assert records[0]["outcome"] == "refused" and records[0]["decision"]["rule"] == "default deny"
    # The operator sees where the call's records sit in the chain; a caller's own view
    # (recent_calls) does not, nor the hash of someone else's record.
    assert (records[0]["seq"], records[0]["end_seq"]) == (5, 6) and "prev" not in records[0]
    (mine,) = recent_calls(path, BOB, limit=1)
    assert not {"seq", "end_seq", "prev"} & set(mine)


def test_audit_says_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    assert main(["audit", "--env-file", "/dev/null", "--audit-log", str(path)]) == 1
    assert "no audit log at" in capsys.readouterr().err
    write_log(path)
    assert main(["audit", "--env-file", "/dev/null", "--audit-log", str(path),
                 "--since", "yesterday"]) == 2
    assert "use a duration like 90s" in capsys.readouterr().err


def test_audit_show_prints_a_call_and_says_why_it_has_no_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.audit.casts import CastStore

    path = tmp_path / "audit.jsonl"
    write_log(path)
    log = ["--env-file", "/dev/null", "--audit-log", str(path)]
    # A refused call: its record, and no recording.
    refused = next(json.loads(line)["call"] for line in path.read_text().splitlines()
                   if '"make_marker"' in line)
    assert main(["audit", "show", refused, *log]) == 0
    out = capsys.readouterr().out
    assert f'"call": "{refused}"' in out and "no recording: it ran no command" in out
    assert main(["audit", "show", refused, "--cast", str(tmp_path / "x.cast"), *log]) == 1
    assert "has no recording" in capsys.readouterr().err
    # A call the agent never finished: what it recorded so far, said to be unchecked.
    call = "00000000c0ffee00"
    AuditLog(path).start(call, ALICE, host="web", command="tail_log", parameters={})
    recording = CastStore(tmp_path / "casts", per_call=100_000, budget=1_000_000).start(
        call, "tail_log on web")
    recording.feed(False, b"first lines\x1b]0;title\x07\n")
    recording.finish()
    assert main(["audit", "show", call, *log]) == 0
    shown = capsys.readouterr()
    assert "no end record" in shown.err and "unchecked" in shown.err
    # The output is printed with its escape sequences escaped for the terminal.
    assert "first lines\\x1b]0;title\\x07\n" in shown.out and "\x1b" not in shown.out
    # One stopped in its first second: its output was still in memory, and that is said.
    early = "00000000c0ffee01"
    AuditLog(path).start(early, ALICE, host="web", command="uptime", parameters={})
    assert main(["audit", "show", early, *log]) == 0
    assert "the agent stopped during it, before its output reached" in capsys.readouterr().out


def test_audit_lists_show_the_call_ids(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    lines = run(capsys, path)
    assert lines[0].split()[1] == "old1" and lines[4].split()[1] == "crash"
