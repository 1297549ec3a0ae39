"""AgentService with a Runner that records what would run instead of dialing SSH (the
Runner protocol is the service's seam to SSH; everything of ours runs for real), and the
test catalog and policy of issue 20's approval tests."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.access.identity import Identity
from agent.access.policy import Policy, parse_policy
from agent.core.service import AgentService
from agent.hosts.inventory import HostConfig
from agent.hosts.registry import Presence
from agent.output.results import CommandResult
from agent.output.spool import CommandOutput
from agent.settings import load_settings
from whitelist import load_catalog

ALICE = Identity(login="alice@example.com", node="alice-laptop")
BOB = Identity(login="bob@example.com", node="bob-laptop")
CAROL = Identity(login="carol@example.com", node="carol-laptop")
CI_1 = Identity(login=None, node="ci-1.tailnet.test", tags=("tag:ci",))
CI_2 = Identity(login=None, node="ci-2.tailnet.test", tags=("tag:ci",))
PATH = "/tmp/tnagent-issue-20"
CATALOG = """
commands:
  touch_self:
    description: Touch a file (the caller may confirm it).
    category: Test
    template: "touch -- {path}"
    destructive: true
    parameters:
      path: {type: path, description: the file, roots: ["/"]}
  touch_also:
    description: The same command line under another name.
    category: Test
    template: "touch -- {path}"
    destructive: true
    parameters:
      path: {type: path, description: the file, roots: ["/"]}
  touch_web2:
    description: The same, bound to host web2 by the catalog.
    category: Test
    template: "touch -- {path}"
    destructive: true
    hosts: [web2]
    parameters:
      path: {type: path, description: the file, roots: ["/"]}
  touch_elevated:
    description: Touch a file as the host's become user.
    category: Test
    template: "touch -- {path}"
    destructive: true
    become: true
    parameters:
      path: {type: path, description: the file, roots: ["/"]}
  touch_root:
    description: Touch a file as root (two-person rule).
    category: Test
    template: "touch -- {path}"
    destructive: true
    become: root
    parameters:
      path: {type: path, description: the file, roots: ["/"]}
  touch_ops:
    description: Touch a file (two-person rule, as the login user).
    category: Test
    template: "touch -- {path}"
    destructive: true
    parameters:
      path: {type: path, description: the file, roots: ["/"]}
"""
POLICY = """
groups:
  group:ops: [bob@example.com]
rules:
  - name: self-confirmed
    who: [alice@example.com, carol@example.com, tag:ci]
    commands: [touch_self, touch_also, touch_web2, touch_elevated]
    destructive: true
    approval_minutes: 60
  - name: two-person
    who: [alice@example.com]
    commands: [touch_root, touch_ops]
    destructive: true
    approvers: [group:ops]
    approval_minutes: 30
"""


# What a scripted host answers: (stdout, stderr, exit status).
Answer = tuple[str, str, int]


class RecordingRunner:
    """The Runner protocol (agent.core.service.Runner) without SSH: records what would
    have run, and succeeds with no output, or answers what `answer(host)` says (written
    into the call's output as a command's would be, redacted and spooled)."""

    def __init__(self, answer: Callable[[str], Answer] | None = None, *,
                 gated: bool = False) -> None:
        self.ran: list[tuple[str, str, str | None]] = []  # (host, command, runs as)
        self.answer = answer
        # Gated: every command holds until `release` is set; `running` counts how many
        # hold at once, `peak` the most ever.
        self.release = asyncio.Event()
        if not gated:
            self.release.set()
        self.running = 0
        self.peak = 0

    async def run(
        self, host: str, rendered: str, *, command_name: str,
        timeout: float,  # noqa: ASYNC109 - the protocol's
        max_output: int, destructive: bool = False, become: str | None = None,
        output: CommandOutput | None = None,
    ) -> CommandResult:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        self.ran.append((host, command_name, become))
        stdout, stderr, status = self.answer(host) if self.answer else ("", "", 0)
        if output is not None:
            output.feed(False, stdout.encode())
            output.feed(True, stderr.encode())
            output.finish()
        return CommandResult(host=host, command=command_name, rendered=rendered,
                             stdout=stdout, stderr=stderr, exit_status=status,
                             duration_ms=1.0, truncated=False, output=output)

    async def connection_status(self) -> dict[str, dict[str, Any]]:
        return {}

    def connections(self) -> dict[str, float | int]:
        return {}

    async def check_host(self, host: str) -> float:
        return 0.0

    async def close(self) -> None:
        pass


def tailnet_host(name: str, become: str = "root") -> HostConfig:
    return HostConfig(name=name, address=f"{name}.tailnet.test", user="ops", become=become,
                      source="tailnet")


def fleet_service(tmp_path: Path, names: list[str], answer: Callable[[str], Answer] | None = None,
                  *, runner: RecordingRunner | None = None, rules: Policy | None = None,
                  **values: Any) -> AgentService:
    """Hosts `names` (from a file), answering what `answer(host)` says (or what `runner`
    does); the catalog above (with the default catalog), the policy above (or `rules`); the
    audit log in `tmp_path`."""
    (tmp_path / "extra.yaml").write_text(CATALOG)
    hosts = {name: HostConfig(name=name, address="192.0.2.1", user="ops") for name in names}
    settings = dataclasses.replace(
        load_settings({}, env_file=None), hosts=hosts, default_host=names[0],
        audit_log=tmp_path / "audit.jsonl", **{"rate_burst": 1000, "approval_timeout": 30.0,
                                               **values})
    return AgentService(settings, load_catalog([tmp_path / "extra.yaml"]),
                        runner or RecordingRunner(answer), mode="tailnet",
                        policy=rules or policy())


def recording_service(tmp_path: Path, **values: Any) -> AgentService:
    """Hosts web1, web2 (from a file) and t1 (from the tailnet, online); the catalog and
    policy above; the audit log in `tmp_path`."""
    made = fleet_service(tmp_path, ["web1", "web2"], **values)
    made.hosts.tailnet_enabled = True
    made.hosts.set_tailnet({"t1": (tailnet_host("t1"), Presence(online=True))})
    return made


@pytest.fixture
def service(tmp_path: Path) -> AgentService:
    """`recording_service` in the test's own directory."""
    return recording_service(tmp_path)


def ran(service: AgentService) -> list[tuple[str, str, str | None]]:
    """What the service had its runner run: (host, command, runs as)."""
    assert isinstance(service.pool, RecordingRunner)
    return service.pool.ran


class Person:
    """A caller's own confirmation: yes, and identical calls approved for `minutes`."""

    def __init__(self, minutes: int = 60) -> None:
        self.minutes = minutes
        self.asked = 0

    async def __call__(self) -> int:
        self.asked += 1
        return self.minutes


def policy(text: str = POLICY) -> Policy:
    return parse_policy(yaml.safe_load(text), "test")
