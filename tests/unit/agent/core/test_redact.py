"""Redaction of secrets in command output (agent/core/redact.py, detect-secrets' patterns)."""

from __future__ import annotations

import subprocess

import pytest

from agent.core.redact import PRIVATE_KEY, Redactor
from tests.support.secrets_planted import (
    AWS_KEY_ID,
    GITHUB_TOKEN,
    URL_WITH_PASSWORD,
    key_body,
    private_key,
)

REDACTOR = Redactor()


def test_planted_secrets_are_replaced_and_counted() -> None:
    pem = private_key()
    text = (f"config dump\n{pem}key id {AWS_KEY_ID} in use\nremote {URL_WITH_PASSWORD}\n"
            f"token={GITHUB_TOKEN}\n"
            "aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'\nend\n")
    shown, counts, inside = REDACTOR.redact(text)
    for secret in [AWS_KEY_ID, "s3cr3t-Pa55", GITHUB_TOKEN, "wJalrXUtnFEMI", *key_body(pem)]:
        assert secret not in shown
    assert counts == {PRIVATE_KEY: 1, "AWS Access Key": 2, "Basic Auth Credentials": 1,
                      "GitHub Token": 1}
    assert not inside
    # The context stays readable: only the secret itself is replaced.
    assert "https://deploy:[REDACTED: Basic Auth Credentials]@git.example.com" in shown
    assert shown.startswith("config dump\n[REDACTED: Private Key]\nkey id [REDACTED: AWS")
    assert shown.endswith("\nend\n")


def test_a_key_cut_across_pieces_is_redacted_in_every_piece() -> None:
    pem = private_key()
    lines = f"before\n{pem}after\n".splitlines(keepends=True)
    inside = False
    shown = []
    for line in lines:  # one line at a time, as live output arrives
        text, _, inside = REDACTOR.redact(line, inside_key=inside)
        shown.append(text)
    joined = "".join(shown)
    assert all(body not in joined for body in key_body(pem))
    assert joined.startswith("before\n") and joined.endswith("after\n")
    assert not inside
    # A key whose END never arrived is redacted to the end of the text.
    cut, _, still_inside = REDACTOR.redact("x\n" + pem[: len(pem) // 2])
    assert cut == "x\n[REDACTED: Private Key]" and still_inside


@pytest.mark.parametrize("command", [
    "ps auxww", "df -h", "ip addr", "ls -l /usr/bin", "dpkg -l", "ss -tanp", "mount",
    "free -h", "uname -a", "cat /etc/passwd", "env -i PATH=/usr/bin:/bin sh -c env",
    "find /usr/share/doc -maxdepth 2 -name '*.gz'", "sha256sum /usr/bin/ls /usr/bin/cp",
])
def test_ordinary_command_output_is_left_alone(command: str) -> None:
    output = subprocess.run(command, shell=True, capture_output=True, text=True).stdout
    assert output
    shown, counts, _ = REDACTOR.redact(output)
    assert counts == {} and shown == output
