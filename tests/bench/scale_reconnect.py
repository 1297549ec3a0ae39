"""What closing idle connections costs: a call after its connection was closed idle
(TAILNET_AGENT_SSH_IDLE) next to the same call on an open connection, and a fan-out over
all N hosts after every connection was closed idle next to the warm one.

An agent process of its own, with the idle time at RECONNECT_IDLE seconds (the others
keep the default, so nothing closes during their fan-outs): one fan-out opens every
connection; then `execute_command hostname` on one host, on its open connection, a few
times; then, each time after the agent says every connection is closed
(`server_status`'s ssh_connections), the same call, which reconnects; then CYCLES times:
wait until every connection was closed idle, one fan-out over all N. The agent's RSS with
every connection open, after every one was closed idle, and after each reopening: the
connections' memory is bounded by the cap only if closing and reopening them does not
leave it growing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from typing import Any

from mcp import Client

from tests.bench.bench_servers import rss_mib
from tests.bench.bench_stats import Row
from tests.bench.scale_fanout import Sample, fanout

RECONNECT_IDLE = 2.0  # seconds: TAILNET_AGENT_SSH_IDLE of this agent
SINGLE_ROUNDS = 5
CYCLES = 3  # every connection closed idle, then a fan-out over all N
CLOSE_WAIT = 120.0  # seconds to wait for every connection to be closed idle


@dataclasses.dataclass
class Reconnect:
    warm: list[float] = dataclasses.field(default_factory=list)  # seconds, connection open
    after_idle: list[float] = dataclasses.field(default_factory=list)  # reconnecting
    fanouts: list[Sample] = dataclasses.field(default_factory=list)  # after every close
    closed_idle: int = 0  # connections the agent closed idle (its own count)
    rss_open: float = 0.0  # MiB, every connection open (the first fan-out)
    rss_closed: float = 0.0  # MiB, every connection closed idle
    rss_reopened: list[float] = dataclasses.field(default_factory=list)  # MiB, each cycle


async def ssh_connections(client: Client) -> dict[str, Any]:
    status = (await client.call_tool("server_status", {})).structured_content or {}
    connections: dict[str, Any] = status.get("ssh_connections") or {}
    return connections


async def all_closed(client: Client) -> dict[str, Any]:
    """Wait until the agent has no SSH connection open; its counts then."""
    deadline = time.monotonic() + CLOSE_WAIT
    while True:
        connections = await ssh_connections(client)
        if connections.get("open") == 0:
            return connections
        if time.monotonic() > deadline:
            raise RuntimeError(f"connections still open after {CLOSE_WAIT:g} s: {connections}")
        await asyncio.sleep(0.25)


async def one_call(client: Client, host: str) -> float:
    started = time.perf_counter()
    result = await client.call_tool("execute_command", {"command": "hostname", "host": host})
    if result.is_error:
        raise RuntimeError(f"hostname on {host} failed: {result.content}")
    return time.perf_counter() - started


async def measure_reconnect(client: Client, agent_pid: int, host: str,
                            rounds: int = SINGLE_ROUNDS, cycles: int = CYCLES) -> Reconnect:
    figures = Reconnect()
    await fanout(client, "hostname", agent_pid)  # every connection open once
    figures.rss_open = rss_mib(agent_pid)
    await one_call(client, host)  # its shell warm
    for _ in range(rounds):
        figures.warm.append(await one_call(client, host))
    for _ in range(rounds):
        await all_closed(client)
        figures.after_idle.append(await one_call(client, host))
    for cycle in range(cycles):
        await all_closed(client)
        if cycle == 0:
            figures.rss_closed = rss_mib(agent_pid)
        figures.fanouts.append(await fanout(client, "hostname", agent_pid))
        figures.rss_reopened.append(rss_mib(agent_pid))
    figures.closed_idle = int((await all_closed(client)).get("closed_idle", 0))
    return figures


def reconnect_rows(prefix: str, group: str, n: int, figures: Reconnect) -> list[Row]:
    rows = [
        Row.latency(f"{prefix}_single_warm", "one call (execute_command hostname), its "
                    "connection open", group, figures.warm),
        Row.latency(f"{prefix}_single_reconnect", "  the same call after its connection was "
                    f"closed idle (TAILNET_AGENT_SSH_IDLE={RECONNECT_IDLE:g})", group,
                    figures.after_idle),
    ]
    samples = figures.fanouts
    if samples:
        errors = [s.error for s in samples if s.error]
        rows.append(dataclasses.replace(Row.latency(
            f"{prefix}_after_idle_hostname", f"run_on_hosts hostname after all {n} "
            "connections were closed idle", group, [s.wall for s in samples],
            note=errors[0][:200] if errors else ""),
            errors=sum(s.total - s.ok + (0 if s.total else 1) for s in samples)))
        rows.append(Row(f"{prefix}_after_idle_hostname_cpu", "  after idle close: agent CPU "
                        "per host", group, value=statistics.median(
                            1000 * s.cpu / n for s in samples), unit="ms CPU",
                        n=len(samples)))
    rows.append(Row(f"{prefix}_closed_idle", "connections the agent closed idle", group,
                    value=float(figures.closed_idle), unit="connections"))
    rows += [
        Row(f"{prefix}_idle_rss_open", f"agent RSS, {n} connections open (this agent)", group,
            value=figures.rss_open, unit="MiB"),
        Row(f"{prefix}_idle_rss_closed", "  after every connection was closed idle", group,
            value=figures.rss_closed, unit="MiB"),
    ]
    rows += [Row(f"{prefix}_idle_rss_reopened_{i}", f"  after all {n} were closed idle and "
                 f"opened again ({i})", group, value=rss, unit="MiB")
             for i, rss in enumerate(figures.rss_reopened, 1)]
    return rows
