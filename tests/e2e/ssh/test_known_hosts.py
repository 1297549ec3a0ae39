"""Host-key trust against a real sshd: fetch, compare, pin, then connect."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import asyncssh
import pytest

from agent.hosts.inventory import HostConfig
from agent.ssh import (
    HostUnreachable,
    SSHPool,
    fetch_host_key,
    fingerprint,
    is_trusted,
    known_hosts_pattern,
    pin_host_key,
)
from tests.support.sshd import Sshd


def keygen_fingerprint(pub: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)], capture_output=True, text=True
    )
    return out.stdout.split()[1]


def leftovers(directory: Path) -> list[Path]:
    return list(directory.glob(".known_hosts.*"))


def hashed(pattern: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, pattern.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_known_hosts_pattern_follows_openssh() -> None:
    host = HostConfig(name="a", address="web1.tail1234.ts.net", user="ops")
    assert known_hosts_pattern(host) == "web1.tail1234.ts.net"
    assert known_hosts_pattern(replace(host, port=2222)) == "[web1.tail1234.ts.net]:2222"


async def test_fetch_host_key_matches_the_servers_key(sshd: Sshd) -> None:
    key = await fetch_host_key(sshd.host_config())
    assert fingerprint(key) == keygen_fingerprint(Path(f"{sshd.host_key}.pub"))
    assert fingerprint(key).startswith("SHA256:")


async def test_fetch_host_key_from_a_dead_port_says_so(sshd: Sshd) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HostUnreachable, match=f"127.0.0.1:{port}"):
        await fetch_host_key(sshd.host_config(port=port), timeout=3)


async def test_pin_then_connect(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "fresh" / "dir" / "known_hosts"
    host = sshd.host_config(known_hosts=known)
    key = await fetch_host_key(host)
    assert is_trusted(host, key) is None

    pin_host_key(host, key)

    assert is_trusted(host, key) is True
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    assert stat.S_IMODE(known.parent.stat().st_mode) == 0o700
    assert known.read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    pool = SSHPool({"test": host})
    try:
        result = await pool.run(
            "test", "echo pinned", command_name="e", timeout=10, max_output=1024
        )
    finally:
        await pool.close()
    assert result.stdout == "pinned\n"


async def test_pinning_twice_writes_one_line(sshd: Sshd, tmp_path: Path) -> None:
    host = sshd.host_config(known_hosts=tmp_path / "known_hosts")
    key = await fetch_host_key(host)
    pin_host_key(host, key)
    pin_host_key(host, key)
    assert len(host.known_hosts.read_text().splitlines()) == 1


async def test_changed_key_is_detected_and_replaced_deliberately(
    sshd_factory: Callable[..., Sshd], tmp_path: Path
) -> None:
    server = sshd_factory()
    known = tmp_path / "known_hosts"
    host = server.host_config(known_hosts=known)
    old_key = await fetch_host_key(host)
    pattern = known_hosts_pattern(host)
    other_line = "other.example ssh-ed25519 " + old_key.export_public_key().decode().split()[1]
    old = old_key.export_public_key().decode().split()[:2]
    known.write_text(
        "# keep this comment\n"
        f"{other_line}\n"
        f"{pattern} {old[0]} {old[1]}\n"
        f"{hashed(pattern)} {old[0]} {old[1]}\n"
    )
    known.chmod(0o644)

    server.regenerate_host_key()
    new_key = await fetch_host_key(host)
    assert fingerprint(new_key) != fingerprint(old_key)
    assert is_trusted(host, new_key) is False

    pin_host_key(host, new_key)

    lines = known.read_text().splitlines()
    new = new_key.export_public_key().decode().split()[:2]
    assert lines == ["# keep this comment", other_line, f"{pattern} {new[0]} {new[1]}"]
    assert stat.S_IMODE(known.stat().st_mode) == 0o644  # the user's mode is kept
    assert is_trusted(host, new_key) is True
    assert is_trusted(host, old_key) is False
    pool = SSHPool({"test": host})
    try:
        result = await pool.run("test", "echo ok", command_name="e", timeout=10, max_output=1024)
    finally:
        await pool.close()
    assert result.stdout == "ok\n"
    assert leftovers(tmp_path) == [], "temporary file left behind"


def test_is_trusted_reads_an_existing_openssh_file(sshd: Sshd) -> None:
    key = asyncssh.read_public_key(f"{sshd.host_key}.pub")
    assert is_trusted(sshd.host_config(), key) is True
