"""The scale benchmark: one command on N hosts at once, N = 10, 100, 300 and 1,000.

    python -m tests.bench.scale [--sizes 10,100,300,1000] [--cold-rounds 3]
                                [--warm-rounds 10] [--fanout-concurrency 64]
                                [--tailnet-nodes 20] [--tailnet-step 40] [--tailnet-max 200]
                                [--no-tailnet] [--quick] [--compare bench-results/scale-OLD.json]

The hosts are real OpenSSH sshd on distinct loopback addresses (tests/bench/scale_hosts.py)
inside the benchmark's own network namespace; the agent is a `tailnet-agent serve --local
--inventory ...` process, called over HTTP by the official MCP SDK client, as a user with
that fleet would. For each N, with a fresh agent for every cold sample:

- the fan-out's wall time (`run_on_hosts` on all N hosts), p50: `hostname` (N distinct
  outputs) and `disk_usage` (3 distinct outputs), cold (the agent's first connection to
  every host) and warm (the connections open), warm rounds interleaved;
- the SSH layer alone (tests/bench/scale_floor.py), sampled between the cold runs: N
  asyncssh connections at the same concurrency, with and without running the command,
  then the command once more on every open connection (the warm floor);
- the result's size in bytes: its text content (what a model is given) and its structured
  content, the distinct outputs and how many copies of them the text holds; our client
  reads results of any size, and says when one is over what a client left at the SDK's
  default accepts (1 MiB per SSE event);
- time to the first result (the first progress notification);
- "which hosts have a disk over 90 % full?": warm `disk_usage` on all N hosts with the
  filter use_percent >= `90` (one host in 50 is): its wall time, the agent's CPU per host
  (parsing every host's df and filtering) and the bytes of text a model reads;
- the agent process's resident memory, idle and with N hosts connected (per host), and
  its CPU time per host in a fan-out (cold and warm), next to the floor's CPU per host;
- the load average when each size began (the machine may be shared);
- what closing idle connections costs (tests/bench/scale_reconnect.py, an agent of its own
  with a 2 s idle time): one call after its connection was closed idle next to the same
  call on an open one, and a fan-out over all N after every connection was closed idle.

Then the test tailnet (tests/bench/scale_tailnet.py): tailnet nodes, each with its own
namespaces, sshd and tailscaled, added until `--tailnet-max` or until the machine gives
out, with the same figures at each checkpoint.

It prints the figures against N (the curves), the table, the issue's targets, and saves
bench-results/scale-<stamp>.json and .txt (and .png when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from mcp import Client
from mcp.client.streamable_http import DEFAULT_MAX_SSE_EVENT_SIZE, streamable_http_client

from agent.settings import BY_FIELD
from tests.bench.bench_servers import ServerProcess, rss_mib, scrubbed_env, start_agent
from tests.bench.bench_stats import Report, Row, render, save
from tests.bench.run import quiet_logging
from tests.bench.scale_fanout import COMMANDS, QUESTION, Sample, fanout
from tests.bench.scale_floor import Floor, ssh_floor
from tests.bench.scale_hosts import LoopbackFleet
from tests.bench.scale_reconnect import RECONNECT_IDLE, Reconnect, measure_reconnect, reconnect_rows
from tests.bench.scale_report import (
    LOOPBACK,
    LOOPBACK_TITLE,
    TAILNET,
    TAILNET_TITLE,
    curve,
    plot,
    targets,
)

RESULTS = Path("bench-results")
SIZES = (10, 100, 300, 1000)
QUESTION_ROUNDS = 3  # warm `disk_usage` fan-outs with the filter, after the warm rounds
# Our client reads results of any size, to measure them; a client left at the SDK's
# default refuses an SSE event (the whole JSON-RPC response) over this.
SDK_EVENT_LIMIT = DEFAULT_MAX_SSE_EVENT_SIZE


@dataclasses.dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    cold_rounds: int  # fresh agents per command and N
    warm_rounds: int  # interleaved warm fan-outs per command
    fanout_concurrency: int
    sshd_servers: int
    tailnet: bool
    tailnet_nodes: int  # the first checkpoint
    tailnet_max: int  # stop adding nodes here at the latest
    tailnet_step: int


def agent_settings(plan: Plan) -> dict[str, str]:
    """The agent's settings for a fleet of this size, as its operator would set them.

    The local operator (this benchmark's caller, `serve --local`) is exempt from the rate
    limit and the host-wide bound; set high anyway, so that a tailnet caller's figures
    would not depend on them (a fan-out takes at most one burst, agent.core.limits).
    """
    return {
        "TAILNET_AGENT_FANOUT_CONCURRENCY": str(plan.fanout_concurrency),
        "TAILNET_AGENT_RATE_PER_MINUTE": "100000",
        "TAILNET_AGENT_RATE_BURST": "10000",
        # Shown as they are: one call per host in a fan-out, far below both.
        "TAILNET_AGENT_HOST_CONCURRENCY": str(BY_FIELD["host_concurrency"].default),
        "TAILNET_AGENT_IDENTITY_CONCURRENCY": str(BY_FIELD["identity_concurrency"].default),
        "TAILNET_AGENT_MAX_SESSIONS": str(BY_FIELD["max_sessions_per_host"].default),
        "TAILNET_AGENT_CONNECT_TIMEOUT": str(BY_FIELD["connect_timeout"].default),
        "TAILNET_AGENT_SSH_MAX_CONNECTIONS": str(BY_FIELD["ssh_max_connections"].default),
        "TAILNET_AGENT_SSH_IDLE": str(BY_FIELD["ssh_idle_timeout"].default),
    }


def raise_nofile() -> tuple[int, int]:
    """Descriptors for N connections in the agent (it inherits the limit) and the floor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- an agent process -------------------------------------------------------------------


@dataclasses.dataclass
class Agent:
    process: ServerProcess
    client: Client

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    async def connected(self) -> int:
        result = await self.client.call_tool("server_status", {})
        hosts = (result.structured_content or {}).get("hosts") or {}
        return sum(1 for state in hosts.values() if state.get("connected"))


@contextlib.asynccontextmanager
async def agent_process(inventory: Path, work: Path, plan: Plan,
                        settings: dict[str, str] | None = None) -> AsyncIterator[Agent]:
    env = {**scrubbed_env(), **agent_settings(plan), **(settings or {}),
           "TAILNET_AGENT_AUDIT_LOG": str(work / "audit.jsonl"), "HOME": str(work)}
    process, url, _ = await asyncio.to_thread(
        start_agent, env, "--local", "--inventory", str(inventory))
    try:
        async with Client(streamable_http_client(url, max_sse_event_size=64 << 20)) as client:
            await client.call_tool("ping", {})  # the MCP session exists before anything is timed
            yield Agent(process, client)
    finally:
        await asyncio.to_thread(process.stop)


# -- one fleet size ---------------------------------------------------------------------


@dataclasses.dataclass
class SizeFigures:
    n: int
    load1: float
    cold: dict[str, list[Sample]] = dataclasses.field(default_factory=dict)
    warm: dict[str, list[Sample]] = dataclasses.field(default_factory=dict)
    floor_exec: list[Floor] = dataclasses.field(default_factory=list)
    floor_connect: list[Floor] = dataclasses.field(default_factory=list)
    question: list[Sample] = dataclasses.field(default_factory=list)  # warm, filtered
    rss_idle: float = 0.0
    rss_connected: float = 0.0
    rss_after_warm: float = 0.0
    connected: int = 0
    reconnect: Reconnect | None = None
    seconds: float = 0.0  # the whole size's measurement


async def measure_size(n: int, fleet: LoopbackFleet, plan: Plan, work: Path,
                       step: Callable[[str], None]) -> SizeFigures:
    begun = time.monotonic()
    folder = work / f"n{n}"
    inventory, known_hosts = fleet.write_inventory(n, folder)
    targets = [(h.address, h.port) for h in fleet.first(n)]
    figures = SizeFigures(n, round(os.getloadavg()[0], 2),
                          cold={c: [] for c in COMMANDS}, warm={c: [] for c in COMMANDS})
    for round_ in range(plan.cold_rounds):
        for command in COMMANDS:
            step(f"N={n}: cold {command} ({round_ + 1}/{plan.cold_rounds})")
            async with agent_process(inventory, folder, plan) as agent:
                rss_idle = rss_mib(agent.pid)
                figures.cold[command].append(await fanout(agent.client, command, agent.pid))
                if round_ == 0 and command == "hostname":
                    figures.rss_idle, figures.rss_connected = rss_idle, rss_mib(agent.pid)
                    figures.connected = await agent.connected()
                    step(f"N={n}: warm, {plan.warm_rounds} rounds interleaved")
                    for warm_round in range(plan.warm_rounds + 1):
                        for warm in COMMANDS:
                            sample = await fanout(agent.client, warm, agent.pid)
                            if warm_round:  # the first round warms up the shells' caches
                                figures.warm[warm].append(sample)
                    figures.rss_after_warm = rss_mib(agent.pid)
                    step(f"N={n}: 'which hosts have a disk over 90 % full?'")
                    for _ in range(QUESTION_ROUNDS):
                        figures.question.append(await fanout(
                            agent.client, "disk_usage", agent.pid, row_filter=QUESTION))
            await asyncio.to_thread(fleet.wait_sessions_gone)
            if command == "hostname":  # the floors between the cold samples
                step(f"N={n}: the SSH layer alone")
                figures.floor_exec.append(await ssh_floor(
                    targets, user=fleet.user, key=fleet.client_key, known_hosts=known_hosts,
                    concurrency=plan.fanout_concurrency, command="hostname"))
                await asyncio.to_thread(fleet.wait_sessions_gone)
                figures.floor_connect.append(await ssh_floor(
                    targets, user=fleet.user, key=fleet.client_key, known_hosts=known_hosts,
                    concurrency=plan.fanout_concurrency, command=None))
                await asyncio.to_thread(fleet.wait_sessions_gone)
    step(f"N={n}: a call and a fan-out after idle close")
    short_idle = {"TAILNET_AGENT_SSH_IDLE": str(RECONNECT_IDLE)}
    async with agent_process(inventory, folder, plan, short_idle) as agent:
        figures.reconnect = await measure_reconnect(agent.client, agent.pid,
                                                    fleet.first(n)[0].name)
    await asyncio.to_thread(fleet.wait_sessions_gone)
    figures.seconds = time.monotonic() - begun
    return figures


def size_rows(f: SizeFigures) -> list[Row]:
    group = f"scale: {f.n} hosts, loopback sshd"
    rows: list[Row] = []
    k = f"n{f.n}"
    for command in COMMANDS:
        for kind, samples in (("cold", f.cold[command]), ("warm", f.warm[command])):
            if not samples:
                continue
            failed = sum(s.total - s.ok for s in samples) + sum(1 for s in samples if not s.total)
            note = next((s.error for s in samples if s.error), "")
            rows.append(dataclasses.replace(Row.latency(
                f"{k}_{kind}_{command}", f"{kind} run_on_hosts {command}", group,
                [s.wall for s in samples], note=note[:200]), errors=failed))
            firsts = [s.first for s in samples if s.first is not None]
            if firsts:
                rows.append(Row.latency(f"{k}_{kind}_{command}_first",
                                        f"  {kind} {command}: time to the first result",
                                        group, firsts))
            rows.append(Row(f"{k}_{kind}_{command}_cpu", f"  {kind} {command}: agent CPU per host",
                            group, value=1000 * statistics.median(s.cpu for s in samples) / f.n,
                            unit="ms CPU", n=len(samples)))
        last = (f.warm[command] or f.cold[command])[-1]
        rows.append(Row(f"{k}_bytes_{command}", f"  {command} result: text (what a model reads)",
                        group, value=float(last.text_bytes), unit="bytes"))
        over = last.text_bytes + last.structured_bytes > SDK_EVENT_LIMIT
        rows.append(Row(f"{k}_structured_{command}", f"  {command} result: structuredContent",
                        group, value=float(last.structured_bytes), unit="bytes",
                        note="with the text over the SDK client's default 1 MiB SSE event "
                             "limit: a default client fails the call" if over else ""))
        rows.append(Row(f"{k}_distinct_{command}", f"  {command}: distinct outputs / copies "
                        "in the result", group, value=float(last.distinct), unit="distinct",
                        note=f"{last.copies} copies, {last.groups} groups"))
    if f.question:
        last = f.question[-1]
        rows += [
            dataclasses.replace(Row.latency(
                f"{k}_warm_question", f"warm disk_usage, filter {QUESTION}", group,
                [s.wall for s in f.question], note=last.error[:200]),
                errors=sum(s.total - s.ok for s in f.question)),
            Row(f"{k}_question_cpu", "  filtered: agent CPU per host (parse and filter)",
                group, value=1000 * statistics.median(s.cpu for s in f.question) / f.n,
                unit="ms CPU", n=len(f.question)),
            Row(f"{k}_bytes_question", "  'disk over 90 % full?': result text (what a model "
                "reads)", group, value=float(last.text_bytes), unit="bytes",
                note=f"{last.listed} hosts listed of {last.total}, {last.groups} groups"),
        ]
    for key, label, floors in (("floor_exec", "floor: N connections + hostname, SSH layer",
                                f.floor_exec),
                               ("floor_connect", "floor: N connections alone, SSH layer",
                                f.floor_connect)):
        if floors:
            rows.append(Row.latency(f"{k}_{key}", label, group, [fl.seconds for fl in floors]))
            rows.append(Row(f"{k}_{key}_cpu", "  floor: client CPU per host", group,
                            value=1000 * statistics.median(fl.cpu for fl in floors) / f.n,
                            unit="ms CPU", n=len(floors)))
    warm_floor = [s.warm for s in f.floor_exec if s.warm is not None]
    if warm_floor:
        rows.append(Row.latency(f"{k}_floor_warm", "floor, warm: hostname again on the N open "
                                "connections (an exec channel each)", group, warm_floor))
    if f.reconnect is not None:
        rows += reconnect_rows(k, group, f.n, f.reconnect)
    per_host = (f.rss_connected - f.rss_idle) * 1024 / f.n
    rows += [
        Row(f"{k}_rss_idle", "agent RSS before the first fan-out", group, value=f.rss_idle,
            unit="MiB"),
        Row(f"{k}_rss_connected", f"agent RSS with {f.connected} hosts connected", group,
            value=f.rss_connected, unit="MiB"),
        Row(f"{k}_rss_per_host", "  RSS per connected host", group, value=per_host,
            unit="KiB"),
        Row(f"{k}_rss_after_warm", "agent RSS after the warm fan-outs", group,
            value=f.rss_after_warm, unit="MiB"),
        Row(f"{k}_load1", "load average (1 min) when this size began", group, value=f.load1,
            unit="load"),
        Row(f"{k}_seconds", "time this size took", group, value=f.seconds, unit="s"),
    ]
    return rows


# -- the run ----------------------------------------------------------------------------


async def main_async(plan: Plan, report: Report, work: Path) -> None:
    begun = time.monotonic()

    def step(name: str) -> None:
        print(f"bench-scale: {name} ({time.monotonic() - begun:.0f} s, load "
              f"{os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)

    if plan.sizes:
        fleet = LoopbackFleet(max(plan.sizes), servers=plan.sshd_servers)
        try:
            fleet.start()
            report.machine["sshd"] = (f"{plan.sshd_servers} processes on 0.0.0.0, "
                                      f"MaxStartups {fleet.max_startups}, MaxSessions 10")
            for n in plan.sizes:
                figures = await measure_size(n, fleet, plan, work, step)
                report.rows += size_rows(figures)
        finally:
            fleet.cleanup()
    if plan.tailnet:
        step("the test tailnet")
        try:
            from tests.bench.scale_tailnet import measure_tailnet

            await measure_tailnet(report, plan, work, step)
        except BaseException as exc:  # a missing Go build or root must not sink the rest
            if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
                raise
            traceback.print_exc()
            report.rows.append(Row.missing("tailnet", "fan-out over tailnet nodes",
                                           "scale: the test tailnet", f"{exc}"[:300]))
    report.machine["total_seconds"] = round(time.monotonic() - begun)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="host counts, comma-separated (empty: only the tailnet)")
    parser.add_argument("--cold-rounds", type=int, default=3)
    parser.add_argument("--warm-rounds", type=int, default=10)
    parser.add_argument("--fanout-concurrency", type=int, default=64,
                        help="TAILNET_AGENT_FANOUT_CONCURRENCY, and the floor's concurrency")
    parser.add_argument("--sshd-servers", type=int, default=4)
    parser.add_argument("--no-tailnet", action="store_true")
    parser.add_argument("--tailnet-nodes", type=int, default=20,
                        help="tailnet nodes at the first checkpoint")
    parser.add_argument("--tailnet-max", type=int, default=200,
                        help="add nodes up to this many, unless the machine gives out first")
    parser.add_argument("--tailnet-step", type=int, default=40)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: N = 10 and 100, 1 cold and 3 warm rounds, "
                             "20 tailnet nodes")
    parser.add_argument("--compare", type=Path, metavar="OLD.json")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    plan = Plan(sizes=(10, 100) if args.quick else sizes,
                cold_rounds=1 if args.quick else args.cold_rounds,
                warm_rounds=3 if args.quick else args.warm_rounds,
                fanout_concurrency=args.fanout_concurrency, sshd_servers=args.sshd_servers,
                tailnet=not args.no_tailnet, tailnet_nodes=args.tailnet_nodes,
                tailnet_max=args.tailnet_nodes if args.quick else args.tailnet_max,
                tailnet_step=args.tailnet_step)
    nofile = raise_nofile()
    report = Report(
        started=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                 "load1_at_start": round(os.getloadavg()[0], 2),
                 "RLIMIT_NOFILE": nofile[0], **agent_settings(plan),
                 "cold_rounds": plan.cold_rounds, "warm_rounds": plan.warm_rounds},
    )
    work = Path(tempfile.mkdtemp(prefix="tnagent-scale-work-"))
    quiet_logging(work / "in-process.log")  # the tailnet rows' agent runs in this process
    try:
        asyncio.run(main_async(plan, report, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        report.machine["load1_at_end"] = round(os.getloadavg()[0], 2)
        report.targets = targets(report)
        old = Report.from_json(json.loads(args.compare.read_text())) if args.compare else None
        text = curve(report, LOOPBACK_TITLE, "N", "n", plan.sizes, LOOPBACK)
        checkpoints = report.machine.get("tailnet_checkpoints")
        if checkpoints:
            text += "\n" + curve(report, TAILNET_TITLE, "nodes", "t", checkpoints, TAILNET)
            text += f"tailnet: {report.machine.get('tailnet_stop')}\n"
        text += "\n" + render(report, old)
        print(text)
        stamp = "scale-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        json_path, txt_path = save(report, args.out, stamp, text)
        png = plot(report, plan.sizes, args.out / f"{stamp}.png")
        print(f"written: {json_path} and {txt_path}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
