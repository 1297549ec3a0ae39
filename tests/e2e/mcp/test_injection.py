"""Injection suite: hostile values in every parameter of every parameterized command.

Each payload is tried, through the agent's own run path, against the real sshd
whose login shell re-parses the command line. It must either be rejected with
a clear error, or reach the program as exactly one literal argument. The canary
file that many payloads try to create must never appear.

"Exactly one literal argument" is checked with a twin of each command: the same
parameters, but a template that prints each argument between markers, so what
the remote shell handed to the program is visible byte for byte.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.access.identity import local_user_identity
from agent.app import build_service
from agent.core.service import AgentService
from agent.hosts.inventory import HostConfig
from agent.settings import load_settings
from tests.support.payloads import payloads
from whitelist import Catalog, Command, ParameterError, WhitelistError, load_catalog
from whitelist.values import check_value

VALID = {"unit": "ssh.service", "container": "web", "path": "/etc/ssh", "integer": 5}
IDENTITY = local_user_identity()


def twin(command: Command) -> Command:
    fields = " ".join(f"{{{p.name}}}" for p in command.parameters)
    return dataclasses.replace(
        command, name=f"{command.name}_argv", template=f"printf '<%s>\\n' {fields}"
    )


def base_arguments(command: Command) -> dict[str, object]:
    return {p.name: VALID.get(p.type.value, p.default) for p in command.parameters
            if p.required or p.type.value == "path"}


@pytest.fixture(scope="module")
def canary() -> Iterator[Path]:
    # Writable by the sshd test user, so a payload that got through could create it.
    directory = Path(tempfile.mkdtemp(prefix="tnagent-canary-"))
    directory.chmod(0o777)
    yield directory / "canary"
    for leftover in directory.iterdir():
        leftover.unlink()
    directory.rmdir()


@pytest.fixture(scope="module")
async def service(ssh_host: HostConfig) -> AsyncIterator[AgentService]:
    default = load_catalog()
    commands = dict(default.commands)
    for command in default:
        if command.parameters:
            commands[f"{command.name}_argv"] = twin(command)
    settings = dataclasses.replace(
        load_settings({}, env_file=None), hosts={ssh_host.name: ssh_host},
        default_host=ssh_host.name,
    )
    agent = build_service(settings, mode="local", catalog=Catalog(commands=commands))
    yield agent
    await agent.pool.close()


async def test_every_payload_is_rejected_or_arrives_as_one_literal_argument(
    service: AgentService, canary: Path
) -> None:
    values = payloads(str(canary))
    assert len(values) >= 200
    targets = [(c, p) for c in load_catalog() for p in c.parameters]
    assert len(targets) >= 8
    gate = asyncio.Semaphore(8)
    rejected = accepted = 0

    async def attempt(command: Command, parameter_name: str, value: str) -> bool:
        arguments = {**base_arguments(command), parameter_name: value}
        try:
            async with gate:
                await service.run(command.name, arguments, host=None, identity=IDENTITY)
        except ParameterError as exc:
            assert exc.parameter == parameter_name, (command.name, value, exc)
            assert str(exc).strip()
            return False
        async with gate:
            echoed = await service.run(f"{command.name}_argv", arguments, host=None,
                                       identity=IDENTITY)
        expected = "".join(
            f"<{check_value(command.name, p, arguments.get(p.name, p.default))}>\n"
            for p in command.parameters
        )
        assert echoed.exit_status == 0, (command.name, value, echoed.stderr)
        assert echoed.stdout == expected, (command.name, value)
        return True

    for command, parameter in targets:
        outcomes = await asyncio.gather(
            *(attempt(command, parameter.name, value) for value in values)
        )
        accepted += sum(outcomes)
        rejected += len(outcomes) - sum(outcomes)
        assert not canary.exists(), f"payload through {command.name}.{parameter.name} ran"
    assert rejected + accepted == len(values) * len(targets)
    # Most payloads die in validation; those that pass are literal paths or strings.
    assert rejected > accepted > 0
    assert not os.path.exists(canary)


async def test_option_injection_is_rejected_even_when_quoting_would_pass_it(
    service: AgentService,
) -> None:
    for value in ("--output=/tmp/x", "-oProxyCommand=touch /tmp/x", "-rf"):
        with pytest.raises(WhitelistError, match="-"):
            await service.run("disk_usage_path", {"path": value}, host=None, identity=IDENTITY)
