"""What the people who run the agent see: /metrics, /readyz and the local operator's socket,
on an agent served over real HTTP with the real sshd behind it.

Access over the tailnet (a tailnet grant, a refused user, a tagged node) is in
tests/e2e/tailnet/test_operations.py; here callers are fixed identities.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

from agent.access.identity import Identity
from agent.core.metrics import UNKNOWN
from agent.core.readiness import PROBE_AT_ONCE
from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from agent.web.unix_socket import serving_on_socket
from tests.support.agents import RunningAgent, running_agent, settings_for
from tests.support.sshd import Sshd

BOB = Identity(login="bob@example.com", node="phone.tailnet.test")
CALLS = "tailnet_agent_calls_total"


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text exposition, parsed by the reference parser."""
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    found = [v for n, lbl, v in samples(text) if n == name and lbl == labels]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def label_values(text: str, name: str, label: str) -> set[str]:
    return {lbl[label] for n, lbl, _ in samples(text) if n == name and label in lbl}


async def operator_metrics(running: RunningAgent, socket: Path) -> str:
    """/metrics through the local operator's socket, as `curl --unix-socket` would."""
    transport = httpx.AsyncHTTPTransport(uds=str(socket))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


async def test_calls_are_counted_by_tool_command_host_and_outcome_with_bounded_labels(
    ssh_host: HostConfig,
) -> None:
    async with running_agent(settings_for(ssh_host)) as running:
        async with Client(running.url) as mcp:
            assert not (await mcp.call_tool("check_disk", {})).is_error
            assert (await mcp.call_tool("check_path_size", {"path": "-rf /"})).is_error
            assert (await mcp.call_tool("check_disk", {"host": "ghost"})).is_error
            # A hostile caller invents a thousand commands and hosts: no new series.
            for batch in range(50):
                results = await asyncio.gather(*(
                    mcp.call_tool("execute_command", {"command": f"made-up-{batch}-{i}",
                                                      "host": f"host-{batch}-{i}"})
                    for i in range(20)))
                assert all(r.is_error for r in results)
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{running.base}/metrics")).text  # local mode: the operator

    assert value(text, CALLS, tool="check_disk", command="disk_usage", host="test",
                 outcome="ok") == 1
    assert value(text, "tailnet_agent_call_duration_seconds_count", command="disk_usage",
                 host="test") == 1
    assert value(text, CALLS, tool="check_path_size", command="disk_usage_path", host="test",
                 outcome="invalid") == 1
    assert value(text, CALLS, tool="check_disk", command="disk_usage", host=UNKNOWN,
                 outcome="invalid") == 1
    assert value(text, CALLS, tool="execute_command", command=UNKNOWN, host=UNKNOWN,
                 outcome="invalid") == 1000
    assert value(text, "tailnet_agent_refusals_total", reason="invalid") == 1001
    assert value(text, "tailnet_agent_refusals_total", reason="unknown_host") == 1
    assert label_values(text, CALLS, "host") == {"test", UNKNOWN}
    assert label_values(text, CALLS, "command") == {"disk_usage", "disk_usage_path", UNKNOWN}
    assert "made-up" not in text and "host-1" not in text and "-rf" not in text
    assert value(text, "tailnet_agent_ssh_connected", host="test") == 1
    assert value(text, "tailnet_agent_ssh_connects_total", host="test") == 1
    # One call: a connection's first call opens no persistent shell (agent/ssh/pool.py).
    assert value(text, "tailnet_agent_fast_path_shells_idle", host="test") == 0
    assert value(text, "tailnet_agent_ssh_connections_open") == 1
    assert value(text, "tailnet_agent_ssh_connections_max") == 1000
    assert value(text, "tailnet_agent_ssh_connections_closed_total", reason="idle") == 0
    assert value(text, "tailnet_agent_ssh_connections_closed_total", reason="cap") == 0
    assert value(text, "tailnet_agent_ssh_refused_at_cap_total") == 0
    assert value(text, "tailnet_agent_http_responses_total", route="mcp", code="200") > 1000
    assert value(text, "process_resident_memory_bytes") > 0


