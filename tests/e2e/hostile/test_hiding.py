"""Item 6: a restricted caller learns nothing the policy hides: not the other hosts, not
the rest of the catalog, not the policy file or the rules of others.

Bob may run `hostname` and `uptime` on host `web`. The agent also has `db` (its default)
and the whole catalog; the operator's policy file lives at a path worth hiding.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from agent.access.identity import Identity, local_user_identity
from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from tests.support.agents import running_agent
from tests.support.fake_anthropic import FakeAnthropic, Step, Text
from tests.support.peers import by_address, http_from, mcp_from
from tests.support.waiting import wait_until

BOB = Identity(login="bob@example.com", node="phone.tailnet.test")
OPERATOR = local_user_identity("local-operator")
POLICY = """
default: none
rules:
  - name: bob-web-basics
    who: [bob@example.com]
    hosts: [web]
    commands: [hostname, uptime]
  - name: ops-secret-rule
    who: [ops@example.com]
    destructive: true
"""
HIDDEN = ("db", "ops-secret-rule", "disk_usage", "docker_ps", "service_logs")


def settings(ssh_host: HostConfig, tmp_path: Path, fake: FakeAnthropic) -> Settings:
    policy = tmp_path / "secret-policy-location.yaml"
    policy.write_text(POLICY)
    web = dataclasses.replace(ssh_host, name="web")
    db = dataclasses.replace(ssh_host, name="db", address="127.0.0.1", user="dbadmin")
    return dataclasses.replace(
        Settings(), hosts={"web": web, "db": db}, default_host="db", policy_file=policy,
        audit_log=tmp_path / "audit.jsonl", rate_burst=1000,
        anthropic_api_key="sk-ant-test-not-a-real-key", anthropic_model="claude-test",
        anthropic_base_url=fake.base_url)


def leaks(text: str, tmp_path: Path, asked: str = "") -> list[str]:
    """What in `text` the policy hides from Bob (a name he typed himself excepted)."""
    found = [h for h in HIDDEN if h != asked and (
        f"'{h}'" in text or f'"{h}"' in text or f"{h}," in text or f", {h}" in text)]
    if "secret-policy-location" in text or str(tmp_path) in text:
        found.append("policy path")
    return [f for f in found if f != asked]


def text_of(result: object) -> str:
    content = getattr(result, "content", [])
    structured = getattr(result, "structured_content", None)
    return " ".join(getattr(c, "text", "") for c in content) + json.dumps(structured)


async def test_a_restricted_caller_sees_only_what_the_policy_gives_it(
    ssh_host: HostConfig, tmp_path: Path
) -> None:
    fake = FakeAnthropic([Step(when="hello", reply=[Text("Hi.")])]).start()
    peers = by_address({"127.0.0.2": BOB, "127.0.0.1": OPERATOR})
    try:
        async with running_agent(settings(ssh_host, tmp_path, fake), resolver=peers,
                                 mode="tailnet") as agent:
            async with mcp_from(agent.url, "127.0.0.2", mode="legacy") as bob:
                hosts = await bob.call_tool("list_hosts", {})
                assert [h["name"] for h in hosts.structured_content["hosts"]] == ["web"]  # type: ignore[index]
                status = (await bob.call_tool("server_status", {})).structured_content
                assert status is not None
                assert list(status["hosts"]) == ["web"] and status["default_host"] is None
                assert status["catalog_commands"] == 2 and "policy" not in status
                assert "ssh_connections" not in status  # all hosts' connections: not Bob's
                no_host = await bob.call_tool("execute_command", {"command": "hostname"})
                assert "hosts you can use: web" in text_of(no_host)
                named_db = text_of(await bob.call_tool(
                    "execute_command", {"command": "hostname", "host": "db"}))
                named_nope = text_of(await bob.call_tool(
                    "execute_command", {"command": "hostname", "host": "nope"}))
                # A hidden host answers exactly like one that does not exist.
                assert named_db.replace("'db'", "'X'") == named_nope.replace("'nope'", "'X'")
                unknown = text_of(await bob.call_tool("execute_command", {"command": "nope"}))
                assert "Commands you can use: hostname, uptime" in unknown
                refused = text_of(await bob.call_tool(
                    "execute_command", {"command": "disk_usage", "host": "web"}))
                assert "refused by policy" in refused
                assert leaks(text_of(no_host), tmp_path) == []
                assert leaks(unknown, tmp_path) == []
                assert leaks(refused, tmp_path, asked="disk_usage") == []
                # At volume: 300 probes with names a curious peer would try.
                rng = random.Random(15)
                names = ["db", "web", "nope", "DB", "db ", "localhost", "*", "default", ""]
                commands = ["disk_usage", "hostname", "docker_ps", "service_logs", "x",
                            "ping", "uptime", "make_marker", "*"]
                for _ in range(300):
                    host = rng.choice([*names, None])
                    command = rng.choice(commands)
                    args = {"command": command, **({"host": host} if host is not None else {})}
                    answer = text_of(await bob.call_tool("execute_command", args))
                    asked = {str(host), command}
                    found = [x for x in leaks(answer, tmp_path) if x not in asked]
                    assert found == [], (args, answer)
            # The chat page: Bob's host selector and Claude's prompt hold only `web`.
            async with http_from("127.0.0.2", base_url=agent.base, timeout=30) as http:
                page = (await http.get("/")).text
                assert '<input type="hidden" name="host" value="web">' in page
                assert ">db<" not in page and '"db"' not in page
                ran = await http.post("/chat/run", data={"command": "hostname", "host": "web"},
                                      headers={"Sec-Fetch-Site": "same-origin"})
                assert "card bad" not in ran.text, ran.text
                await http.post("/chat/send", data={"message": "hello"},
                                headers={"Sec-Fetch-Site": "same-origin"})
                await wait_until(lambda: fake.requests, 10, "a request to the API")
            system = fake.requests[0]["system"]
            assert "  - web" in system and "db" not in system.split("Catalog")[0]
            assert "@" not in system.split("Catalog")[0]  # no user@address
            assert "hostname" in system and "disk_usage" not in system
            # The operator, and only the operator, is told where the policy lives.
            async with mcp_from(agent.url, "127.0.0.1", mode="legacy") as operator:
                status = (await operator.call_tool("server_status", {})).structured_content
                assert status is not None and "secret-policy-location" in status["policy"]
                assert sorted(status["hosts"]) == ["db", "web"]
                assert status["ssh_connections"]["cap"] == 1000
                assert status["ssh_connections"]["open"] >= 1  # Bob's call to web
    finally:
        fake.stop()
