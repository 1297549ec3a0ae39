"""`become`: catalog commands that run as another user through `sudo -n`, against the real
sshd and the real sudo, with a sudoers drop-in for the test user written here and removed
afterwards.

What is proved: a command with a rule runs as root; one without a rule is refused with the
exact sudoers line to add, and that line (added verbatim) lets exactly that command line
run and nothing wider; sudo is asked to run the rendered command and nothing else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import ElicitResult

from agent.access.identity import Identity
from agent.app import build_service
from agent.core.service import AgentService
from agent.errors import ElevationRefused
from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from agent.ssh.pool import SSHPool
from tests.support.agents import running_agent, settings_for
from tests.support.cancels import cancel_storm, chatter_catalog, marker
from tests.support.components import missing, require_executable
from tests.support.sshd import SESSION_MARK, Sshd
from tests.support.waiting import wait_until
from whitelist import load_catalog, render, sudoers_line
from whitelist.render import TIMEOUT_PATH

LOCAL = Identity(login="me", node="here", source="local")
CATALOG = """
commands:
  root_whoami:
    description: Who am I as root.
    category: Test
    template: "whoami"
    become: true
    timeout: 10
  root_id:
    description: My uid as root (no sudoers rule for it at first).
    category: Test
    template: "id -u"
    become: true
    timeout: 10
  shout:
    description: Upper-case a word as root.
    category: Test
    template: "printf '%s\\\\n' {word} | tr a-z A-Z"
    become: root
    timeout: 10
    parameters:
      word:
        type: string
        description: a word
        pattern: '[a-z ;]+'
  root_touch:
    description: Create a file as root (destructive).
    category: Test
    template: "touch -- /nonexistent-dir/x"
    become: true
    destructive: true
    timeout: 10