async def test_refusals_by_policy_rate_and_audit_are_counted_on_the_operator_socket(
    ssh_host: HostConfig, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("default: none\nrules:\n  - name: bob-disk\n    who: [bob@example.com]\n"
                      "    commands: [disk_usage]\n")
    settings = settings_for(ssh_host, policy_file=policy, rate_burst=3, rate_per_minute=0)
    socket = tmp_path / "run" / "agent.sock"
    async with running_agent(settings, identity=BOB) as running, \
            serving_on_socket(running.agent.ops_app, socket):
        async with Client(running.url) as mcp:
            assert (await mcp.call_tool("check_memory", {})).is_error  # not granted
            outcomes = [(await mcp.call_tool("check_disk", {})).is_error for _ in range(6)]
        # The refused call took one of the 3 tokens too (refusals are rate-limited).
        assert outcomes == [False, False, True, True, True, True]
        text = await operator_metrics(running, socket)
    assert value(text, "tailnet_agent_refusals_total", reason="policy") == 1
    assert value(text, "tailnet_agent_refusals_total", reason="rate_limit") == 4
    assert value(text, CALLS, tool="check_disk", command="disk_usage", host="test",
                 outcome="limited") == 4
    assert value(text, CALLS, tool="check_memory", command="memory_usage", host="test",
                 outcome="refused") == 1
    assert not socket.exists(), "the socket is removed when the agent stops"

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    broken = settings_for(ssh_host, audit_log=blocked / "audit.jsonl")
    async with running_agent(broken) as running, serving_on_socket(running.agent.ops_app,
                                                                   socket):
        async with Client(running.url) as mcp:
            refused = await mcp.call_tool("check_disk", {})
        assert refused.is_error and "audit log" in str(refused.content)
        text = await operator_metrics(running, socket)
    assert value(text, "tailnet_agent_audit_write_failures_total") >= 1
    assert value(text, "tailnet_agent_refusals_total", reason="audit_unavailable") == 1


async def test_metrics_need_the_right_and_readiness_shows_others_no_hosts(
    ssh_host: HostConfig, tmp_path: Path
) -> None:
    async with running_agent(settings_for(ssh_host), identity=BOB) as running, \
            httpx.AsyncClient() as http:
        refused = await http.get(f"{running.base}/metrics")
        ready = await http.get(f"{running.base}/readyz")
    assert refused.status_code == 403
    assert "bob@example.com may not read this agent's metrics" in refused.text
    assert "[rule: default deny]" in refused.text and "metrics: true" in refused.text
    assert ready.status_code == 200 and ready.json() == {
        "ready": True, "reason": "ready", "tailnet": None}

    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - name: bob-watches\n    who: [bob@example.com]\n"
                      "    commands: []\n    metrics: true\n")
    granted = settings_for(ssh_host, policy_file=policy)
    async with running_agent(granted, identity=BOB) as running, httpx.AsyncClient() as http:
        metrics = await http.get(f"{running.base}/metrics",
                                 headers={"Accept": "application/openmetrics-text"})
        ready = await http.get(f"{running.base}/readyz")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert metrics.text.rstrip().endswith("# EOF")
    assert ready.json()["hosts"] == {"test": "reachable"}  # probed: nobody had connected yet


async def readyz(running: RunningAgent) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{running.base}/readyz")
    return response.status_code, response.json()


