"""The chain as the writer keeps it (restarts, several processes, a log changed under it) and
the seals: what a key proves that the chain alone cannot."""

from __future__ import annotations

import dataclasses
import itertools
import json
import multiprocessing
import subprocess
import threading
import time
from pathlib import Path

import pytest

from agent.access.identity import Identity
from agent.app import build_service
from agent.audit.chain import (
    GENESIS,
    SEAL_EVENT,
    Signer,
    line_hash,
    load_public_key,
    record_line,
)
from agent.audit.reader import log_files, read_calls
from agent.audit.verify import verify
from agent.audit.writer import AuditLog
from agent.cli import main
from agent.commands.doctor import run_doctor
from agent.errors import ConfigError
from agent.settings import load_settings
from tests.support.components import require_executable

ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for file in log_files(path) for line in file.read_bytes().splitlines()]


def calls(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.start(f"call{i}", ALICE, command="uptime", parameters={"n": i})
        log.end(f"call{i}", ALICE, outcome="ran", exit_status=0)


def keygen(path: Path, *args: str) -> Path:
    """A key as a user makes one: `ssh-keygen -t ed25519` (or other arguments)."""
    ssh_keygen = require_executable("ssh-keygen", "apt-get install openssh-client")
    subprocess.run([ssh_keygen, "-q", "-N", "", "-C", "audit", "-f", str(path),
                    *(args or ("-t", "ed25519"))], check=True, stdin=subprocess.DEVNULL)
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    (tmp_path / "keys").mkdir()
    return keygen(tmp_path / "keys" / "audit")


def test_the_first_record_starts_the_chain_and_each_follows_the_last(tmp_path: Path) -> None:
    path = tmp_path / "log" / "audit.jsonl"
    calls(AuditLog(path, max_bytes=5_000), 40)
    calls(AuditLog(path, max_bytes=5_000), 10, start=40)  # a restart
    found = records(path)
    assert [r["seq"] for r in found] == list(range(1, 101))
    assert found[0]["prev"] == GENESIS
    lines = [line for f in log_files(path) for line in f.read_bytes().splitlines()]
    assert all(json.loads(b)["prev"] == line_hash(a) for a, b in itertools.pairwise(lines))
    assert len(log_files(path)) > 3  # across rotations
    assert [line + b"\n" for line in lines] == [record_line(json.loads(x)) for x in lines]
    assert len(read_calls(path)) == 50  # readers of the log see the same calls


def _write_from_another_process(path: Path, name: str, count: int) -> None:
    log = AuditLog(path, max_bytes=8_000)
    for i in range(count):
        log.start(f"{name}{i}", ALICE, command="uptime", parameters={"n": i})


def test_two_processes_writing_one_log_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_from_another_process, args=(path, name, 300))
               for name in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    result = verify(path)
    assert result.ok, result.findings[:3]
    assert result.records == 600 and result.last_seq == 600
    assert {r["call"][0] for r in records(path)} == {"a", "b"}


def test_a_log_cut_under_a_running_writer_is_not_followed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    calls(log, 5)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:4]))
    calls(log, 1, start=5)
    assert log.diverged == 1 and "was cut short or changed" in caplog.text
    assert records(path)[4]["seq"] == 11  # links to its own last record, seq 10
    result = verify(path)
    assert [f.kind for f in result.findings] == ["removed"]


