"""Secrets to plant in command output: a real private key (made with ssh-keygen, used for
nothing) and tokens shaped like real ones (the documented AWS example key id)."""

from __future__ import annotations

import subprocess
import tempfile
from functools import cache
from pathlib import Path

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example access key id
GITHUB_TOKEN = "ghp_" + "x7Gq2LmN9pR4sT6vW8yZ1aB3cD5eF0hJ2kL4"
URL_WITH_PASSWORD = "https://deploy:s3cr3t-Pa55@git.example.com/repo.git"


@cache
def private_key() -> str:
    """An OpenSSH private key in PEM armour, generated here."""
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True, stdin=subprocess.DEVNULL)
        return path.read_text()


def key_body(pem: str) -> list[str]:
    """The base64 lines of the key: none of them may ever be shown."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]