async def test_readiness_follows_the_hosts_and_a_flood_costs_one_probe(
    sshd_factory: Callable[..., Sshd],
) -> None:
    server = sshd_factory()
    async with running_agent(settings_for(server.host_config())) as running:
        check = running.agent.readiness
        check.fresh_for = 0.0  # every request evaluates (the default shares 2 s)
        assert await readyz(running) == (200, {"ready": True, "reason": "ready",
                                               "tailnet": None, "hosts": {"test": "reachable"}})
        assert (await readyz(running))[1]["hosts"] == {"test": "connected"}

        check.reprobe_after = 3600.0  # one failed probe, then none however long this takes
        server.stop()
        await running.service.pool.close()
        code, body = await readyz(running)
        assert code == 503 and body["reason"] == "none of the 1 SSH hosts is reachable"
        assert body["hosts"]["test"] != "connected"

        status = await running.service.pool.connection_status()
        before = status["test"]["connects"]
        codes: list[int] = []

        async def hostile(http: httpx.AsyncClient) -> None:
            for _ in range(40):
                codes.append((await http.get(f"{running.base}/readyz")).status_code)

        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=40)) as http:
            await asyncio.gather(*(hostile(http) for _ in range(40)))  # 1600 requests
        assert codes == [503] * 1600
        status = await running.service.pool.connection_status()
        assert status["test"]["connects"] == before, "a flood of /readyz probed the host again"

        # The host is back: the next call reconnects, and readiness sees the connection.
        server.start()
        async with Client(running.url) as mcp:
            assert not (await mcp.call_tool("check_disk", {})).is_error
        assert (await readyz(running))[1]["hosts"] == {"test": "connected"}


async def test_readiness_over_many_hosts_probes_a_few_at_a_time_and_stops_at_an_answer(
    sshd_factory: Callable[..., Sshd], tmp_path: Path,
) -> None:
    """40 hosts, none connected: /readyz opens at most PROBE_AT_ONCE connections, not 40;
    with the first 16 unreachable it goes through them a round at a time; hosts that
    answered before are asked first."""
    server = sshd_factory(listen=("0.0.0.0",))
    hosts = server.loopback_hosts(40, tmp_path)
    unreachable = {f"h{i}" for i in range(1, 17)}
    for name in unreachable:  # nothing listens there: refused at once
        hosts[name] = dataclasses.replace(hosts[name], port=server.port + 1)
    settings = dataclasses.replace(Settings(), hosts=hosts, default_host="h1")

    async def connects() -> dict[str, int]:
        status = await running.service.pool.connection_status()
        return {name: s["connects"] for name, s in status.items() if s["connects"]}

    async with running_agent(settings) as running:
        check = running.agent.readiness
        check.fresh_for, check.reprobe_after = 0.0, 0.0
        rounds = []
        for _ in range(3):  # h1-h8, h9-h16, then h17-h24
            code, body = await readyz(running)
            rounds.append(code)
            assert len(await connects()) <= PROBE_AT_ONCE * len(rounds)
        assert rounds == [503, 503, 200]
        assert set(await connects()) == {f"h{i}" for i in range(1, 25)}
        answered = {name for name, state in body["hosts"].items() if state == "reachable"}
        assert answered and answered <= {f"h{i}" for i in range(17, 25)}
        assert len(server.connected_addresses()) <= PROBE_AT_ONCE

        # Every connection closed (idle, say): those that answered are asked first.
        await running.service.pool.close()
        before = await connects()
        code, body = await readyz(running)
        assert code == 200
        again = {n for n, c in (await connects()).items() if c > before.get(n, 0)}
        assert answered <= again and len(again) <= PROBE_AT_ONCE
        assert not again & unreachable


async def test_readiness_waits_for_the_tailnet_node_to_run(ssh_host: HostConfig) -> None:
    state = {"state": "Starting"}

    async def tailnet_status() -> dict[str, Any]:
        return dict(state)

    async with running_agent(settings_for(ssh_host), tailnet_status=tailnet_status) as running:
        running.agent.readiness.fresh_for = 0.0
        code, body = await readyz(running)
        assert (code, body["reason"]) == (503, "the tailnet node is Starting, not Running")
        state["state"] = "Running"
        assert await readyz(running) == (200, {"ready": True, "reason": "ready",
                                               "tailnet": "Running",
                                               "hosts": {"test": "reachable"}})


async def test_no_host_configured_is_not_ready() -> None:
    async with running_agent(dataclasses.replace(Settings())) as running:
        assert await readyz(running) == (503, {"ready": False, "tailnet": None, "hosts": {},
                                               "reason": "no SSH host is configured"})

