"""The scale benchmark on the test tailnet: as many tailnet nodes as this machine takes.

Topology as in bench_fleet.py (tests/support/fleet.py): headscale on a bridge in the
benchmark's namespace; server nodes (tag:scale), each in its own network, UTS and mount
namespaces with its own sshd and tailscaled (so `hostname` answers its own name); the
agent in this process with its own userspace tailscaled, the inventory selector
`tags: [tag:scale]`, TailnetFleet following the netmap, and an in-process MCP client
(the same tools remote clients get) as the local operator.

Nodes are added `step` at a time (at most JOIN_AT_ONCE joining at once). At each
checkpoint, once the agent's netmap shows every node online with a route:

- every node is dialled once through the SOCKS5 proxy (to its sshd's banner), so the
  WireGuard sessions exist for the cold run and its floor alike (timed: a first contact);
- a fresh service (no SSH connection) runs `run_on_hosts hostname` on all nodes (cold),
  then warm rounds of `hostname` and `disk_usage` interleaved;
- the floor: N asyncssh connections through the same proxy at the same concurrency, each
  running `hostname`.

It stops adding nodes at `tailnet_max`, or earlier when the machine gives out: a node
that does not join, a batch whose median join takes over JOIN_LIMIT, a fan-out that does
not succeed everywhere, or not one more node fitting above MEMORY_FLOOR of available
memory at what a node has cost so far (a step is cut to the nodes that fit). The reason is
reported with the figures. The CPU figures are this process's (the agent and its
in-process client); its memory per host is not shown (each checkpoint's service reuses
what the previous one freed: the loopback rows measure it, in an agent process of its
own); the agent's tailscaled is a process of its own, shown apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp import Client

from agent.access.identity import local_user_identity
from agent.app import build_service
from agent.hosts.inventory import TailnetSelector
from agent.mcp import build_mcp_server
from agent.settings import load_settings
from agent.ssh import socks_connector
from agent.tailnet.fleet import TailnetFleet
from tailscale_userspace import TailscaleNode
from tests.bench.bench_servers import rss_mib
from tests.bench.bench_stats import Report, Row
from tests.bench.scale_fanout import COMMANDS, Sample, fanout
from tests.bench.scale_floor import Floor, ssh_floor
from tests.support.fleet import Fleet, ServerNode, fleet_policy, fleet_tailnet, wait_seen

if TYPE_CHECKING:
    from tests.bench.scale import Plan

TAG = "tag:scale"
JOIN_AT_ONCE = 8
JOIN_LIMIT = 45.0  # seconds: a median join slower than this is where the machine gives out
MEMORY_FLOOR = 2 << 30  # bytes of MemAvailable kept free (the cold run at 411 nodes took 1 GiB)
ROUTE_TIMEOUT = 120.0


def nodes_that_fit(free_before: int, nodes: int) -> int:
    """How many more nodes fit above MEMORY_FLOOR, at the memory each has cost so far
    (measured since `free_before`, when `nodes` were not there yet)."""
    free = available_memory()
    per_node = max((free_before - free) / max(nodes, 1), 1.0)
    return int((free - MEMORY_FLOOR) // per_node)


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclasses.dataclass
class Checkpoint:
    n: int
    load1: float
    join_median: float  # seconds, this checkpoint's new nodes
    first_dial: float = 0.0
    cold: Sample | None = None
    warm: dict[str, list[Sample]] = dataclasses.field(default_factory=dict)
    floor: Floor | None = None
    tailscaled_rss: float = 0.0
    memory_available: float = 0.0  # GiB


@contextlib.asynccontextmanager
async def agent_service(fleet: Fleet, node: TailscaleNode, known_hosts: Path, plan: Plan,
                        work: Path, names: Sequence[str]) -> AsyncIterator[tuple[Any, Client]]:
    """A fresh service (no connection yet) that lists every node in `names` online."""
    selector = TailnetSelector(user=fleet_user(fleet), tags=(TAG,), key_path=fleet.client_key,
                               known_hosts=known_hosts)
    settings = dataclasses.replace(load_settings({}, env_file=None),
                                   tailnet_selectors=(selector,),
                                   audit_log=work / "tailnet-audit.jsonl",
                                   fanout_concurrency=plan.fanout_concurrency)
    service = build_service(settings, mode="tailnet",
                            connector=socks_connector(lambda: node.socks5))
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(service.pool.close)
        follower = TailnetFleet(settings.tailnet_selectors, service.hosts, node.localapi)
        await follower.start()
        stack.push_async_callback(follower.stop)
        deadline = time.monotonic() + ROUTE_TIMEOUT
        while not all(n in service.hosts and service.hosts.presence(n).online for n in names):
            if time.monotonic() > deadline:
                missing = [n for n in names if n not in service.hosts]
                raise RuntimeError(f"the agent never listed {', '.join(missing[:5])} online")
            await asyncio.sleep(0.2)
        client = await stack.enter_async_context(Client(build_mcp_server(
            service, stdio_caller=local_user_identity())))
        yield service, client


def fleet_user(fleet: Fleet) -> str:
    return next(iter(fleet.servers.values())).sshd.user


async def join(fleet: Fleet, names: Sequence[str], known_hosts: Path
               ) -> tuple[list[ServerNode], list[float], str]:
    """Start and join `names`, JOIN_AT_ONCE at a time; returns the nodes that joined, each
    one's seconds from start to joined, and the first failure ("" if none)."""
    limit = asyncio.Semaphore(JOIN_AT_ONCE)
    nodes: list[ServerNode] = []
    seconds: list[float] = []
    failures: list[str] = []

    async def one(name: str) -> None:
        async with limit:
            if failures:
                return
            started = time.monotonic()
            try:
                node = await fleet.server(name, tags=[TAG])
            except Exception as exc:
                failures.append(f"{name}: {str(exc).splitlines()[0][:200]}")
                return
            seconds.append(time.monotonic() - started)
            nodes.append(node)
            with known_hosts.open("a") as f:
                f.write(f"{node.dns_name} {node.host_key_pub}\n")

    await asyncio.gather(*(one(n) for n in names))
    return nodes, seconds, failures[0] if failures else ""


