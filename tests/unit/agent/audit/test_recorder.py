"""A recording is a valid asciinema v2 cast of exactly what it was fed: timing, streams,
line ends, UTF-8 cut across chunks, its cap, and the sha256 its reference carries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from agent.audit.casts import output
from agent.audit.recorder import CUT_PREFIX, Recording
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
