"""The fleet figures: one command on 8 tailnet hosts, an offline host, and discovery.

Topology (tests/support/fleet.py): headscale on a bridge in the benchmark's namespace;
8 server nodes (tag:bench), each in its own namespaces with its own sshd; a 9th node
joined and stopped (offline). The agent is in this process: its own userspace
tailscaled, the service with the inventory selector `tags: [tag:bench]` and the
TailnetFleet following the netmap, called through an in-process MCP client (the same
tools remote clients get) as the local operator (no rate limit).

- fan-out: `run_on_hosts hostname tag:bench` sampled interleaved with `execute_command
  hostname` on each of the 8 hosts (the target compares it with the slowest of them),
  with 8 execute_command calls at once, and with 8 commands at once on the SSH layer
  alone: on one machine the 8 "hosts" (their tailscaled, sshd and shells) share its CPUs
  with the agent, which a real fleet does not, so that floor says what is possible here;
- offline: `execute_command` on the stopped node (answered from the netmap);
- discovery: a new node is started; from `tailscale up` returning (joined) to the host
  listed by the agent, and to its first successful command.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import Client

from agent.access.identity import local_user_identity
from agent.app import build_service
from agent.hosts.inventory import TailnetSelector
from agent.mcp import build_mcp_server
from agent.settings import load_settings
from agent.ssh import socks_connector
from agent.tailnet.fleet import TailnetFleet
from tests.bench.bench_stats import Report, Row, Target
from tests.support.fleet import Fleet, ServerNode, fleet_policy, fleet_tailnet

GROUP = "fleet: 8 tailnet hosts, each its own namespace"
HOSTS = 8
HOSTNAME = {"command": "hostname"}


@dataclasses.dataclass
class Bench:
    fleet: Fleet
    client: Client
    service: Any
    known_hosts: Path
    nodes: list[ServerNode]

    def pin(self, node: ServerNode) -> None:
        with self.known_hosts.open("a") as f:
            f.write(f"{node.dns_name} {node.host_key_pub}\n")

    async def hostname(self, host: str) -> bool:
        result = await self.client.call_tool("execute_command", {**HOSTNAME, "host": host})
        return not result.is_error and result.structured_content["stdout"].strip() == host


@contextlib.asynccontextmanager
async def bench_fleet(work: Path) -> AsyncIterator[Bench]:
    async with fleet_tailnet(work / "fleet", fleet_policy([], ["tag:bench", "tag:agent"])
                             ) as fleet, contextlib.AsyncExitStack() as stack:
        nodes = list(await asyncio.gather(*(
            fleet.server(f"bench-{i}", tags=["tag:bench"]) for i in range(1, HOSTS + 1))))
        agent = await fleet.node("bench-fleet-agent", user="ops", tags=["tag:agent"])
        known_hosts = work / "fleet_known_hosts"
        selector = TailnetSelector(user="tnagent", tags=("tag:bench",),
                                   key_path=fleet.client_key, known_hosts=known_hosts)
        settings = dataclasses.replace(load_settings({}, env_file=None),
                                       tailnet_selectors=(selector,),
                                       audit_log=work / "fleet-audit.jsonl")
        service = build_service(settings, mode="tailnet",
                                connector=socks_connector(lambda: agent.socks5))
        stack.push_async_callback(service.pool.close)
        follower = TailnetFleet(settings.tailnet_selectors, service.hosts, agent.localapi)
        await follower.start()
        stack.push_async_callback(follower.stop)
        client = await stack.enter_async_context(Client(build_mcp_server(
            service, stdio_caller=local_user_identity())))
        bench = Bench(fleet, client, service, known_hosts, nodes)
        for node in nodes:
            bench.pin(node)
        deadline = time.monotonic() + 60
        for node in nodes:  # every node listed and answering before anything is timed
            while not await bench.hostname(node.name):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{node.name} never answered through the agent")
                await asyncio.sleep(0.2)
        yield bench


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


async def fanout_rows(bench: Bench, rounds: int) -> list[Row]:
    """The fan-out next to the single calls it replaces and two floors, interleaved:
    8 execute_command calls at once (a client without run_on_hosts), and 8 commands
    at once on the SSH layer alone (what this machine can do in parallel at all)."""
    names = [n.name for n in bench.nodes]
    pool = bench.service.pool

    async def fanout() -> None:
        result = await bench.client.call_tool(
            "run_on_hosts", {**HOSTNAME, "hosts": "tag:bench"})
        summary = result.structured_content["summary"] if not result.is_error else {}
        if summary.get("ok") != HOSTS:
            raise RuntimeError(f"fan-out did not succeed everywhere: {result.content}")

    async def gather_mcp() -> None:
        if not all(await asyncio.gather(*(bench.hostname(n) for n in names))):
            raise RuntimeError("a single call failed")

    async def gather_ssh() -> None:
        await asyncio.gather(*(pool.run(n, "hostname", command_name="hostname", timeout=10,
                                        max_output=65536) for n in names))

    async def single(name: str) -> None:
        if not await bench.hostname(name):
            raise RuntimeError(f"hostname on {name} failed")

    calls: dict[str, Callable[[], Awaitable[None]]] = {
        "fanout": fanout, "gather_mcp": gather_mcp, "gather_ssh": gather_ssh,
        **{n: functools.partial(single, n) for n in names}}
    samples: dict[str, list[float]] = {key: [] for key in calls}
    cpu: dict[str, float] = dict.fromkeys(calls, 0.0)
    for round_ in range(rounds + 3):
        for key, call in calls.items():
            started, cpu_started = time.perf_counter(), _cpu()
            await call()
            if round_ >= 3:  # warm-up rounds are not kept
                samples[key].append(time.perf_counter() - started)
                cpu[key] += _cpu() - cpu_started
    rows = [
        Row.latency("fleet_fanout", f"run_on_hosts hostname on {HOSTS} hosts", GROUP,
                    samples.pop("fanout")),
        Row.latency("fleet_gather_mcp", f"{HOSTS} execute_command calls at once (no fan-out)",
                    GROUP, samples.pop("gather_mcp")),
        Row.latency("fleet_gather_ssh", f"floor: {HOSTS} commands at once, SSH layer alone",
                    GROUP, samples.pop("gather_ssh")),
    ]
    singles = [Row.latency(f"fleet_single_{n}", f"execute_command hostname on {n}", GROUP, s)
               for n, s in samples.items()]
    slowest = max(singles, key=lambda r: r.p50_ms or 0.0)
    rows.append(dataclasses.replace(slowest, key="fleet_slowest_single",
                                    label="slowest single-host call "
                                    f"({slowest.key.removeprefix('fleet_single_')})"))
    rows.append(Row("fleet_fastest_single", "fastest single-host call p50", GROUP,
                    value=min(r.p50_ms or 0.0 for r in singles), unit="ms"))
    per_single = sum(cpu[n] for n in names) / (len(names) * rounds)
    rows.append(Row("fleet_cpu_fanout", "  agent process CPU per host, in a fan-out", GROUP,
                    value=1000 * cpu["fanout"] / (HOSTS * rounds), unit="ms CPU"))
    rows.append(Row("fleet_cpu_single", "  agent process CPU per single-host call", GROUP,
                    value=1000 * per_single, unit="ms CPU"))
    return rows


async def offline_row(bench: Bench, samples: int) -> Row:
    node = await bench.fleet.server("bench-off", tags=["tag:bench"])
    await node.stop_tailscaled()
    deadline = time.monotonic() + 60
    while bench.service.hosts.presence("bench-off").online is not False:
        if time.monotonic() > deadline:
            raise RuntimeError("bench-off never shown offline")
        await asyncio.sleep(0.2)
    seconds = []
    for _ in range(samples):
        started = time.perf_counter()
        result = await bench.client.call_tool("execute_command", {**HOSTNAME,
                                                                  "host": "bench-off"})
        seconds.append(time.perf_counter() - started)
        if not result.is_error or "offline" not in result.content[0].text:
            raise RuntimeError(f"an offline host answered otherwise: {result.content}")
    return Row.latency("fleet_offline", "execute_command on an offline host", GROUP, seconds)


async def discovery_rows(bench: Bench, joins: int) -> list[Row]:
    listed, usable, from_start = [], [], []
    for i in range(joins):
        name = f"bench-new-{i}"
        appeared = asyncio.Event()
        listed_at: list[float] = []

        def seen(name: str = name, appeared: asyncio.Event = appeared,
                 listed_at: list[float] = listed_at) -> None:
            if name in bench.service.hosts and not appeared.is_set():
                listed_at.append(time.monotonic())
                appeared.set()

        bench.service.hosts.subscribe(seen)
        started = time.monotonic()
        node = await bench.fleet.server(name, tags=["tag:bench"])
        joined = time.monotonic()
        bench.pin(node)
        await asyncio.wait_for(appeared.wait(), 60)
        # Listed even before `tailscale up` returned counts as at once.
        listed.append(max(0.0, listed_at[0] - joined))
        while not await bench.hostname(name):
            if time.monotonic() - joined > 60:
                raise RuntimeError(f"{name} never became usable")
            await asyncio.sleep(0.05)
        usable.append(time.monotonic() - joined)
        from_start.append(time.monotonic() - started)
        await node.close()
    return [
        Row("fleet_join_listed", "node joined -> listed by the agent (median)", GROUP,
            value=statistics.median(listed), unit="s", n=joins),
        Row("fleet_join_usable", "node joined -> first command through the agent (median)",
            GROUP, value=statistics.median(usable), unit="s", n=joins),
        Row("fleet_start_usable", "node started (namespaces, sshd, tailscaled) -> usable",
            GROUP, value=statistics.median(from_start), unit="s", n=joins),
    ]


async def measure_fleet(report: Report, rounds: int, work: Path) -> None:
    async with bench_fleet(work) as bench:
        report.rows += await fanout_rows(bench, rounds)
        report.rows.append(await offline_row(bench, max(20, rounds // 2)))
        report.rows += await discovery_rows(bench, 3)


def fleet_targets(report: Report) -> list[Target]:
    def p(key: str, which: str = "p50_ms") -> float | None:
        row = report.row(key)
        return None if row is None else getattr(row, which)

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    fanout, slowest = p("fleet_fanout"), p("fleet_slowest_single")
    floor, clients = p("fleet_gather_ssh"), p("fleet_gather_mcp")
    listed = report.row("fleet_join_listed")
    return [
        Target("fleet_fanout", f"fan-out to {HOSTS} hosts / slowest single-host call p50",
               ratio(fanout, slowest), 1.5,
               detail=f"{fanout or 0:.1f} ms vs {slowest or 0:.1f} ms; the {HOSTS} hosts share "
                      f"this machine's CPUs: {HOSTS} commands at once on the SSH layer alone "
                      f"take {floor or 0:.1f} ms"),
        Target("fleet_fanout_floor", f"fan-out / {HOSTS} commands at once on the SSH layer alone",
               ratio(fanout, floor), 1.5),
        Target("fleet_fanout_clients", f"fan-out / {HOSTS} execute_command calls at once",
               ratio(fanout, clients), 1.0),
        Target("fleet_offline", "a call to an offline host, p99 ms", p("fleet_offline", "p99_ms"),
               1000.0),
        Target("fleet_discovery", "a node joined -> listed by the agent, s",
               None if listed is None else listed.value, 5.0),
    ]