def test_seals_at_rotation_and_shutdown_verify_with_the_public_key(
        tmp_path: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log" / "audit.jsonl"
    signer = Signer.load(key, path.parent)
    log = AuditLog(path, max_bytes=5_000, signer=signer)
    calls(log, 40)
    log.close()
    log.close()  # nothing written since: no second seal
    AuditLog(path, max_bytes=5_000, signer=signer).close()  # a restart that ran nothing
    for file in log_files(path):
        last = json.loads(file.read_bytes().splitlines()[-1])
        assert last["event"] == SEAL_EVENT and last["key"] == signer.key_id
        assert last["reason"] == ("shutdown" if file == path else "rotation")
    status = main(["audit", "verify", "--env-file", "/dev/null", "--audit-log", str(path),
                   "--public-key", f"{key}.pub"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0, out
    seals = sum(1 for r in records(path) if r["event"] == SEAL_EVENT)
    assert out == [f"note: signed up to audit.jsonl:{len(path.read_bytes().splitlines())} "
                   f"(seq {80 + seals})",
                   f"audit log OK: {80 + seals} records in {len(log_files(path))} file(s), seq 1 "
                   f"to {80 + seals}, every link intact"]
    # Without the key, verify says the seals are there but unchecked.
    assert main(["audit", "verify", "--env-file", "/dev/null", "--audit-log", str(path)]) == 0
    assert f"{seals} seal(s) not checked" in capsys.readouterr().out


def rewrite_from(path: Path, file: Path, index: int, **changes: object) -> None:
    """What someone who can write the log but has no key can do: change a record and compute
    every hash after it again, so the chain holds."""
    previous: bytes | None = None
    changing = False
    for each in log_files(path):
        lines = each.read_bytes().splitlines(keepends=True)
        for i, line in enumerate(lines):
            record = json.loads(line)
            if each == file and i == index:
                record.update(changes)
                changing = True
            if changing and previous is not None:
                record["prev"] = line_hash(previous)
                record["seq"] = json.loads(previous)["seq"] + 1
            lines[i] = record_line(record) if changing else line
            previous = lines[i]
        each.write_bytes(b"".join(lines))


def test_a_chain_rewritten_without_the_key_passes_verify_but_not_the_seals(
        tmp_path: Path, key: Path) -> None:
    path = tmp_path / "log" / "audit.jsonl"
    log = AuditLog(path, max_bytes=5_000, signer=Signer.load(key, path.parent))
    calls(log, 40)
    log.close()
    rotated = path.with_name("audit.jsonl.3")
    rewrite_from(path, rotated, 5, command="reboot")
    assert verify(path).ok  # the chain alone cannot tell
    result = verify(path, load_public_key(key.with_suffix(".pub")))
    assert not result.ok
    first = result.findings[0]
    assert (first.place.file, first.kind) == ("audit.jsonl.3", "signature")
    assert first.detail == "this seal does not verify: its signature does not match its fields"


def test_seals_dropped_from_a_rewritten_chain_are_missed(tmp_path: Path, key: Path) -> None:
    path = tmp_path / "log" / "audit.jsonl"
    log = AuditLog(path, max_bytes=5_000, signer=Signer.load(key, path.parent))
    calls(log, 40)
    rotated = path.with_name("audit.jsonl.2")
    lines = rotated.read_bytes().splitlines(keepends=True)
    rotated.write_bytes(b"".join(lines[:-1]))  # its seal gone...
    rewrite_from(path, path.with_name("audit.jsonl.1"), 0)
    assert verify(path).ok  # ... and the chain mended: fine without the key
    result = verify(path, load_public_key(key.with_suffix(".pub")))
    assert [(f.place.file, f.kind) for f in result.findings][:1] == [("audit.jsonl.2",
                                                                      "unsigned")]


def test_a_seal_made_with_another_key_is_named(tmp_path: Path, key: Path) -> None:
    path = tmp_path / "log" / "audit.jsonl"
    log = AuditLog(path, signer=Signer.load(key, path.parent))
    calls(log, 3)
    log.close()
    other = keygen(tmp_path / "keys" / "other")
    result = verify(path, load_public_key(other.with_suffix(".pub")))
    assert [f.kind for f in result.findings] == ["signature"]
    assert "not the one given" in result.findings[0].detail


def test_a_pem_key_from_openssl_works_too(tmp_path: Path) -> None:
    openssl = require_executable("openssl", "apt-get install openssl")
    key = tmp_path / "audit.pem"
    subprocess.run([openssl, "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    public = tmp_path / "audit.pub.pem"
    subprocess.run([openssl, "pkey", "-in", str(key), "-pubout", "-out", str(public)],
                   check=True)
    path = tmp_path / "log" / "audit.jsonl"
    log = AuditLog(path, signer=Signer.load(key, path.parent))
    calls(log, 2)
    log.close()
    assert verify(path, load_public_key(public)).notes[0].startswith("signed up to ")


def test_a_key_that_cannot_seal_is_refused_with_the_fix(tmp_path: Path, key: Path) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    inside = keygen(log_dir / "key")
    with pytest.raises(ConfigError, match="lies in the audit log's directory"):
        Signer.load(inside, log_dir)
    with pytest.raises(ConfigError, match="not an Ed25519 key"):
        Signer.load(keygen(tmp_path / "keys" / "rsa", "-t", "rsa", "-b", "2048"), log_dir)
    protected = tmp_path / "keys" / "protected"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(protected)],
                   check=True)
    with pytest.raises(ConfigError, match="protected by a passphrase"):
        Signer.load(protected, log_dir)
    with pytest.raises(ConfigError, match="cannot read it"):
        Signer.load(tmp_path / "missing", log_dir)
    with pytest.raises(ConfigError, match="not a private key"):
        Signer.load(key.with_suffix(".pub"), log_dir)


async def test_the_agent_does_not_start_with_a_key_it_cannot_use_and_doctor_says_why(
        tmp_path: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    settings = dataclasses.replace(load_settings({}, env_file=None),
                                   audit_log=log_dir / "audit.jsonl",
                                   audit_signing_key=keygen(log_dir / "key"))
    with pytest.raises(ConfigError, match="lies in the audit log's directory"):
        build_service(settings, mode="local")
    assert await run_doctor(settings) == 1
    (line,) = [line for line in capsys.readouterr().out.splitlines()
               if "audit signing key" in line]
    assert line.startswith("FAIL") and "lies in the audit log's directory" in line
    settings = dataclasses.replace(settings, audit_signing_key=key)
    service = build_service(settings, mode="local")
    assert service.audit.signer is not None
    await service.close()
    assert await run_doctor(settings) == 1  # no host: still a problem, but not the key
    out = capsys.readouterr().out
    assert f"audit signing key: {service.audit.signer.key_id} seals the log" in out


def test_verify_of_a_log_being_written_and_rotated_sees_it_whole(tmp_path: Path) -> None:
    """verify takes the files as they are at one moment: a rotation or a record written
    while it reads is no finding."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=10_000, budget=200_000)
    calls(log, 10)
    stop = threading.Event()

    def write() -> None:
        n = 10
        while not stop.is_set():
            calls(log, 1, start=n)
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        results = [verify(path) for _ in range(10)]
        # Until the writer has written meanwhile (on a loaded machine its thread may not
        # have run yet during those ten): a bound, not a wait.
        deadline = time.monotonic() + 30
        while results[-1].records <= results[0].records and time.monotonic() < deadline:
            results.append(verify(path))
    finally:
        stop.set()
        writer.join()
    assert all(r.ok for r in results), [r.findings[:2] for r in results if not r.ok][:2]
    assert results[-1].records > results[0].records  # it was being written meanwhile
