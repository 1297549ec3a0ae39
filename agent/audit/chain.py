"""The audit log's hash chain and its signatures: what links a record to the one before.

Every record carries `seq` (1 for the first record of a log, then +1 per record, across
rotations and restarts) and `prev`, the SHA-256 (hex) of the previous record's line. A
line is the record's canonical JSON (agent.audit.shape.canonical: keys sorted, no
spaces, ASCII), so `prev` is equally the hash of the line as written (without its newline)
and of the record parsed back and written canonically again. The first record of a new
log has `prev` GENESIS; the first record of a file after a rotation has the hash of the
last line of the file before, so files chain too. A record that removes a file for the
budget names the removed file's last `seq` and hash, where the chain of the files that
remain starts (agent.audit.verify).

A chain alone proves order and completeness only to someone who cannot write it again from
the point they changed: anyone who can write the log can recompute every hash after an
edit. A seal (`"event": "seal"`) signs the hash of a file's last record with an Ed25519
key held outside the log directory, at rotation and at shutdown; without the key, a
rewritten stretch before a seal cannot carry a valid seal. The signing uses `cryptography`
(already here through asyncssh), and keys are the ones `ssh-keygen -t ed25519` or
`openssl genpkey -algorithm ed25519` make.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.errors import ConfigError

from .shape import canonical

GENESIS = "0" * 64  # `prev` of the first record of a new log
SEAL_EVENT = "seal"
SEQ, PREV, SIGNATURE = "seq", "prev", "signature"
_HEX64 = re.compile("[0-9a-f]{64}")


def line_hash(line: bytes) -> str:
    """The hash the next record carries for `line` (its newline is not hashed)."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


@dataclass(frozen=True)
class Link:
    """The end of a chain: the last record's `seq` and the hash of its line."""

    seq: int
    hash: str


START = Link(0, GENESIS)  # before the first record


def chained(record: Mapping[str, Any], after: Link) -> dict[str, Any]:
    """`record` as the record after `after`."""
    return {**record, SEQ: after.seq + 1, PREV: after.hash}


def record_line(record: Mapping[str, Any]) -> bytes:
    """A record's line as written: its canonical JSON and a newline."""
    return (canonical(record, strict=True) + "\n").encode("ascii")


def parse_chained(line: bytes) -> dict[str, Any] | None:
    """The record on a chained line (an object with an integer `seq` and a hex `prev`), or
    None for anything else (a record from before the chain, a damaged line)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not is_chained(record):
        return None
    return record


def is_chained(record: Mapping[str, Any]) -> bool:
    seq, prev = record.get(SEQ), record.get(PREV)
    return (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1
            and isinstance(prev, str) and _HEX64.fullmatch(prev) is not None)


def link_after(line: bytes) -> Link:
    """The link a line leaves for the next record. A line from before the chain (or a
    damaged one) counts as seq 0: the next record starts the numbering and links to it."""
    record = parse_chained(line)
    return Link(record[SEQ] if record is not None else 0, line_hash(line))


# -- signatures ---------------------------------------------------------------------


def fingerprint(key: Ed25519PublicKey) -> str:
    """The key's SHA256 fingerprint, as `ssh-keygen -l` prints it."""
    blob = key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).split()[1]
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _signed_text(record: Mapping[str, Any]) -> bytes:
    return canonical({k: v for k, v in record.items() if k != SIGNATURE},
                     strict=True).encode("ascii")


class Signer:
    """The key that seals: signs a seal record's canonical JSON (its signature aside)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.key_id = fingerprint(key.public_key())

    @classmethod
    def load(cls, path: Path, log_dir: Path) -> Signer:
        """The private key in `path`; ConfigError (one line, with the fix) when it cannot
        sign, or when it lies in the log's directory (whoever can write the log would then
        hold the key too)."""
        where = f"TAILNET_AGENT_AUDIT_SIGNING_KEY={path}"
        try:
            inside = path.resolve().is_relative_to(log_dir.resolve())
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read it ({exc.strerror}); make one with "
                              "`ssh-keygen -t ed25519 -N '' -f FILE` outside the audit log's "
                              "directory") from None
        if inside:
            raise ConfigError(f"{where}: the signing key lies in the audit log's directory "
                              f"{log_dir}; keep it elsewhere, where whoever can change the log "
                              "cannot read it")
        try:
            if b"OPENSSH PRIVATE KEY" in data:
                key: object = serialization.load_ssh_private_key(data, password=None)
            else:
                key = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise ConfigError(f"{where}: the key is protected by a passphrase; the agent "
                              "signs unattended, so use a key without one (kept where only the "
                              "agent's user can read it)") from None
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(f"{where}: not a private key in OpenSSH or PEM format") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{where}: not an Ed25519 key; make one with `ssh-keygen -t "
                              "ed25519` or `openssl genpkey -algorithm ed25519`")
        return cls(key)

    def seal(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """`record` (a chained seal record) with the signature of all its other fields."""
        signature = self._key.sign(_signed_text(record))
        return {**record, SIGNATURE: base64.b64encode(signature).decode("ascii")}


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from an OpenSSH `.pub` line or a PEM file; ValueError with
    what is wrong, OSError when it cannot be read."""
    data = path.read_bytes()
    try:
        if data.lstrip().startswith(b"ssh-"):
            key: object = serialization.load_ssh_public_key(data.strip())
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{path} is not a public key in OpenSSH or PEM format") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def seal_problem(record: Mapping[str, Any], key: Ed25519PublicKey) -> str | None:
    """Why a seal record does not prove its fields with `key`, or None when it does."""
    if record.get("key") != fingerprint(key):
        return f"it names the key {record.get('key')!r}, not the one given ({fingerprint(key)})"
    try:
        signature = base64.b64decode(str(record.get(SIGNATURE, "")), validate=True)
        key.verify(signature, _signed_text(record))
    except (ValueError, InvalidSignature):
        return "its signature does not match its fields"
    return None