async def first_dial(node: TailscaleNode, nodes: Sequence[ServerNode], concurrency: int) -> float:
    """Dial every node's sshd once through the proxy and read its banner (WireGuard up)."""
    connector = socks_connector(lambda: node.socks5)
    limit = asyncio.Semaphore(concurrency)

    async def one(server: ServerNode) -> None:
        async with limit:
            deadline = time.monotonic() + ROUTE_TIMEOUT
            while True:
                try:
                    sock = await asyncio.wait_for(connector(server.dns_name, 22), 30)
                    reader, writer = await asyncio.open_connection(sock=sock)
                    try:
                        if (await asyncio.wait_for(reader.readline(), 30)).startswith(b"SSH-"):
                            return
                    finally:
                        writer.close()
                except Exception:  # no route yet: tried again until ROUTE_TIMEOUT
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.5)

    started = time.perf_counter()
    await asyncio.gather(*(one(s) for s in nodes))
    return time.perf_counter() - started


async def checkpoint(fleet: Fleet, node: TailscaleNode, servers: Sequence[ServerNode],
                     known_hosts: Path, plan: Plan, work: Path, point: Checkpoint,
                     step: Callable[[str], None]) -> str:
    """Measure `point`; returns why the fan-out failed ("" if it succeeded everywhere)."""
    n = len(servers)
    for server in servers:
        await wait_seen(node, server.dns_name, online=True, within=ROUTE_TIMEOUT)
    step(f"tailnet, {n} nodes: a first dial to every node")
    point.first_dial = await first_dial(node, servers, plan.fanout_concurrency)
    names = [s.name for s in servers]
    pid = os.getpid()
    async with agent_service(fleet, node, known_hosts, plan, work, names) as (service, client):
        step(f"tailnet, {n} nodes: cold, then {plan.warm_rounds} warm rounds")
        point.cold = await fanout(client, "hostname", pid)
        point.warm = {c: [] for c in COMMANDS}
        for round_ in range(plan.warm_rounds + 1):
            for command in COMMANDS:
                sample = await fanout(client, command, pid)
                if round_:
                    point.warm[command].append(sample)
        hosts = [service.hosts[name] for name in names]
    if node.pid is not None:
        point.tailscaled_rss = rss_mib(node.pid)
    step(f"tailnet, {n} nodes: the SSH layer alone")
    point.floor = await ssh_floor(
        [(h.address, h.port) for h in hosts], user=fleet_user(fleet), key=fleet.client_key,
        known_hosts=known_hosts, concurrency=plan.fanout_concurrency, command="hostname",
        connector=socks_connector(lambda: node.socks5))
    point.memory_available = available_memory() / (1 << 30)
    samples = [point.cold, *point.warm["hostname"], *point.warm["disk_usage"]]
    bad = [s for s in samples if s.error or s.ok != n]
    return "" if not bad else f"a fan-out did not succeed everywhere: {bad[0].error}"[:300]


