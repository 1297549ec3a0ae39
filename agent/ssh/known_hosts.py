"""Host-key trust: look keys up in known_hosts and pin a key deliberately.

Lookups match by the configured host name (and port) only, never by the peer's IP:
through the tailnet's SOCKS5 proxy the peer address is the loopback proxy, and
matching on it would let any `127.0.0.1` entry vouch for every tailnet host.
This is also what OpenSSH does by default (CheckHostIP no).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

from agent.hosts.inventory import DEFAULT_SSH_PORT, HostConfig

from .parsed_files import ParsedFiles


def fingerprint(key: asyncssh.SSHKey) -> str:
    """The OpenSSH-style SHA256 fingerprint, e.g. `SHA256:abc...`."""
    return key.get_fingerprint("sha256")


def known_hosts_pattern(host: HostConfig) -> str:
    """The host field OpenSSH writes for this host: `addr`, or `[addr]:port` off port 22."""
    if host.port == DEFAULT_SSH_PORT:
        return host.address
    return f"[{host.address}]:{host.port}"


def _parse(_path: Path, data: bytes) -> asyncssh.SSHKnownHosts:
    return asyncssh.import_known_hosts(data.decode("utf-8"))


# Parsed once per version of each file, not per connection (parsed_files.py).
_KNOWN_HOSTS = ParsedFiles(_parse, missing=lambda: asyncssh.SSHKnownHosts())


def _read(path: Path) -> asyncssh.SSHKnownHosts:
    return _KNOWN_HOSTS.get(path)


def _lookup(path: Path, name: str, port: int | None) -> Any:
    # asyncssh passes port=None for 22; an empty addr disables IP matching (see module doc).
    return _read(path).match(name, "", port)


def known_hosts_matcher(host: HostConfig) -> Callable[[str, str, int | None], Any]:
    """A `known_hosts=` value for asyncssh that matches by name, in the file as it is when
    the connection checks the key."""

    def match(name: str, _addr: str, port: int | None) -> Any:
        return _lookup(host.known_hosts, name, port)

    return match


def trusted_keys(host: HostConfig) -> list[asyncssh.SSHKey]:
    """Host keys known_hosts records for this host (same rules asyncssh applies when connecting)."""
    port = None if host.port == DEFAULT_SSH_PORT else host.port
    keys: list[asyncssh.SSHKey] = list(_lookup(host.known_hosts, host.address, port)[0])
    return keys


def is_trusted(host: HostConfig, key: asyncssh.SSHKey) -> bool | None:
    """True: this key is pinned. False: a different key is pinned (changed!). None: unknown."""
    keys = trusted_keys(host)
    if not keys:
        return None
    return key.public_data in {k.public_data for k in keys}


def pin_host_key(host: HostConfig, key: asyncssh.SSHKey) -> None:
    """Record `key` for `host` in host.known_hosts, replacing a different recorded key.

    The file is rewritten atomically (temp file + os.replace), so a crash never
    leaves a half-written known_hosts behind.
    """
    path = host.known_hosts
    pattern = known_hosts_pattern(host)
    public = key.convert_to_public().export_public_key("openssh").decode("ascii").split()
    new_line = f"{pattern} {public[0]} {public[1]}"

    if is_trusted(host, key) and _has_exact_entry(path, pattern, key):
        return

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        old_lines = path.read_text(encoding="utf-8").splitlines()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        old_lines, mode = [], 0o600

    kept = [line for line in (_without_pattern(line, pattern) for line in old_lines) if line]
    kept.append(new_line)

    fd, tmp_name = tempfile.mkstemp(prefix=".known_hosts.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write("\n".join(kept) + "\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _has_exact_entry(path: Path, pattern: str, key: asyncssh.SSHKey) -> bool:
    """Whether a line for exactly `pattern` already pins `key` (not only via a port fallback)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return False
    wanted = key.convert_to_public().export_public_key("openssh").decode("ascii").split()[:2]
    for line in lines:
        fields = line.split()
        if (
            len(fields) >= 3
            and not fields[0].startswith("@")
            and fields[1:3] == wanted
            and any(_pattern_matches(p, pattern) for p in fields[0].split(","))
        ):
            return True
    return False


def _without_pattern(line: str, pattern: str) -> str:
    """The line with `pattern` removed from its host list; "" when nothing is left.

    Marker lines (@cert-authority, @revoked), comments and other hosts' lines are kept.
    """
    stripped = line.strip()
    if not stripped or stripped.startswith(("#", "@")):
        return line
    fields = stripped.split(None, 1)
    if len(fields) < 2:
        return line
    hosts = fields[0].split(",")
    remaining = [h for h in hosts if not _pattern_matches(h, pattern)]
    if len(remaining) == len(hosts):
        return line
    if not remaining:
        return ""
    return f"{','.join(remaining)} {fields[1]}"


def _pattern_matches(entry: str, pattern: str) -> bool:
    """Exact (not wildcard) match of a known_hosts host entry, plain or hashed (`|1|...`)."""
    if entry.startswith("|1|"):
        parts = entry.split("|")
        if len(parts) != 4:
            return False
        try:
            salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
        except (binascii.Error, ValueError):
            return False
        ours = hmac.new(salt, pattern.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(ours, digest)
    return entry == pattern
