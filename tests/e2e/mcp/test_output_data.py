"""Output as data, as an MCP client (the official SDK) sees it: the default catalog's parsed
commands on the real test sshd return their rows in structuredContent, parsed from the
redacted output; "which hosts have a disk over 90 % full?" on a fleet of real sshd hosts
returns only the full ones; a filter that cannot work is refused with what is wrong.

The fleet is tests/bench/scale_hosts.py's: one sshd answering on distinct loopback
addresses, whose `df` prints each address's own file (one host in 50 over 90 % full).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp import Client

from agent.access.identity import local_user_identity
from agent.fanout.hostlist import expand
from agent.hosts.inventory import HostConfig
from tests.bench.scale_hosts import LoopbackFleet
from tests.support.agents import RunningAgent, agent_with_catalog, running_agent, settings_for
from tests.support.secrets_planted import GITHUB_TOKEN

FLEET = 60  # hosts 7 and 57 (web-008, app-...) are over 90 % full
# The default catalog's parsed commands, and a field each row of their data has.
PARSED = {"disk_usage": "use_percent", "memory_usage": "total", "uptime": "load_1m",
          "top_processes": "cpu_percent", "top_memory_processes": "rss",
          "os_release": "ID"}
CATALOG = f"""
commands:
  release_with_a_secret:
    description: os-release with a token in it.
    category: Test
    template: "printf 'ID=debian\\\\nAPI_TOKEN=%s%s\\\\n' {GITHUB_TOKEN[:10]} {GITHUB_TOKEN[10:]}"
    parser: os_release
  not_really_df:
    description: Says it is df, prints something else.
    category: Test
    template: "printf 'hello world\\\\nfoo bar baz\\\\n'"
    parser: df
