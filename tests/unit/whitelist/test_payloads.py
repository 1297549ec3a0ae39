"""The shared injection payloads, run through every parameter type under a real /bin/sh."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.payloads import CANARY, PAYLOADS, payloads
from whitelist import Command, Parameter, ParameterError, ParamType, render, wrap_for_exec

PARAMETERS = {
    "string": Parameter("v", ParamType.STRING, "anything", pattern=r"(?s).+"),
    "enum": Parameter("v", ParamType.ENUM, "e", choices=("all", "ext4")),
    "integer": Parameter("v", ParamType.INTEGER, "n", minimum=0, maximum=10**6),
    "path": Parameter("v", ParamType.PATH, "p", roots=("/",)),
    "unit": Parameter("v", ParamType.UNIT, "u"),
    "container": Parameter("v", ParamType.CONTAINER, "c"),
}


def test_payload_list_is_large_and_unique() -> None:
    assert len(PAYLOADS) >= 200
    assert len(set(PAYLOADS)) == len(PAYLOADS)
    assert sum(CANARY in p for p in PAYLOADS) >= 100
    assert any(p.startswith("-") for p in PAYLOADS)
    assert any("\x00" in p for p in PAYLOADS)
    assert any("\uff1b" in p for p in PAYLOADS)


def test_payloads_substitute_the_canary() -> None:
    substituted = payloads("/tmp/some canary")
    assert not any(CANARY in p for p in substituted)
    assert "touch /tmp/some canary" in "\n".join(substituted)


@pytest.mark.parametrize("kind", PARAMETERS)
def test_no_payload_escapes_quoting(tmp_path: Path, kind: str) -> None:
    canary = tmp_path / "canary"
    command = Command(
        name="probe",
        description="prints its argument",
        category="Test",
        template="printf '[%s]\\n' {v}",
        parameters=(PARAMETERS[kind],),
    )
    accepted: list[tuple[str, str]] = []
    for value in payloads(str(canary)):
        try:
            rendered = render(command, {"v": value})
        except ParameterError:
            continue
        # The value must be one shell word, and a safe one for an option parser.
        (word,) = shlex.split(rendered)[2:]
        assert not word.startswith("-")
        if kind not in ("path", "integer"):  # those two render a canonical form
            assert word == value
        accepted.append((value, rendered))
    if not accepted:
        return
    # One shell run for all accepted payloads of this type keeps the test fast;
    # each line is wrapped exactly as the SSH layer would send it.
    script = "\n".join(wrap_for_exec(rendered, timeout=5) for _, rendered in accepted)
    # On stdin: one argument may not exceed 128 KiB (MAX_ARG_STRLEN).
    result = subprocess.run(["/bin/sh"], input=script.encode(), capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.decode().split("\n")[:-1]
    expected = [f"[{shlex.split(rendered)[2]}]" for _, rendered in accepted]
    assert printed == expected
    assert not canary.exists()


def test_option_and_control_payloads_are_rejected_for_every_type() -> None:
    dangerous = [p for p in PAYLOADS if p.startswith("-") or "\x00" in p or "\n" in p]
    assert dangerous
    for parameter in PARAMETERS.values():
        command = Command("probe", "d", "Test", "echo {v}", (parameter,))
        for value in dangerous:
            with pytest.raises(ParameterError):
                render(command, {"v": value})
