"""The benchmark: our figures next to floors and other ways, all measured in this run.

    python -m tests.bench.run [--compare bench-results/OLD.json] [--no-tailnet] [--no-fleet]
                              [--only-fleet] [--quick]

Uses the same real sshd as the tests and, where needed, the test tailnet
(headscale + tailscaled on loopback). Prints one table of medians, p99 and
ratios, marks each target met / not met, and writes bench-results/<stamp>.json
and .txt so two runs can be compared.

Figures that a target compares are sampled interleaved (tests/bench/calls.py), so
that load from other processes on a shared machine falls on all of them alike
instead of skewing one ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client

from agent.access.identity import local_user_identity
from agent.app import build_service
from agent.mcp.tools import OVERVIEW_COMMANDS, build_mcp_server
from agent.settings import load_settings
from agent.ssh import SSHPool, socks_connector
from tests.bench import bench_ssh
from tests.bench.bench_audit import audit_rows
from tests.bench.bench_fleet import fleet_targets
from tests.bench.bench_http import BURST, http_calls, http_rows, http_targets
from tests.bench.bench_parsing import parsing_rows
from tests.bench.bench_recording import recording_rows
from tests.bench.bench_redact import redaction_rows
from tests.bench.bench_servers import (
    ServerProcess,
    agent_env,
    cpu_seconds,
    descendants,
    machine_busy_seconds,
    rss_mib,
    start_agent,
    start_floor,
    tree_cpu_seconds,
)
from tests.bench.bench_stats import Report, Row, Target, percentile, render, save
from tests.bench.calls import HOSTNAME, Call, interleaved, tool
from tests.support.sshd import Sshd
from whitelist import wrap_for_exec

RESULTS = Path("bench-results")
CLIENTS = 32
MEMORY_CALLS = 10_000
THROUGHPUT = "throughput, 32 concurrent MCP clients in another process"
WARM = "ours: warm tool call (hostname)"
SSH_ALONE = "ours: the SSH layer alone (hostname)"
STARTUP = "ours: start-up and memory"
OVERVIEW = "ours: system_overview"

@dataclasses.dataclass(frozen=True)
class Plan:
    rounds: int  # interleaved rounds for the latency rows
    slow_n: int  # samples for the slow baselines (new connection, OpenSSH)
    load_calls: int  # calls per throughput chunk for the trivial tool
    tailnet: bool
    fleet: bool = True  # the fleet rows (tests/bench/bench_fleet.py): root, namespaces


def pool_call(pool: SSHPool, host: str) -> Call:
    return lambda: pool.run(host, "hostname", command_name="hostname", timeout=10,
                            max_output=65536)


# -- throughput ----------------------------------------------------------------


def load(url: str, tool_name: str, arguments: dict[str, Any], calls: int, server_pid: int,
         sshd: Sshd | None = None) -> dict[str, Any]:
    """Run the load generator; add the CPU seconds each party spent to its answer."""
    sshd_root = sshd_pid(sshd) if sshd is not None else None
    before = cpu_snapshot(server_pid, sshd_root)
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_load", url, tool_name, json.dumps(arguments),
         "--clients", str(CLIENTS), "--calls", str(calls)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    after = cpu_snapshot(server_pid, sshd_root)
    out["cpu_s"] = {part: after[part] - before[part] for part in after}
    return out


def cpu_snapshot(server_pid: int, sshd_root: int | None) -> dict[str, float]:
    times = os.times()
    snapshot = {
        "server process": cpu_seconds(server_pid),
        "load generator": times.children_user + times.children_system,
        "whole machine": machine_busy_seconds(),
    }
    if sshd_root:
        snapshot["sshd and the commands"] = tree_cpu_seconds(sshd_root)
    return snapshot


def merged(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [x for c in chunks for x in c["latencies_ms"]]
    calls = sum(c["calls"] for c in chunks)
    return {
        "calls": calls,
        "calls_per_s": calls / sum(c["seconds"] for c in chunks),
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 0.99),
        "errors": sum(c["errors"] for c in chunks),
        "first_errors": [e for c in chunks for e in c["first_errors"]][:3],
        "cpu_ms": {part: 1000 * sum(c["cpu_s"][part] for c in chunks) / max(1, calls)
                   for part in chunks[0]["cpu_s"]},
    }


def sshd_pid(sshd: Sshd) -> int | None:
    proc = getattr(sshd, "_proc", None)  # the fixture keeps its Popen private
    return None if proc is None else int(proc.pid)


def throughput_rows(key: str, label: str, out: dict[str, Any]) -> list[Row]:
    note = "; ".join(out["first_errors"]) if out["errors"] else ""
    rows = [Row(key, label, THROUGHPUT, p50_ms=out["p50_ms"], p99_ms=out["p99_ms"],
                n=out["calls"], value=out["calls_per_s"], unit="calls/s",
                errors=out["errors"], note=note)]
    rows += [Row(f"{key}_cpu_{part.replace(' ', '_')}", f"  CPU per call: {part}", THROUGHPUT,
                 value=ms, unit="ms CPU") for part, ms in out["cpu_ms"].items()]
    return rows


# -- the steps -------------------------------------------------------------------


@dataclasses.dataclass
class Running:
    floor: ServerProcess
    floor_url: str
    agent: ServerProcess
    agent_url: str
    agent_client: Client
    calls: int = 0  # tool calls the agent process has served so far


async def latency(report: Report, stack: contextlib.AsyncExitStack, sshd: Sshd, run: Running,
                  plan: Plan) -> None:
    host = sshd.host_config("bench")
    settings = load_settings({}, env_file=None)
    settings = dataclasses.replace(settings, hosts={"bench": host}, default_host="bench")
    calls: dict[str, Call] = {}
    floor_client = await stack.enter_async_context(Client(run.floor_url))
    calls["trivial_tool"] = tool(floor_client, "echo", {"text": "hi"})
    calls["raw_exec"] = await bench_ssh.raw_exec(stack, sshd)
    calls["raw_shell"] = await bench_ssh.raw_shell(stack, sshd, "hostname")
    calls["raw_shell_wrapped"] = await bench_ssh.raw_shell(
        stack, sshd, wrap_for_exec("hostname", timeout=10))
    for fast in (True, False):
        service = build_service(settings, mode="local")
        service.pool.fast_path = fast
        stack.push_async_callback(service.pool.close)
        client = await stack.enter_async_context(Client(build_mcp_server(
            service, stdio_caller=local_user_identity())))
        calls["in_process" if fast else "in_process_exec"] = tool(client, *HOSTNAME)
    calls["loopback"] = tool(run.agent_client, *HOSTNAME)
    for fast in (True, False):
        pool = SSHPool({"bench": host}, fast_path=fast)
        stack.push_async_callback(pool.close)
        calls["pool_fast" if fast else "pool_exec"] = pool_call(pool, "bench")
    samples = await interleaved(calls, plan.rounds)
    run.calls += plan.rounds + 5
    labels = {
        "trivial_tool": ("floors", "trivial SDK tool (echo), HTTP loopback", ""),
        "raw_exec": ("floors", "raw asyncssh exec, warm connection", ""),
        "raw_shell": ("floors", "raw persistent shell channel (hostname)", ""),
        "raw_shell_wrapped": ("floors", "raw persistent shell, wrap_for_exec(hostname)",
                              "info: + timeout and sh -c, which every call runs"),
        "in_process": (WARM, "MCP in-process, Client(mcp_server), persistent shell", ""),
        "in_process_exec": (WARM, "MCP in-process, Client(mcp_server), exec channel", ""),
        "loopback": (WARM, "MCP over HTTP on loopback (agent process)", ""),
        "pool_fast": (SSH_ALONE, "SSHPool.run alone, persistent shell", ""),
        "pool_exec": (SSH_ALONE, "SSHPool.run alone, exec channel", ""),
    }
    for key, seconds in samples.items():
        group, label, note = labels[key]
        report.rows.append(Row.latency(key, label, group, seconds, note=note))


async def http_responses(report: Report, stack: contextlib.AsyncExitStack, run: Running,
                         plan: Plan) -> None:
    http = await stack.enter_async_context(httpx2.AsyncClient(timeout=httpx2.Timeout(30.0)))
    calls = await http_calls(stack, http, lambda url, mode: Client(url, mode=mode),
                             floor_base=base_url(run.floor_url),
                             agent_base=base_url(run.agent_url), suffix="")
    rounds = max(20, plan.rounds // 4)
    report.rows += http_rows(await interleaved(calls, rounds, burst=BURST), "")
    run.calls += 2 * (rounds * BURST + 5)


def base_url(mcp_url: str) -> str:
    return mcp_url.removesuffix("/mcp")


async def overview(report: Report, run: Running, plan: Plan) -> None:
    calls = {f"member_{name}": tool(run.agent_client, "execute_command", {"command": name})
             for name in OVERVIEW_COMMANDS}
    calls["overview"] = tool(run.agent_client, "system_overview", {})
    rounds = max(20, plan.rounds // 4)
    samples = await interleaved(calls, rounds)
    run.calls += (rounds + 5) * len(calls)
    rows = [Row.latency(key, f"member alone: {key[7:]}" if key != "overview" else
                        "system_overview (6 commands at once)", OVERVIEW, seconds)
            for key, seconds in samples.items()]
    report.rows += rows
    slowest = max(rows[:-1], key=lambda r: r.p50_ms or 0.0)
    report.rows.append(dataclasses.replace(
        slowest, key="slowest_member", label=f"slowest member ({slowest.key[7:]})"))


async def others(report: Report, sshd: Sshd, plan: Plan) -> None:
    group = "what others do (hostname)"
    report.rows.append(Row.latency(
        "new_connection", "new SSH connection per command (asyncssh)", group,
        await bench_ssh.new_connection_per_command(sshd, plan.slow_n)))
    if shutil.which("ssh") is None:
        report.rows.append(Row.missing("openssh_client", "OpenSSH client per call", group,
                                       "no `ssh` client (apt-get install openssh-client)"))
        return
    report.rows.append(Row.latency(
        "openssh_client", "OpenSSH client per call (ssh ... hostname)", group,
        await asyncio.to_thread(bench_ssh.openssh_per_call, sshd, plan.slow_n)))


async def throughput(report: Report, sshd: Sshd, run: Running, plan: Plan) -> None:
    """Alternate trivial-tool and agent chunks so drifting load hits both alike."""
    trivial, ours = [], []
    ours_total = max(2000, MEMORY_CALLS - run.calls - 2 * 2 * CLIENTS)
    for half in (ours_total // 2, ours_total - ours_total // 2):
        trivial.append(await asyncio.to_thread(
            load, run.floor_url, "echo", {"text": "hi"}, plan.load_calls, run.floor.proc.pid))
        ours.append(await asyncio.to_thread(
            load, run.agent_url, *HOSTNAME, half, run.agent.proc.pid, sshd))
        run.calls += half + 2 * CLIENTS
    report.rows += throughput_rows("trivial_load", "trivial SDK tool (echo)", merged(trivial))
    report.rows += throughput_rows("ours_load", "ours: execute_command hostname", merged(ours))


async def through_tailnet(report: Report, sshd: Sshd, run: Running, plan: Plan,
                          work: Path) -> None:
    try:
        from tests.bench.bench_tailnet import tailnet_topology

        async with tailnet_topology(sshd, work) as topo, contextlib.AsyncExitStack() as stack:
            report.rows.append(Row("startup_tailnet", "start-up to ready (serve, joins tailnet)",
                                   STARTUP, value=topo.startup, unit="s"))
            floor, _, floor_port = start_floor(any_host=True)
            stack.callback(floor.stop)
            server_ip = topo.server_ip.rsplit(":", 1)[0]
            agent = await stack.enter_async_context(topo.client())
            trivial = await stack.enter_async_context(
                topo.client(f"http://{server_ip}:{floor_port}/mcp"))
            host = dataclasses.replace(sshd.host_config("bench-tailnet"), address=server_ip,
                                       known_hosts=topo.known_hosts)
            calls: dict[str, Call] = {
                "tailnet": tool(agent, *HOSTNAME),
                "loopback_again": tool(run.agent_client, *HOSTNAME),
                "trivial_tailnet": tool(trivial, "echo", {"text": "hi"}),
            }
            for fast in (True, False):
                pool = SSHPool({host.name: host}, fast_path=fast,
                               connector=socks_connector(lambda: topo.client_node.socks5))
                stack.push_async_callback(pool.close)
                calls["tailnet_pool_fast" if fast else "tailnet_pool_exec"] = pool_call(
                    pool, host.name)
            calls["whois"] = lambda: topo.client_node.localapi.whois(topo.server_ip)
            samples = await interleaved(calls, max(50, plan.rounds // 2))
            run.calls += len(samples["loopback_again"]) + 5
            http = await stack.enter_async_context(topo.http())
            http_samples = await interleaved(await http_calls(
                stack, http, lambda url, mode: topo.client(url, mode=mode),
                floor_base=f"http://{server_ip}:{floor_port}", agent_base=base_url(topo.url),
                suffix="_tailnet"), max(20, plan.rounds // 4), burst=BURST)
    except Exception as exc:  # a missing Go toolchain must not sink the other figures
        traceback.print_exc()
        report.rows.append(Row.missing("tailnet", "MCP through the tailnet", WARM,
                                       describe(exc)[:300]))
        return
    labels = {
        "tailnet": (WARM, "MCP through the tailnet (SOCKS5 + DERP, SSH via tailnet)", ""),
        "loopback_again": (WARM, "MCP over HTTP on loopback, sampled with the tailnet row", ""),
        "trivial_tailnet": ("floors", "trivial SDK tool through the tailnet (SOCKS5 + DERP)", ""),
        "tailnet_pool_fast": (SSH_ALONE, "SSHPool.run through the tailnet, persistent shell",
                              ""),
        "tailnet_pool_exec": (SSH_ALONE, "SSHPool.run through the tailnet, exec channel", ""),
        "whois": (WARM, "LocalAPI whois round trip (asked once per HTTP request)", "info"),
    }
    for key, seconds in samples.items():
        group, label, note = labels[key]
        report.rows.append(Row.latency(key, label, group, seconds, note=note))
    report.rows += http_rows(http_samples, "_tailnet")


async def fleet(report: Report, plan: Plan, work: Path) -> None:
    try:
        from tests.bench.bench_fleet import measure_fleet

        await measure_fleet(report, max(15, plan.rounds // 4), work)
    except BaseException as exc:  # a missing namespace or root must not sink the rest
        if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
            raise
        traceback.print_exc()
        report.rows.append(Row.missing("fleet_fanout", "fan-out to 8 tailnet hosts",
                                       "fleet", describe(exc)[:300]))


def leftovers(sshd: Sshd) -> Row:
    """Processes sshd still runs once every client and agent has closed (want: none)."""
    root = sshd_pid(sshd)
    left: list[int] = []
    deadline = time.monotonic() + 5
    while root and time.monotonic() < deadline:
        left = descendants(root)
        if not left:
            break
        time.sleep(0.1)
    return Row("leftover_processes", "processes left under sshd after everything closed",
               STARTUP, value=float(len(left)), unit="procs")


def describe(exc: BaseException) -> str:
    """The innermost errors of an exception group (the SDK wraps everything in them)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def targets(report: Report) -> list[Target]:
    def p50(key: str) -> float | None:
        row = report.row(key)
        return None if row is None else row.p50_ms

    def value(key: str) -> float | None:
        row = report.row(key)
        return None if row is None else row.value

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    loop, trivial, shell = p50("loopback"), p50("trivial_tool"), p50("raw_shell")
    floor = None if trivial is None or shell is None else trivial + shell
    wrapped = p50("raw_shell_wrapped")
    wrapped_floor = None if trivial is None or wrapped is None else trivial + wrapped
    ours_load = report.row("ours_load")
    return [
        Target("loopback_vs_floor",
               "warm call on loopback / (trivial tool + raw shell) p50", ratio(loop, floor), 1.3,
               detail=f"{_r(loop)} ms vs {_r(floor)} ms; with the wrapped command as the shell "
                      f"floor: {_r(ratio(loop, wrapped_floor))}"),
        Target("vs_new_connection", "new connection per command / warm call p50",
               ratio(p50("new_connection"), loop), 10.0, sense="ge"),
        Target("overview", "system_overview / slowest member p50",
               ratio(p50("overview"), p50("slowest_member")), 1.5),
        Target("throughput", "throughput, 32 clients: ours / trivial tool",
               ratio(value("ours_load"), value("trivial_load")), 0.8, sense="ge",
               detail=f"machine CPU per call: ours {_r(value('ours_load_cpu_whole_machine'))} ms, "
                      f"trivial {_r(value('trivial_load_cpu_whole_machine'))} ms"),
        Target("throughput_p99", "throughput, 32 clients: our p99 ms (zero errors required)",
               None if ours_load is None else
               (ours_load.p99_ms if not ours_load.errors else float("inf")), 100.0,
               detail="" if ours_load is None else f"errors: {ours_load.errors}"),
        Target("memory", "resident memory after 10,000 / after 100 calls",
               ratio(value("rss_10k"), value("rss_100")), 1.2),
        Target("redaction", "redaction at ingest: MiB/s of CPU time (mixed output)",
               value("redact_ingest"), 50.0, sense="ge"),
        Target("tailnet", "warm call through the tailnet / on loopback p50 (interleaved)",
               ratio(p50("tailnet"), p50("loopback_again")), 2.0),
        *http_targets(report),
        *fleet_targets(report),
    ]


