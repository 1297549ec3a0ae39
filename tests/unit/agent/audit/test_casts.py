"""The recordings on disk stay within their budget: the oldest go first, each removal is in
the audit log before the file goes, and a removal that cannot be recorded does not
happen. A cast read back is checked against the sha256 of its audit record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.audit.casts import REMOVED_EVENT, CastChanged, CastMissing, CastStore, load, output
from agent.audit.verify import verify
from agent.audit.writer import AuditLog
from agent.errors import AuditUnavailable


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_hundred_big_outputs_stay_within_the_cap_and_the_budget(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    store = CastStore(tmp_path / "casts", per_call=100_000, budget=1_000_000,
                      record=audit.write)
    made = []
    for n in range(200):
        call = f"{n:016x}"
        recording = store.start(call, f"big {n}")
        for _ in range(40):  # 40 x 4 KB: more than the per-call cap
            recording.feed(False, (b"%04d " % n) * 800 + b"\n")
        ref = recording.finish()
        made.append(call)
        assert ref.cut == "cap" and ref.bytes <= 100_000
        on_disk = sum(p.stat().st_size for p in (tmp_path / "casts").iterdir())
        assert on_disk <= 1_000_000
        assert store.budget.used == on_disk
    kept = sorted(p.stem for p in (tmp_path / "casts").iterdir())
    removed = [r for r in records(audit.path) if r["event"] == REMOVED_EVENT]
    # Oldest first, each recorded once, and exactly those are gone.
    assert [r["cast"] for r in removed] == made[: len(removed)]
    assert kept == made[len(removed):] and len(kept) >= 9
    assert all(r["bytes"] > 90_000 and r["recorded"] for r in removed)
    assert store.removed == len(removed) == 200 - len(kept)


def test_a_removal_that_cannot_be_recorded_does_not_happen(tmp_path: Path) -> None:
    def refuse(record: object) -> None:
        raise AuditUnavailable("cannot write the audit log")

    store = CastStore(tmp_path / "casts", per_call=100_000, budget=250_000, record=refuse)
    for n in range(3):
        recording = store.start(f"{n:016x}", "t")
        for _ in range(30):
            recording.feed(False, b"y" * 4000 + b"\n")
        ref = recording.finish()
    assert ref.cut == "budget"
    assert sorted(p.stem for p in (tmp_path / "casts").iterdir()) == [f"{n:016x}"
                                                                       for n in range(3)]
    with pytest.raises(OSError, match="TAILNET_AGENT_RECORDINGS_BUDGET"):
        for n in range(3, 200):
            store.start(f"{n:016x}", "t").finish()


def test_casts_already_on_disk_count_and_a_lowered_budget_removes_the_oldest(
        tmp_path: Path) -> None:
    directory = tmp_path / "casts"
    directory.mkdir()
    for n in range(5):
        path = directory / f"{n:016x}.cast"
        path.write_bytes(b"z" * 10_000)
        os.utime(path, (1000 + n, 1000 + n))
    (directory / "not-a-cast.txt").write_text("left alone")
    audit = AuditLog(tmp_path / "audit.jsonl")
    store = CastStore(directory, per_call=100_000, budget=35_000, record=audit.write)
    store.start("00000000000000ff", "t").finish()
    assert [r["cast"] for r in records(audit.path)] == [f"{n:016x}" for n in range(2)]
    assert (directory / "not-a-cast.txt").exists()
    assert store.budget.used <= 35_000


def test_a_cast_is_checked_against_its_record(tmp_path: Path) -> None:
    store = CastStore(tmp_path / "casts", per_call=100_000, budget=1_000_000)
    recording = store.start("0123456789abcdef", "t")
    recording.feed(False, b"hello\n")
    ref = recording.finish().fields()
    assert output(load(store.directory, ref)).stdout == "hello\n"
    path = store.directory / "0123456789abcdef.cast"
    path.write_bytes(path.read_bytes().replace(b"hello", b"HELLO"))
    with pytest.raises(CastChanged, match="changed after the call"):
        load(store.directory, ref)
    path.unlink()
    with pytest.raises(CastMissing):
        load(store.directory, ref)
    with pytest.raises(ValueError, match="not a call id"):
        load(store.directory, {"id": "../../etc/passwd", "sha256": "x"})


def test_verify_finds_a_changed_or_missing_cast_but_not_one_the_budget_removed(
        tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    store = CastStore(tmp_path / "casts", per_call=100_000, budget=25_000, record=audit.write)
    calls = [f"{n:016x}" for n in range(4)]
    for call in calls:
        recording = store.start(call, "t")
        recording.feed(False, b"z" * 8_000 + b"\n")
        audit.write({"time": "t", "event": "end", "call": call,
                     "cast": recording.finish().fields()})
    # The budget removed the oldest, and said so in the log.
    removed = [r["cast"] for r in records(audit.path) if r["event"] == REMOVED_EVENT]
    assert removed and removed[0] == calls[0]
    result = verify(audit.path, recordings=store.directory)
    assert result.ok, result.findings
    assert any("removed for the recordings budget" in note for note in result.notes)
    # Without the casts directory, nothing about casts is said.
    assert not any("recording" in note for note in verify(audit.path).notes)

    changed, gone = store.directory / f"{calls[-1]}.cast", store.directory / f"{calls[-2]}.cast"
    changed.write_bytes(changed.read_bytes().replace(b"zzz", b"zyz", 1))
    gone.unlink()
    result = verify(audit.path, recordings=store.directory)
    lines = audit.path.read_text().splitlines()
    where = {json.loads(line).get("call"): n for n, line in enumerate(lines, start=1)}
    assert sorted((f.kind, f.place.line) for f in result.findings) == sorted(
        [("cast-changed", where[calls[-1]]), ("cast-missing", where[calls[-2]])])


def test_a_small_cast_in_its_record_is_read_back_and_verified_there(tmp_path: Path) -> None:
    """What `audit show`, the replay page and `audit verify` read of a cast kept inline: no
    file, the same bytes and the same check; the budget does not count it; a record whose
    cast was changed (and the chain sealed again over it) is still found out by its sha256,
    and a huge record cannot push the cast out of it."""
    audit = AuditLog(tmp_path / "audit.jsonl")
    store = CastStore(tmp_path / "casts", per_call=100_000, budget=1_000_000,
                      record=audit.write, inline=lambda text: not audit.hides(text))
    calls = [f"{n:016x}" for n in range(3)]
    for call in calls:
        recording = store.start(call, "hostname on web")
        recording.feed(False, f"web-{call[-1]}\n".encode())
        audit.write({"time": "t", "event": "end", "call": call,
                     "cast": recording.finish().fields(), "note": "n" * 900,
                     "parameters": {f"p{i}": "v" * 900 for i in range(9)}})
    assert not any(store.directory.iterdir()) and store.budget.used == 0
    written = records(audit.path)
    assert all(len(json.dumps(r["cast"])) < 1000 for r in written)
    ref = written[1]["cast"]
    assert isinstance(ref, dict) and "inline" in ref
    assert output(load(store.directory, ref)).stdout == "web-1\n"
    result = verify(audit.path, recordings=store.directory)
    assert result.ok and any("3 recording(s) match" in note for note in result.notes)

    with pytest.raises(CastChanged, match="in its audit record"):
        load(store.directory, {**ref, "inline": ref["inline"].replace("web-1", "web-9")})
    changed = AuditLog(tmp_path / "changed.jsonl")
    changed.write({"time": "t", "event": "end", "call": calls[0],
                   "cast": {**ref, "inline": ref["inline"].replace("web-1", "web-9")}})
    found = verify(changed.path, recordings=store.directory).findings
    assert [f.kind for f in found] == ["cast-changed"]
