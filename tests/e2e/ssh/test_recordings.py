"""Every command's output is recorded as an asciinema cast, through the service on the real
sshd: a long command replays the same (redacted) bytes with their timing, the recordings
stay within their cap and budget under 200 big outputs with every removal in the audit
log, and `tailnet-agent audit show` prints a call with its output or says why it cannot."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from agent.access.identity import Identity
from agent.audit.casts import REMOVED_EVENT, load, output
from agent.audit.reader import read_calls, read_records
from agent.cli import main
from agent.core.service import AgentService
from tests.support.secrets_planted import AWS_KEY_ID
from tests.support.services import ServiceFactory

ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")
CATALOG = f"""
commands:
  slow_lines:
    description: Print a line every 0.2 s for 2 s, a key, and a warning on stderr.
    category: Test
    template: >-
      for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i of ten"; sleep 0.2; done;
      echo 'the key is {AWS_KEY_ID} (do not share)'; echo 'warning: tired' >&2;
      printf 'caf\\303\\251 \\342\\234\\223 done'
    timeout: 30
  raw_key:
    description: Print a key, shown as it is (redact false).
    category: Test
    template: "echo 'key {AWS_KEY_ID}'"
    redact: false
  big_output:
    description: Print 290 KB.
    category: Test
    template: "seq 1 50000"
"""

def end_record(service: AgentService, call: str) -> dict[str, Any]:
    return next(c.merged() for c in read_calls(service.audit.path) if c.call == call)


def cast_events(path: Path) -> list[list[Any]]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n")[1:] if line]


async def test_a_long_command_replays_the_same_redacted_bytes_with_its_timing(
        make: ServiceFactory) -> None:
    service = make()
    result = await service.run("slow_lines", {}, host=None, identity=ALICE)
    assert result.audit_id is not None and result.exit_status == 0
    record = end_record(service, result.audit_id)
    path = service.settings.recordings_path / f"{result.audit_id}.cast"
    data = path.read_bytes()
    assert record["cast"] == {"id": result.audit_id, "bytes": len(data),
                              "sha256": hashlib.sha256(data).hexdigest()}
    # The same bytes the caller was shown, redacted, stream by stream.
    replayed = output(data)
    assert replayed.stdout == result.stdout and replayed.stderr == result.stderr
    assert AWS_KEY_ID.encode() not in data and "[REDACTED: " in replayed.stdout
    assert replayed.stdout.endswith("café ✓ done")
    assert replayed.stderr == "warning: tired\n"
    # Timing: never backwards, and the lines spread over the two seconds they took.
    events = cast_events(path)
    times = [e[0] for e in events]
    assert times == sorted(times)
    lines = {e[2].strip(): e[0] for e in events if e[1] == "o" and "of ten" in e[2]}
    assert len(lines) == 10, events
    assert 1.4 < lines["line 10 of ten"] - lines["line 1 of ten"] < 6
    assert ["m", "stderr"] in [e[1:] for e in events]


async def test_a_command_shown_unredacted_is_recorded_redacted(make: ServiceFactory) -> None:
    service = make()
    result = await service.run("raw_key", {}, host=None, identity=ALICE)
    assert AWS_KEY_ID in result.stdout  # redact: false, as the catalog asks
    assert result.audit_id is not None
    # A line of output: the cast is in the end record itself (agent/audit/recorder.py).
    ref = end_record(service, result.audit_id)["cast"]
    assert "inline" in ref and not (service.settings.recordings_path
                                    / f"{result.audit_id}.cast").exists()
    data = load(service.settings.recordings_path, ref)
    assert AWS_KEY_ID.encode() not in data and b"[REDACTED: " in data
    assert AWS_KEY_ID not in service.audit.path.read_text()


async def test_two_hundred_big_outputs_stay_within_the_recordings_bounds(
        make: ServiceFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cap, budget = 65_536, 1_000_000
    service = make(recording_max_bytes=cap, recordings_budget=budget,
                   rate_per_minute=100_000, rate_burst=100_000)
    directory = service.settings.recordings_path
    calls: list[str] = []
    for _ in range(25):  # 200 calls, 8 at a time
        results = await asyncio.gather(*(service.run("big_output", {}, host=None,
                                                     identity=ALICE) for _ in range(8)))
        calls += [r.audit_id or "" for r in results]
        sizes = [p.stat().st_size for p in directory.iterdir()]
        assert max(sizes) <= cap and sum(sizes) <= budget
    kept = {p.stem for p in directory.iterdir()}
    removed = [r for r in read_records(service.audit.path) if r.get("event") == REMOVED_EVENT]
    assert len(kept) + len(removed) == 200 and len(kept) >= 14
    assert {r["cast"] for r in removed} | kept == set(calls)
    # Oldest first: every removed recording was finished before every kept one.
    order = {c.call: n for n, c in enumerate(read_calls(service.audit.path))}
    assert max(order[r["cast"]] for r in removed) < min(order[k] for k in kept) + 8
    ends = {c.call: c.merged() for c in read_calls(service.audit.path)}
    assert all(ends[k]["cast"]["cut"] == "cap" for k in kept)

    # `audit show` on a kept call: its record, then its output; --cast writes the cast.
    log = ["--env-file", "/dev/null", "--audit-log", str(service.audit.path)]
    shown = sorted(kept)[0]
    assert main(["audit", "show", shown, *log]) == 0
    out = capsys.readouterr().out
    assert f'"call": "{shown}"' in out and "--- stdout ---" in out and "\n1\n2\n3\n" in out
    assert "cut: the recording reached its cap of 65536 bytes" in out
    copy = tmp_path / "copy.cast"
    assert main(["audit", "show", shown, "--cast", str(copy), *log]) == 0
    assert copy.read_bytes() == (directory / f"{shown}.cast").read_bytes()
    assert "asciinema play" in capsys.readouterr().err
    # A removed recording, and an unknown call: one line each, with the next step.
    gone = removed[0]["cast"]
    assert main(["audit", "show", gone, *log]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"recording of call {gone} was removed" in error
    assert "TAILNET_AGENT_RECORDINGS_BUDGET" in error
    assert main(["audit", "show", "00000000deadbeef", *log]) == 1
    error = capsys.readouterr().err.strip()
    assert "no call '00000000deadbeef'" in error and "`tailnet-agent audit`" in error
