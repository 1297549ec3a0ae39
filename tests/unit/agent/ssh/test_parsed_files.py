"""known_hosts and client keys are parsed once per version of the file (parsed_files.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.ssh.parsed_files import ParsedFiles


def counting() -> tuple[ParsedFiles[str], list[bytes]]:
    parsed: list[bytes] = []

    def parse(_path: Path, data: bytes, *extra: object) -> str:
        parsed.append(data)
        if data.startswith(b"bad"):
            raise ValueError("unparsable")
        return data.decode() + "".join(map(str, extra))

    return ParsedFiles(parse, missing=lambda: "(none)"), parsed


def test_an_unchanged_file_is_parsed_once(tmp_path: Path) -> None:
    files, parsed = counting()
    path = tmp_path / "known_hosts"
    path.write_bytes(b"one")
    assert [files.get(path) for _ in range(100)] == ["one"] * 100
    assert parsed == [b"one"]


def test_an_edit_a_replace_and_a_removal_are_seen_by_the_next_read(tmp_path: Path) -> None:
    files, parsed = counting()
    path = tmp_path / "known_hosts"
    path.write_bytes(b"one")
    assert files.get(path) == "one"
    path.write_bytes(b"two, longer")  # edited in place
    assert files.get(path) == "two, longer"
    other = tmp_path / "new"
    other.write_bytes(b"six")  # same size, another inode: `tailnet-agent trust` replaces
    os.replace(other, path)
    assert files.get(path) == "six"
    path.unlink()
    assert files.get(path) == "(none)"
    path.write_bytes(b"one")
    assert files.get(path) == "one"
    assert parsed == [b"one", b"two, longer", b"six", b"one"]


def test_a_failure_is_not_kept_and_extra_is_part_of_the_key(tmp_path: Path) -> None:
    files, parsed = counting()
    path = tmp_path / "id_ed25519"
    path.write_bytes(b"bad key")
    for _ in range(2):
        with pytest.raises(ValueError):
            files.get(path)
    assert len(parsed) == 2  # parsed (and failing) again each time
    path.write_bytes(b"key")
    assert files.get(path, "pass1") == "keypass1"
    assert files.get(path, "pass2") == "keypass2"
    assert files.get(path, "pass1") == "keypass1"
    assert len(parsed) == 4


def test_a_missing_file_without_a_default_raises(tmp_path: Path) -> None:
    files: ParsedFiles[bytes] = ParsedFiles(lambda _path, data: data)
    with pytest.raises(FileNotFoundError):
        files.get(tmp_path / "nope")