async def measure_tailnet(report: Report, plan: Plan, work: Path,
                          step: Callable[[str], None]) -> None:
    points: list[Checkpoint] = []
    stop = f"stopped at --tailnet-max {plan.tailnet_max}"
    begun = time.monotonic()
    async with fleet_tailnet(work / "tailnet", fleet_policy([], [TAG, "tag:agent"])) as fleet:
        node = await fleet.node("scale-agent", user="ops", tags=["tag:agent"])
        known_hosts = work / "tailnet_known_hosts"
        known_hosts.touch()
        servers: list[ServerNode] = []
        target = plan.tailnet_nodes
        free_before = available_memory()
        while True:
            names = [f"node-{i:03d}" for i in range(len(servers) + 1, target + 1)]
            step(f"tailnet: joining {len(names)} nodes ({len(servers)} joined)")
            joined, seconds, failure = await join(fleet, names, known_hosts)
            servers += joined
            median = statistics.median(seconds) if seconds else 0.0
            if failure and not joined:
                stop = f"a node did not join: {failure}"
                break
            point = Checkpoint(len(servers), round(os.getloadavg()[0], 2), median)
            problem = await checkpoint(fleet, node, servers, known_hosts, plan, work, point,
                                       step)
            points.append(point)
            report.rows += checkpoint_rows(point)
            if failure:
                stop = f"a node did not join: {failure}"
            elif problem:
                stop = problem
            elif median > JOIN_LIMIT:
                stop = f"the median join took {median:.0f} s (limit {JOIN_LIMIT:.0f} s)"
            elif (room := nodes_that_fit(free_before, len(servers))) < 1:
                stop = f"less than {MEMORY_FLOOR >> 30} GiB of memory left after one more node"
            elif len(servers) < plan.tailnet_max:
                # No step past the memory a node has cost so far (a node joining takes its
                # memory at once: 60 of them once left this machine with no memory at all).
                target = min(plan.tailnet_max, len(servers) + plan.tailnet_step,
                             len(servers) + room)
                continue
            break
    report.machine["tailnet_checkpoints"] = [p.n for p in points]
    report.machine["tailnet_stop"] = stop
    report.machine["tailnet_seconds"] = round(time.monotonic() - begun)


def checkpoint_rows(p: Checkpoint) -> list[Row]:
    group = f"scale: {p.n} tailnet nodes (each its own namespaces, sshd, tailscaled)"
    k = f"t{p.n}"
    rows = [Row(f"{k}_join", "join: node started -> joined (median of the new ones)", group,
                value=p.join_median, unit="s"),
            Row.latency(f"{k}_first_dial", "first dial to every node (SOCKS5 -> banner)", group,
                        [p.first_dial])]
    if p.cold is not None:
        rows.append(dataclasses.replace(Row.latency(
            f"{k}_cold_hostname", "cold run_on_hosts hostname", group, [p.cold.wall],
            note=p.cold.error[:200]), errors=p.cold.total - p.cold.ok))
        if p.cold.first is not None:
            rows.append(Row.latency(f"{k}_cold_hostname_first", "  cold: time to the first result",
                                    group, [p.cold.first]))
        rows.append(Row(f"{k}_cold_hostname_cpu", "  cold: agent + client CPU per host", group,
                        value=1000 * p.cold.cpu / p.n, unit="ms CPU"))
    for command, samples in p.warm.items():
        if not samples:
            continue
        rows.append(dataclasses.replace(Row.latency(
            f"{k}_warm_{command}", f"warm run_on_hosts {command}", group,
            [s.wall for s in samples]), errors=sum(s.total - s.ok for s in samples)))
        firsts = [s.first for s in samples if s.first is not None]
        if firsts:
            rows.append(Row.latency(f"{k}_warm_{command}_first",
                                    f"  warm {command}: time to the first result", group, firsts))
        rows.append(Row(f"{k}_warm_{command}_cpu", f"  warm {command}: agent + client CPU per host",
                        group, value=1000 * statistics.median(s.cpu for s in samples) / p.n,
                        unit="ms CPU"))
        rows.append(Row(f"{k}_bytes_{command}", f"  {command} result: text", group,
                        value=float(samples[-1].text_bytes), unit="bytes",
                        note=f"{samples[-1].distinct} distinct outputs"))
    if p.floor is not None:
        rows.append(Row.latency(f"{k}_floor_exec", "floor: N connections + hostname via SOCKS5",
                                group, [p.floor.seconds]))
        rows.append(Row(f"{k}_floor_exec_cpu", "  floor: client CPU per host", group,
                        value=1000 * p.floor.cpu / p.n, unit="ms CPU"))
        if p.floor.warm is not None:
            rows.append(Row.latency(f"{k}_floor_warm", "floor, warm: hostname again on the N "
                                    "open connections", group, [p.floor.warm]))
    rows += [
        Row(f"{k}_tailscaled_rss", "the agent's tailscaled RSS", group, value=p.tailscaled_rss,
            unit="MiB"),
        Row(f"{k}_memory_available", "machine memory available after", group,
            value=p.memory_available, unit="GiB"),
        Row(f"{k}_load1", "load average (1 min) at the checkpoint", group, value=p.load1,
            unit="load"),
    ]
    return rows