"""


@pytest.fixture
async def agent(ssh_host: HostConfig, tmp_path: Path) -> AsyncIterator[RunningAgent]:
    async with agent_with_catalog(ssh_host, tmp_path, CATALOG) as running:
        yield running


@pytest.fixture(scope="module")
def fleet() -> Iterator[LoopbackFleet]:
    hosts = LoopbackFleet(FLEET, servers=1)
    try:
        hosts.start()
        yield hosts
    finally:
        hosts.cleanup()


@pytest.fixture
async def fleet_agent(fleet: LoopbackFleet, tmp_path: Path) -> AsyncIterator[RunningAgent]:
    _, known_hosts = fleet.write_inventory(FLEET, tmp_path)
    hosts = {h.name: HostConfig(name=h.name, address=h.address, user=fleet.user, port=h.port,
                                key_path=fleet.client_key, known_hosts=known_hosts)
             for h in fleet.hosts}
    first = fleet.hosts[0]
    settings = dataclasses.replace(settings_for(hosts[first.name]), hosts=hosts,
                                   audit_log=tmp_path / "audit.jsonl")
    async with running_agent(settings) as running:
        yield running


async def test_parsed_commands_return_rows_from_the_real_host(agent: RunningAgent) -> None:
    async with Client(agent.url) as client:
        for command, field in PARSED.items():
            result = await client.call_tool("execute_command", {"command": command})
            data = result.structured_content
            assert not result.is_error and data is not None, result.content
            assert data["parse_note"] == "", (command, data["parse_note"], data["stdout"])
            rows = data["data"] if isinstance(data["data"], list) else [data["data"]]
            assert rows and all(row.get(field) is not None for row in rows), (command, rows)
            assert data["stdout"].strip()  # the text is still there
        listed = (await client.call_tool("list_commands", {})).structured_content
    assert listed is not None
    fields = {c["name"]: c["fields"] for c in listed["commands"]}
    assert fields["disk_usage"]["use_percent"] == "integer"
    assert fields["hostname"] is None
    # The service's own result carries the same rows (what the chat and fan-outs read).
    disk = await agent.service.run("disk_usage", {}, host=None,
                                   identity=local_user_identity("local"))
    root = [row for row in disk.data if row["mounted_on"] == "/"]
    assert len(root) == 1 and 0 <= root[0]["use_percent"] <= 100, disk.data


async def test_data_comes_from_the_redacted_output_and_bad_output_is_a_note(
    agent: RunningAgent,
) -> None:
    async with Client(agent.url) as client:
        secret = await client.call_tool("execute_command", {"command": "release_with_a_secret"})
        wrong = await client.call_tool("execute_command", {"command": "not_really_df"})
    data = secret.structured_content
    assert data is not None and data["data"]["ID"] == "debian"
    assert data["data"]["API_TOKEN"].startswith("[REDACTED: ")
    # The command line holds the token in two pieces; nothing shown holds it whole.
    assert GITHUB_TOKEN not in json.dumps(data)
    assert GITHUB_TOKEN not in "".join(c.text for c in secret.content if c.type == "text")
    bad = wrong.structured_content
    assert bad is not None and not wrong.is_error and bad["data"] is None
    assert bad["parse_note"].startswith("could not parse the output as df (a row without "
                                        "mounted_on")
    assert bad["stdout"] == "hello world\nfoo bar baz\n"


async def test_which_hosts_have_a_disk_over_90_percent_full(
    fleet: LoopbackFleet, fleet_agent: RunningAgent,
) -> None:
    full = sorted(h.name for h in fleet.hosts if h.disk == "full")
    assert len(full) == 2
    async with Client(fleet_agent.url) as client:
        result = await client.call_tool("run_on_hosts", {
            "command": "disk_usage", "hosts": "all", "filter": "use_percent >= `90`"})
        unfiltered = await client.call_tool("run_on_hosts", {
            "command": "disk_usage", "hosts": "all"})
        # A df field that df -hP does not print: nothing matches, and the result says why.
        absent = await client.call_tool("run_on_hosts", {
            "command": "disk_usage", "hosts": "all", "filter": "capacity_percent >= `90`"})
    data = result.structured_content
    assert not result.is_error and data is not None, result.content
    assert data["summary"] == {"total": FLEET, "ok": FLEET, "failed": 0, "offline": 0,
                               "refused": 0, "skipped": 0}
    assert data["filter"] == {"expression": "use_percent >= `90`", "matched": 2,
                              "not_matched": FLEET - 2, "undetermined": 0, "note": ""}
    # The full hosts matched the same rows: one group, listed with those rows (and the
    # first host's recording), not its text; the others only counted.
    (group,) = data["groups"]
    assert data["hosts"] == [] and sorted(expand(group["hosts"])) == full
    assert group["count"] == 2 and group["matched"] is True and "stdout" not in group
    assert [(row["mounted_on"], row["use_percent"]) for row in group["data"]] == [("/", 95)]
    # Its recording is its first host's, in the order the fleet names them (web before db).
    assert group["audit_host"] == expand(group["hosts"])[0] and group["audit_id"]
    text = "".join(c.text for c in result.content if c.type == "text")
    everything = "".join(c.text for c in unfiltered.content if c.type == "text")
    print(f"\n'disk over 90 % full?' on {FLEET} hosts: {len(text.encode())} bytes of text "
          f"(unfiltered: {len(everything.encode())})")
    assert len(text.encode()) < 4096
    # Without a filter every host is listed, grouped by output, each group with its rows.
    rows = unfiltered.structured_content
    assert rows is not None and "filter" not in rows and rows["hosts"] == []
    assert sum(g["count"] for g in rows["groups"]) == FLEET and len(rows["groups"]) == 3
    assert all(len(g["data"]) == 6 and g["stdout"] for g in rows["groups"])
    verdicts = (absent.structured_content or {})["filter"]
    assert (verdicts["matched"], verdicts["not_matched"]) == (0, FLEET)
    assert verdicts["note"].startswith("no row of any host had capacity_percent")
    assert "use_percent" in verdicts["note"]


@pytest.mark.parametrize(("arguments", "says"), [
    ({"command": "disk_usage", "filter": "use_pct >= `90`"},
     "'use_pct', not a field of 'disk_usage' (df); its rows have: filesystem (text)"),
    ({"command": "disk_usage", "filter": "use_percent >= 90"},
     "a number is written in backticks"),
    ({"command": "disk_usage", "filter": "use_percent >= '90'"},
     "it compares text with a number"),
    ({"command": "disk_usage", "filter": "[@,@][] | " * 12 + "`true`"}, "too costly"),
    ({"command": "disk_usage", "filter": "!" * 30 + "`true`"}, "nested too deeply"),
    ({"command": "disk_usage", "filter": "x" * 5000}, "at most 400 characters"),
    ({"command": "hostname", "filter": "`true`"}, "'hostname' has no parser"),
])
async def test_a_filter_that_cannot_work_is_refused_before_anything_runs(
    fleet_agent: RunningAgent, tmp_path: Path, arguments: dict[str, str], says: str,
) -> None:
    async with Client(fleet_agent.url) as client:
        result = await client.call_tool("run_on_hosts", {"hosts": "all", **arguments})
    text = "".join(c.text for c in result.content if c.type == "text")
    assert result.is_error and says in text, text
    assert "Traceback" not in text and len(text) < 1500
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert not [r for r in records if r.get("rendered")], "something ran"
