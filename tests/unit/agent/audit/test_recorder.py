"""A recording is a valid asciinema v2 cast of exactly what it was fed: timing, streams,
line ends, UTF-8 cut across chunks, its cap, and the sha256 its reference carries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from agent.audit.casts import output
from agent.audit.recorder import CUT_PREFIX, INLINE_MAX, SPILL_SECONDS, Recording
from agent.output.spool import DiskBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def events(path: Path) -> tuple[dict[str, object], list[list[object]]]:
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:-1]]


def record(tmp_path: Path, chunks: list[tuple[bool, bytes]], *, cap: int = 1 << 20,
           budget: DiskBudget | None = None) -> tuple[Recording, Path]:
    clock = Clock()
    path = tmp_path / "0123456789abcdef.cast"
    recording = Recording("0123456789abcdef", path, title="uptime on web", cap=cap,
                          budget=budget or DiskBudget(1 << 30), clock=clock)
    for stderr, data in chunks:
        clock.now += 0.25
        recording.feed(stderr, data)
    return recording, path


def test_a_cast_holds_both_streams_in_order_with_their_timing(tmp_path: Path) -> None:
    chunks = [(False, b"one\ntwo\n"), (True, b"warning: disk\n"), (True, b"again\n"),
              (False, b"three\r\n"), (False, b"no end")]
    recording, path = record(tmp_path, chunks)
    ref = recording.finish()
    header, cast = events(path)
    assert header["version"] == 2 and header["title"] == "uptime on web"
    assert isinstance(header["timestamp"], int) and header["width"] and header["height"]
    assert [e[1:] for e in cast] == [
        ["o", "one\r\ntwo\r\n"], ["m", "stderr"], ["o", "warning: disk\r\n"],
        ["o", "again\r\n"], ["m", "stdout"], ["o", "three\r\r\n"], ["o", "no end"]]
    times = [e[0] for e in cast]
    assert times == sorted(times) and times[0] == 0.25 and times[-1] == 1.25
    shown = output(path.read_bytes())
    assert shown.stdout == "one\ntwo\nthree\r\nno end"
    assert shown.stderr == "warning: disk\nagain\n"
    assert shown.cut is None and shown.duration == 1.25
    assert ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ref.bytes == path.stat().st_size and ref.cut is None
    assert path.stat().st_mode & 0o777 == 0o600


def test_characters_cut_across_chunks_arrive_whole(tmp_path: Path) -> None:
    text = "héllo wörld ✓ 🚀\n".encode()
    recording, path = record(tmp_path, [(False, text[i:i + 1]) for i in range(len(text))]
                             + [(False, b"\xff bad byte\n")])
    recording.finish()
    assert output(path.read_bytes()).stdout == "héllo wörld ✓ 🚀\n\ufffd bad byte\n"


def test_a_time_that_goes_back_never_goes_back_in_the_cast(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "0123456789abcdef.cast"
    recording = Recording("0123456789abcdef", path, title="t", cap=1 << 20,
                          budget=DiskBudget(1 << 20), clock=clock)
    for step in (1.0, -0.5, 2.0):
        clock.now += step
        recording.feed(False, b"x\n")
    recording.finish()
    times = [e[0] for e in events(path)[1]]
    assert times == [1.0, 1.0, 2.5]


def test_a_recording_stops_at_its_cap_and_says_so(tmp_path: Path) -> None:
    cap = 70_000
    budget = DiskBudget(1 << 30)
    chunks = [(False, b"".join(b"line %06d of a long output\n" % n
                               for n in range(k * 500, (k + 1) * 500))) for k in range(20)]
    recording, path = record(tmp_path, chunks, cap=cap, budget=budget)
    ref = recording.finish()
    assert path.stat().st_size <= cap and ref.cut == "cap"
    _, cast = events(path)  # every line is JSON, the last a marker
    assert cast[-1][1] == "m" and str(cast[-1][2]).startswith(CUT_PREFIX)
    shown = output(path.read_bytes())
    assert shown.cut is not None and "70000 bytes" in shown.cut
    expected = b"".join(data for _, data in chunks).decode()
    assert expected.startswith(shown.stdout) and len(shown.stdout) > 60_000
    # What the budget counts is what is on disk, once the recording is closed.
    assert budget.used == path.stat().st_size


def test_a_recording_without_room_in_the_budget_is_cut(tmp_path: Path) -> None:
    budget = DiskBudget(4_000)
    recording, path = record(tmp_path, [(False, b"x" * 1000 + b"\n")] * 10, budget=budget)
    ref = recording.finish()
    assert ref.cut == "budget" and budget.used == path.stat().st_size <= 4_000
    assert "budget" in str(output(path.read_bytes()).cut)


def test_output_after_finish_is_dropped(tmp_path: Path) -> None:
    recording, path = record(tmp_path, [(False, b"a\n")])
    first = recording.finish()
    recording.feed(False, b"late\n")
    assert recording.finish() == first
    assert output(path.read_bytes()).stdout == "a\n"


# -- small casts, kept in the audit record ---------------------------------------------


def small(tmp_path: Path, chunks: list[tuple[float, bytes]], *, keep: bool = True,
          budget: DiskBudget | None = None) -> tuple[Recording, Path, Clock]:
    """A recording that may stay inline, fed `chunks` (seconds after its start, bytes)."""
    clock = Clock()
    path = tmp_path / "0123456789abcdef.cast"
    recording = Recording("0123456789abcdef", path, title="hostname on web", cap=1 << 20,
                          budget=budget or DiskBudget(1 << 30), clock=clock,
                          inline=lambda text: keep)
    start = clock.now
    for at, data in chunks:
        clock.now = start + at
        recording.feed(False, data)
    return recording, path, clock


def test_a_small_cast_is_kept_in_its_record_and_no_file_is_made(tmp_path: Path) -> None:
    budget = DiskBudget(1 << 20)
    recording, path, _ = small(tmp_path, [(0.01, b"web-001\n")], budget=budget)
    ref = recording.finish()
    assert not path.exists() and ref.inline is not None
    data = ref.inline.encode()
    assert ref.fields() == {"id": "0123456789abcdef", "sha256": hashlib.sha256(data).hexdigest(),
                            "bytes": len(data), "inline": ref.inline}
    header = data.decode().splitlines()[0]
    assert json.loads(header)["title"] == "hostname on web"
    assert output(data).stdout == "web-001\n"
    assert budget.used == 0  # on no disk of ours


def test_a_cast_past_its_inline_size_goes_to_its_file_whole(tmp_path: Path) -> None:
    line = b"x" * 100 + b"\n"
    recording, path, _ = small(tmp_path, [(0.01 * i, line) for i in range(12)])
    assert path.exists()  # on disk as soon as it outgrew the record, not at the end
    ref = recording.finish()
    assert ref.inline is None and ref.bytes == path.stat().st_size > INLINE_MAX
    assert ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert output(path.read_bytes()).stdout == (line * 12).decode()


def test_a_command_running_past_the_spill_time_is_on_disk_as_it_runs(tmp_path: Path) -> None:
    recording, path, clock = small(tmp_path, [(0.1, b"starting\n")])
    assert not path.exists()
    clock.now += SPILL_SECONDS
    recording.feed(False, b"still going\n")
    assert path.exists()  # a crash of the agent from here on loses nothing recorded
    assert output(path.read_bytes()).stdout == "starting\nstill going\n"
    ref = recording.finish()
    assert ref.inline is None and ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_cast_the_audit_log_would_alter_goes_to_its_file(tmp_path: Path) -> None:
    recording, path, _ = small(tmp_path, [(0.01, b"token abcdefgh\n")], keep=False)
    assert not path.exists()
    ref = recording.finish()
    assert ref.inline is None and path.exists()
    assert ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_recording_no_run_holds_for_a_cast_that_may_stay_inline(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        small(tmp_path / "gone", [])
    (tmp_path / "taken.cast").write_text("")  # a file is never written over
    with pytest.raises(FileExistsError):
        Recording("taken", tmp_path / "taken.cast", title="t", cap=1 << 20,
                  budget=DiskBudget(1 << 20), inline=lambda text: True)