"""


DROP_INS = Path("/etc/sudoers.d")
DROP_IN_PREFIX = "tnagent-test-"


def clear_stale_drop_ins() -> None:
    """Remove the drop-ins of test processes that have gone (or that predate the pid in the
    name)."""
    for path in DROP_INS.glob(f"{DROP_IN_PREFIX}*"):
        pid = path.name.removeprefix(DROP_IN_PREFIX).split("-")[0]
        if not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
            path.unlink(missing_ok=True)


class Sudoers:
    """A sudoers drop-in for the sshd test user, checked with visudo, removed at the end."""

    def __init__(self, user: str, log: Path) -> None:
        # Named by the pid of the test process, so that a run killed before its clean-up
        # (whose drop-in would redirect sudo's log: the last `logfile` read wins) is cleared
        # by the next one (`clear_stale_drop_ins`).
        self.path = DROP_INS / f"{DROP_IN_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.log = log
        # The test sshd's mark stays in the environment of what sudo runs, so that the
        # tests count root's processes of their own sshd only (Sshd.processes).
        self.rules: list[str] = [f'Defaults:{user} logfile="{log}"',
                                 f'Defaults:{user} env_keep += "{SESSION_MARK}"']

    def add(self, line: str) -> None:
        self.rules.append(line)
        text = "\n".join(self.rules) + "\n"
        candidate = self.path.with_name(f"{self.path.name}.new")
        candidate.write_text(text)
        candidate.chmod(0o440)
        checked = subprocess.run(["visudo", "-cq", "-f", str(candidate)], capture_output=True,
                                 text=True)
        assert checked.returncode == 0, (text, checked.stdout, checked.stderr)
        candidate.replace(self.path)

    def commands_seen(self) -> list[str]:
        """COMMAND= of every sudo invocation the log recorded, in order."""
        text = self.log.read_text() if self.log.exists() else ""
        # sudo wraps long log lines; a continuation starts with whitespace.
        joined = re.sub(r"\n\s+", " ", text)
        return re.findall(r"COMMAND=(.*)", joined)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_name(f"{self.path.name}.new").unlink(missing_ok=True)


def sudo_logged(argument: str) -> str:
    """One argument as sudo's log writes it: quoted, with ' and \\ escaped, when needed."""
    if not re.search(r"[\s'\\]", argument):
        return argument
    return "'" + argument.replace("\\", "\\\\").replace("'", "\\'") + "'"


@pytest.fixture
def sudoers(ssh_host: HostConfig) -> Iterator[Sudoers]:
    require_executable("sudo", "apt-get install sudo (tests/setup-machine.sh does it)")
    require_executable("visudo", "apt-get install sudo", "/usr/sbin/visudo")
    if os.geteuid() != 0:
        missing("root (to write a sudoers drop-in)", "run the tests as root, as CI does")
    clear_stale_drop_ins()
    log_dir = Path(tempfile.mkdtemp(prefix="tnagent-sudo-"))
    drop_in = Sudoers(ssh_host.user, log_dir / "sudo.log")
    drop_in.add(f"{ssh_host.user} ALL=(root) NOPASSWD: {TIMEOUT_PATH} -k 2 10 /bin/sh -c whoami")
    yield drop_in
    drop_in.remove()
    drop_in.log.unlink(missing_ok=True)
    log_dir.rmdir()


@pytest.fixture
async def service(ssh_host: HostConfig, tmp_path: Path) -> AsyncIterator[AgentService]:
    extra = tmp_path / "become.yaml"
    extra.write_text(CATALOG)
    settings: Settings = dataclasses.replace(
        settings_for(ssh_host), audit_log=tmp_path / "audit.jsonl")
    made = build_service(settings, mode="local", catalog=load_catalog([extra]))
    yield made
    await made.pool.close()


async def test_a_command_with_a_rule_runs_as_root(service: AgentService, sudoers: Sudoers
                                                  ) -> None:
    result = await service.run("root_whoami", {}, host=None, identity=LOCAL)
    assert result.exit_status == 0, result.stderr
    assert result.stdout == "root\n" and result.runs_as == "root"
    # sudo was asked for the rendered command under timeout, and for nothing else.
    assert sudoers.commands_seen() == [f"{TIMEOUT_PATH} -k 2 10 /bin/sh -c whoami"]
    plain = await service.run("whoami", {}, host=None, identity=LOCAL)
    assert plain.stdout.split()[0] == service.settings.hosts["test"].user
    assert plain.runs_as is None


async def test_without_a_rule_the_refusal_names_the_exact_line_and_that_line_works(
    service: AgentService, sudoers: Sudoers
) -> None:
    with pytest.raises(ElevationRefused) as refused:
        await service.run("root_id", {}, host=None, identity=LOCAL)
    message = str(refused.value)
    assert "runs as root" in message and "nothing ran" in message
    assert "visudo -f /etc/sudoers.d/tailnet-agent" in message
    line = message.splitlines()[-1]
    assert line == (f"{service.settings.hosts['test'].user} ALL=(root) NOPASSWD: "
                    f"{TIMEOUT_PATH} -k 2 10 /bin/sh -c id\\ -u")
    sudoers.add(line)
    result = await service.run("root_id", {}, host=None, identity=LOCAL)
    assert result.stdout == "0\n"


async def test_the_printed_line_allows_that_command_line_and_nothing_wider(
    service: AgentService, sudoers: Sudoers
) -> None:
    with pytest.raises(ElevationRefused) as refused:
        await service.run("shout", {"word": "hello there"}, host=None, identity=LOCAL)
    sudoers.add(str(refused.value).splitlines()[-1])
    ok = await service.run("shout", {"word": "hello there"}, host=None, identity=LOCAL)
    assert ok.stdout == "HELLO THERE\n", ok.stderr
    # Another value, a value with a shell separator (quoted: one word for /bin/sh), and a
    # value that only differs in spacing: none of them matches the rule.
    for word in ("hello world", "hello there; id", "hello  there"):
        with pytest.raises(ElevationRefused):
            await service.run("shout", {"word": word}, host=None, identity=LOCAL)
    command = service.catalog.get("shout")
    seen = sudoers.commands_seen()
    # sudo logs an argument with blanks quoted: the rendered command arrived as one word.
    assert seen[1] == f"{TIMEOUT_PATH} -k 2 10 /bin/sh -c " + sudo_logged(
        render(command, {"word": "hello there"}))
    # Every sudo call had exactly our shape: timeout, /bin/sh -c, one rendered command.
    assert all(s.startswith(f"{TIMEOUT_PATH} -k 2 10 /bin/sh -c ") for s in seen), seen


async def test_audit_records_who_it_ran_as(service: AgentService, sudoers: Sudoers) -> None:
    await service.run("root_whoami", {}, host=None, identity=LOCAL)
    records = [json.loads(line) for line in service.audit.path.read_text().splitlines()]
    assert [r for r in records if r["event"] == "start"][-1]["runs_as"] == "root"


async def test_list_commands_and_the_confirmation_say_it_runs_as_root(
    ssh_host: HostConfig, tmp_path: Path
) -> None:
    extra = tmp_path / "become.yaml"
    extra.write_text(CATALOG)
    asked: list[str] = []

    async def decline(context: object, params: object) -> ElicitResult:
        asked.append(params.message)  # type: ignore[attr-defined]
        return ElicitResult(action="decline")

    async with running_agent(settings_for(ssh_host), catalogs=(extra,)) as agent, Client(
        agent.url, elicitation_callback=decline
    ) as client:
        listed = await client.call_tool("list_commands", {"category": "Test"})
        commands = {c["name"]: c for c in listed.structured_content["commands"]}
        assert commands["root_whoami"]["runs_as"] == "root"
        assert "Runs as root (sudo)." in commands["root_whoami"]["description"]
        declined = await client.call_tool("execute_command", {"command": "root_touch"})
    assert declined.is_error
    (message,) = asked
    assert message.startswith("Run destructive command 'root_touch' on host 'test' as root?\n")
    assert "It runs exactly: touch -- /nonexistent-dir/x" in message


@pytest.mark.parametrize("path", ["exec", "fast"])
async def test_cancelled_commands_running_as_root_leave_nothing_running(
    sshd: Sshd, ssh_host: HostConfig, sudoers: Sudoers, path: str
) -> None:
    """The login user cannot signal root's processes; the stop goes through sudo."""
    sleep = f"sleep {secrets.randbelow(9000) + 1000}"
    rendered = f"{sleep}; echo never"
    sudoers.add(sudoers_line(ssh_host.user, "root", rendered, timeout=30))
    pool = SSHPool({"test": ssh_host})
    try:
        for n in range(20):
            task = asyncio.create_task(pool.run(
                "test", rendered, command_name="s", timeout=30, max_output=1000,
                destructive=path == "exec", become="root"))
            # Cancel at varied points: before, while and after the command starts.
            await asyncio.sleep(0.2 + (n % 4) * 0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # sudo relays TERM to timeout, which ends the group: gone within 2 s.
            assert sshd.wait_until_gone(sleep, 2.0, user="root") == [], n
            assert pool._hosts["test"].slots.busy == 0, n
        assert pool.stopped("test") >= 10  # most were running when cancelled
        # The command did run as root when left alone long enough to be seen.
        task = asyncio.create_task(pool.run(
            "test", rendered, command_name="s", timeout=30, max_output=1000,
            destructive=path == "exec", become="root"))
        await wait_until(lambda: sshd.processes(sleep, user="root"), 5,
                         "the elevated command started", every=0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sshd.wait_until_gone(sleep, 2.0, user="root") == []
    finally:
        await pool.close()
        await asyncio.to_thread(sshd.kill, sleep, user="root")


@pytest.mark.parametrize("path", ["exec", "fast"])
async def test_cancels_of_a_fan_out_running_as_root_leave_nothing_behind(
    sshd: Sshd, ssh_host: HostConfig, sudoers: Sudoers, tmp_path: Path, path: str
) -> None:
    """Issue 19 with `become`: fan-outs over 6 hosts of a command that runs as root, each
    cancelled at its own moment from before its first byte to the middle of its output (in
    turn as a task is cancelled and as the MCP SDK cancels). When a cancel returns, root
    runs nothing of it (the stop went through sudo), every slot is free and every call has
    its end record."""
    mark = marker()
    command = f"root_chatter_{path}"
    extra = tmp_path / "chatter.yaml"
    extra.write_text(chatter_catalog(command, mark, destructive=path == "exec", become=True))
    catalog = load_catalog([extra])
    sudoers.add(sudoers_line(ssh_host.user, "root", render(catalog.get(command), {}),
                             timeout=30))
    names = [f"web-{i}" for i in range(6)]
    settings: Settings = dataclasses.replace(
        settings_for(ssh_host), hosts={name: dataclasses.replace(ssh_host, name=name)
                                       for name in names},
        default_host=names[0], audit_log=tmp_path / "audit.jsonl")
    service = build_service(settings, mode="local", catalog=catalog)
    try:
        storm = await cancel_storm(service, command, LOCAL, audit=tmp_path / "audit.jsonl",
                                   sshd=sshd, marker=mark, user="root", cancels=60)
    finally:
        await service.pool.close()
        await asyncio.to_thread(sshd.kill, f"sleep {mark}", user="root")
    stopped = sum(service.pool.stopped(name) for name in names)
    print(storm.summary(f"become, {path}, 6 hosts") + f"; {stopped} sudos stopped")
    assert storm.clean, storm
    assert storm.seen, "the count never saw the command running as root: it proves nothing"
    assert stopped > storm.cancels * len(names) * 0.5, stopped  # most were running