def _r(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def quiet_logging(path: Path) -> None:
    """Log in-process like `tailnet-agent serve` does (warnings, plus one line per call).

    Configured before the SDK's MCPServer, whose own basicConfig would otherwise
    turn on INFO for everything (asyncssh logs every channel at INFO).
    """
    logging.basicConfig(level=logging.WARNING, filename=path, format="%(asctime)s %(message)s")
    logging.getLogger("tailnet_agent.calls").setLevel(logging.INFO)


async def measure(report: Report, sshd: Sshd, plan: Plan, work: Path) -> None:
    def step(name: str) -> None:
        print(f"bench: {name} ({time.monotonic() - begun:.0f} s)", file=sys.stderr, flush=True)

    begun = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        step("starting the floor server and the agent")
        floor, floor_url, _ = start_floor()
        stack.callback(floor.stop)
        agent, agent_url, startup = start_agent(agent_env(sshd, work), "--local")
        stack.callback(agent.stop)
        report.rows.append(Row("startup_local", "start-up to ready (serve --local)", STARTUP,
                               value=startup, unit="s"))
        agent_client = await stack.enter_async_context(Client(agent_url))
        run = Running(floor, floor_url, agent, agent_url, agent_client)
        for _ in range(100):
            await tool(agent_client, *HOSTNAME)()
        run.calls += 100
        rss_100 = rss_mib(agent.proc.pid)
        step("latency, interleaved")
        await latency(report, stack, sshd, run, plan)
        step("HTTP responses back to back: GET, both MCP protocol versions")
        await http_responses(report, stack, run, plan)
        step("system_overview")
        await overview(report, run, plan)
        step("new connection per command, OpenSSH client")
        await others(report, sshd, plan)
        step("throughput")
        await throughput(report, sshd, run, plan)
        rss_10k = rss_mib(agent.proc.pid)
        report.rows.append(Row("rss_100", "agent resident memory after 100 calls", STARTUP,
                               value=rss_100, unit="MiB", n=100))
        report.rows.append(Row("rss_10k", f"agent resident memory after {run.calls} calls",
                               STARTUP, value=rss_10k, unit="MiB", n=run.calls))
        if plan.tailnet:
            step("through the tailnet")
            await through_tailnet(report, sshd, run, plan, work)
        if plan.fleet:
            step("the fleet: 8 tailnet hosts in namespaces of their own")
            await fleet(report, plan, work)
        step("redaction at ingest, 50 MiB")
        report.rows += redaction_rows()
        step("the audit log: chain, verify, shipping to rsyslog")
        report.rows += await asyncio.to_thread(audit_rows)
        step("recordings: a minute of steady output")
        report.rows += await recording_rows(sshd, work)
        step("output as data: parsing and filtering")
        report.rows += parsing_rows()
        step("done")


async def main_async(args: argparse.Namespace) -> Report:
    plan = (Plan(rounds=60, slow_n=8, load_calls=500, tailnet=not args.no_tailnet,
                 fleet=not args.no_fleet)
            if args.quick else
            Plan(rounds=300, slow_n=25, load_calls=2000, tailnet=not args.no_tailnet,
                 fleet=not args.no_fleet))
    report = Report(
        started=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                 "load1_at_start": round(os.getloadavg()[0], 2)},
    )
    sshd = Sshd()
    sshd.start()
    work = Path(tempfile.mkdtemp(prefix="tnagent-bench-"))
    quiet_logging(work / "in-process.log")
    try:
        if args.only_fleet:
            await fleet(report, plan, work)
        else:
            await measure(report, sshd, plan, work)
            report.rows.append(leftovers(sshd))
    finally:
        sshd.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    report.machine["load1_at_end"] = round(os.getloadavg()[0], 2)
    report.targets = targets(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", type=Path, metavar="OLD.json",
                        help="print each figure next to the same one from an earlier run")
    parser.add_argument("--no-tailnet", action="store_true",
                        help="skip the tailnet rows (they need headscale/tailscaled built with Go)")
    parser.add_argument("--no-fleet", action="store_true",
                        help="skip the fleet rows (they need root for network namespaces)")
    parser.add_argument("--only-fleet", action="store_true",
                        help="measure only the fleet rows")
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args(argv)
    old = None
    if args.compare is not None:
        old = Report.from_json(json.loads(args.compare.read_text()))
    report = asyncio.run(main_async(args))
    text = render(report, old)
    print(text)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path, txt_path = save(report, args.out, stamp, text)
    print(f"written: {json_path} and {txt_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
