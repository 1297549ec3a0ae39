"""The benchmark: our figures next to floors and other ways, all measured in this run.

    python -m tests.bench.run [--compare bench-results/OLD.json] [--no-tailnet] [--quick]

Uses the same real sshd as the tests and, where needed, the test tailnet
(headscale + tailscaled on loopback). Prints one table of medians, p99 and
ratios, marks each target met / not met, and writes bench-results/<stamp>.json
and .txt so two runs can be compared.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import Client

from agent.config import load_settings
from agent.mcp_server import OVERVIEW_COMMANDS, build_mcp_server
from agent.server import build_service
from agent.ssh import SSHPool
from agent.tailnet import socks_connector
from tests.bench import bench_ssh
from tests.bench.bench_servers import (
    agent_env,
    cpu_seconds,
    machine_busy_seconds,
    rss_mib,
    start_agent,
    start_floor,
    tree_cpu_seconds,
)
from tests.bench.bench_stats import Report, Row, Target, render, save
from tests.support.sshd import Sshd
from whitelist import wrap_for_exec

RESULTS = Path("bench-results")
CLIENTS = 32
MEMORY_CALLS = 10_000


@dataclasses.dataclass(frozen=True)
class Plan:
    n: int  # samples per latency row
    slow_n: int  # samples for the slow baselines (new connection, OpenSSH)
    load_calls: int  # calls for the trivial tool's throughput
    tailnet: bool


async def timed(call: Callable[[], Awaitable[Any]], n: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        await call()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


def checked(result: Any) -> Any:
    if result.is_error:
        raise RuntimeError(f"tool call failed: {result.content}")
    return result


def load(url: str, tool: str, arguments: dict[str, Any], calls: int, server_pid: int,
         sshd: Sshd | None = None) -> dict[str, Any]:
    """Run the load generator; add where the CPU went, per call, to its answer."""
    before_server, before_children = cpu_seconds(server_pid), _children_cpu()
    before_machine = machine_busy_seconds()
    sshd_root = sshd_pid(sshd) if sshd is not None else None
    before_sshd = tree_cpu_seconds(sshd_root) if sshd_root else 0.0
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_load", url, tool, json.dumps(arguments),
         "--clients", str(CLIENTS), "--calls", str(calls)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    per_call = 1000 / max(1, out["calls"])
    out["cpu_ms"] = {
        "server process": (cpu_seconds(server_pid) - before_server) * per_call,
        "load generator": (_children_cpu() - before_children) * per_call,
        "whole machine": (machine_busy_seconds() - before_machine) * per_call,
    }
    if sshd_root:
        out["cpu_ms"]["sshd and the commands"] = (
            tree_cpu_seconds(sshd_root) - before_sshd) * per_call
    return out


def sshd_pid(sshd: Sshd) -> int | None:
    proc = getattr(sshd, "_proc", None)  # the fixture keeps its Popen private
    return None if proc is None else int(proc.pid)


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def cpu_rows(key: str, who: str, out: dict[str, Any]) -> list[Row]:
    return [Row(f"{key}_cpu_{part.replace(' ', '_')}", f"CPU per call, {who}: {part}",
                "throughput, 32 concurrent MCP clients in another process", value=ms,
                unit="ms CPU") for part, ms in out["cpu_ms"].items()]


def throughput_row(key: str, label: str, out: dict[str, Any]) -> Row:
    note = "; ".join(out["first_errors"]) if out["errors"] else ""
    return Row(key, label, "throughput, 32 concurrent MCP clients in another process",
               p50_ms=out["p50_ms"], p99_ms=out["p99_ms"], n=out["calls"],
               value=out["calls_per_s"], unit="calls/s", errors=out["errors"], note=note)


HOSTNAME = ("execute_command", {"command": "hostname"})


async def floors(report: Report, sshd: Sshd, plan: Plan) -> dict[str, Any]:
    group = "floors"
    floor, floor_url, _ = start_floor()
    try:
        async with Client(floor_url) as client:
            seconds = await timed(lambda: checked_call(client, "echo", {"text": "hi"}), plan.n)
        report.rows.append(Row.latency("trivial_tool", "trivial SDK tool (echo), HTTP loopback",
                                       group, seconds))
        report.rows.append(Row.latency("raw_exec", "raw asyncssh exec, warm connection",
                                       group, await bench_ssh.raw_exec_warm(sshd, plan.n)))
        report.rows.append(Row.latency("raw_shell", "raw persistent shell channel (hostname)",
                                       group, await bench_ssh.raw_shell(sshd, plan.n)))
        wrapped = wrap_for_exec("hostname", timeout=10)
        report.rows.append(Row.latency(
            "raw_shell_wrapped", "raw persistent shell, wrap_for_exec(hostname) (info)", group,
            await bench_ssh.raw_shell(sshd, plan.n, wrapped),
            note="+ timeout and sh -c, which every call needs"))
        out = await asyncio.to_thread(load, floor_url, "echo", {"text": "hi"}, plan.load_calls,
                                      floor.proc.pid)
        report.rows.append(throughput_row("trivial_load", "trivial SDK tool (echo)", out))
        report.rows += cpu_rows("trivial", "trivial tool", out)
        return out
    finally:
        floor.stop()


async def checked_call(client: Client, tool: str, arguments: dict[str, Any]) -> Any:
    return checked(await client.call_tool(tool, arguments))


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


async def in_process(report: Report, sshd: Sshd, plan: Plan) -> None:
    group = "ours: warm tool call (hostname)"
    settings = load_settings({}, env_file=None)
    host = sshd.host_config("bench")
    settings = dataclasses.replace(settings, hosts={"bench": host}, default_host="bench")
    for fast in (True, False):
        service = build_service(settings, mode="local")
        service.pool.fast_path = fast
        mcp = build_mcp_server(service)
        try:
            async with Client(mcp) as client:
                seconds = await timed(lambda: checked_call(client, *HOSTNAME), plan.n)
            path = "persistent shell" if fast else "exec channel"
            report.rows.append(Row.latency(
                "in_process" if fast else "in_process_exec",
                f"MCP in-process, Client(mcp_server), {path}", group, seconds))
        finally:
            await service.pool.close()
    # The SSH layer alone, both paths: what the fast path buys below MCP.
    for fast in (True, False):
        pool = SSHPool({"bench": host}, fast_path=fast)
        try:
            seconds = await timed(lambda pool=pool: pool.run(  # type: ignore[misc]
                "bench", "hostname", command_name="hostname", timeout=10, max_output=65536),
                plan.n)
        finally:
            await pool.close()
        report.rows.append(Row.latency(
            "pool_fast" if fast else "pool_exec",
            f"SSHPool.run alone, {'persistent shell' if fast else 'exec channel'}",
            "ours: the SSH layer alone (hostname)", seconds))


async def loopback(report: Report, sshd: Sshd, plan: Plan, work: Path) -> None:
    group = "ours: warm tool call (hostname)"
    agent, url, startup = start_agent(agent_env(sshd, work), "--local")
    try:
        report.rows.append(Row("startup_local", "start-up to ready (serve --local)",
                               "ours: start-up and memory", value=startup, unit="s"))
        calls = 0
        async with Client(url) as client:
            for _ in range(100):
                checked(await client.call_tool(*HOSTNAME))
            calls += 100
            rss_100 = rss_mib(agent.proc.pid)
            seconds = await timed(lambda: checked_call(client, *HOSTNAME), plan.n)
            calls += plan.n + 5
            report.rows.append(Row.latency("loopback", "MCP over HTTP on loopback (agent process)",
                                           group, seconds))
            members = []
            for name in OVERVIEW_COMMANDS:
                member = await timed(
                    lambda name=name: checked_call(  # type: ignore[misc]
                        client, "execute_command", {"command": name}),
                    max(20, plan.n // 4))
                calls += len(member) + 5
                row = Row.latency(f"member_{name}", f"member alone: {name}",
                                  "ours: system_overview", member)
                members.append(row)
                report.rows.append(row)
            overview = await timed(lambda: checked_call(client, "system_overview", {}),
                                   max(20, plan.n // 4))
            calls += len(overview) + 5
            report.rows.append(Row.latency("overview", "system_overview (6 commands at once)",
                                           "ours: system_overview", overview))
        slowest = max(members, key=lambda r: r.p50_ms or 0.0)
        report.rows.append(dataclasses.replace(
            slowest, key="slowest_member", label=f"slowest member ({slowest.label[14:]})"))
        out = await asyncio.to_thread(load, url, *HOSTNAME, max(1000, MEMORY_CALLS - calls),
                                      agent.proc.pid, sshd)
        report.rows.append(throughput_row("ours_load", "ours: execute_command hostname", out))
        report.rows += cpu_rows("ours", "ours", out)
        calls += out["calls"] + 2 * CLIENTS
        rss_10k = rss_mib(agent.proc.pid)
        report.rows.append(Row("rss_100", "agent resident memory after 100 calls",
                               "ours: start-up and memory", value=rss_100, unit="MiB"))
        report.rows.append(Row("rss_10k", f"agent resident memory after {calls} calls",
                               "ours: start-up and memory", value=rss_10k, unit="MiB",
                               n=calls))
    finally:
        agent.stop()


async def through_tailnet(report: Report, sshd: Sshd, plan: Plan, work: Path) -> None:
    group = "ours: warm tool call (hostname)"
    from tests.bench.bench_tailnet import tailnet_topology

    try:
        async with tailnet_topology(sshd, work) as topo:
            report.rows.append(Row("startup_tailnet", "start-up to ready (serve, joins tailnet)",
                                   "ours: start-up and memory", value=topo.startup, unit="s"))
            async with topo.client() as client:
                seconds = await timed(lambda: checked_call(client, *HOSTNAME), plan.n)
            report.rows.append(Row.latency(
                "tailnet", "MCP through the tailnet (SOCKS5 + DERP, SSH via tailnet)", group,
                seconds))
            # The floor through the tailnet: the trivial tool behind the server node.
            floor, _, floor_port = start_floor(any_host=True)
            try:
                floor_url = f"http://{topo.server_ip.rsplit(':', 1)[0]}:{floor_port}/mcp"
                async with topo.client(floor_url) as client:
                    trivial = await timed(
                        lambda: checked_call(client, "echo", {"text": "hi"}), plan.n)
            finally:
                floor.stop()
            report.rows.append(Row.latency(
                "trivial_tailnet", "trivial SDK tool through the tailnet (SOCKS5 + DERP)",
                "floors", trivial))
            # The SSH leg alone through the tailnet, both paths: an exec channel costs
            # several round trips through DERP where a framed shell call costs one.
            host = dataclasses.replace(sshd.host_config("bench-tailnet"),
                                       address=topo.server_ip.rsplit(":", 1)[0],
                                       known_hosts=topo.known_hosts)
            for fast in (True, False):
                pool = SSHPool({host.name: host}, fast_path=fast,
                               connector=socks_connector(lambda: topo.client_node.socks5))
                try:
                    seconds = await timed(lambda pool=pool: pool.run(  # type: ignore[misc]
                        host.name, "hostname", command_name="hostname", timeout=10,
                        max_output=65536), max(20, plan.n // 3))
                finally:
                    await pool.close()
                report.rows.append(Row.latency(
                    "tailnet_pool_fast" if fast else "tailnet_pool_exec",
                    f"SSHPool.run through the tailnet, "
                    f"{'persistent shell' if fast else 'exec channel'}",
                    "ours: the SSH layer alone (hostname)", seconds))
            # What identifying the caller costs when it is asked for every request.
            whois = await timed(lambda: topo.client_node.localapi.whois(topo.server_ip),
                                max(20, plan.n // 3))
            report.rows.append(Row.latency(
                "whois", "LocalAPI whois round trip (the agent asks once per request)",
                "ours: warm tool call (hostname)", whois, note="info"))
    except Exception as exc:  # a missing Go toolchain must not sink the other figures
        traceback.print_exc()
        report.rows.append(Row.missing("tailnet", "MCP through the tailnet", group,
                                       describe(exc)[:300]))


def describe(exc: BaseException) -> str:
    """The innermost errors of an exception group (the SDK wraps everything in them)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def targets(report: Report) -> list[Target]:
    def p50(key: str) -> float | None:
        row = report.row(key)
        return None if row is None else row.p50_ms

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    loop, trivial, shell = p50("loopback"), p50("trivial_tool"), p50("raw_shell")
    floor = None if trivial is None or shell is None else trivial + shell
    def value(key: str) -> float | None:
        row = report.row(key)
        return None if row is None else row.value

    ours_load = report.row("ours_load")
    return [
        Target("loopback_vs_floor",
               "warm call on loopback / (trivial tool + raw shell) p50", ratio(loop, floor), 1.3,
               detail=f"{loop and round(loop, 2)} ms vs {floor and round(floor, 2)} ms"),
        Target("vs_new_connection", "new connection per command / warm call p50",
               ratio(p50("new_connection"), loop), 10.0, sense="ge"),
        Target("overview", "system_overview / slowest member p50",
               ratio(p50("overview"), p50("slowest_member")), 1.5),
        Target("throughput", "throughput, 32 clients: ours / trivial tool",
               ratio(value("ours_load"), value("trivial_load")), 0.8,
               sense="ge"),
        Target("throughput_p99", "throughput, 32 clients: our p99 ms (zero errors required)",
               None if ours_load is None else
               (ours_load.p99_ms if not ours_load.errors else float("inf")), 100.0,
               detail="" if ours_load is None else f"errors: {ours_load.errors}"),
        Target("memory", "resident memory after 10,000 / after 100 calls",
               ratio(value("rss_10k"), value("rss_100")), 1.2),
        Target("tailnet", "warm call through the tailnet / on loopback p50",
               ratio(p50("tailnet"), loop), 2.0),
    ]


def quiet_logging(path: Path) -> None:
    """Log in-process like `tailnet-agent serve` does (warnings, plus one line per call).

    Configured before the SDK's MCPServer, whose own basicConfig would otherwise
    turn on INFO for everything (asyncssh logs every channel at INFO).
    """
    logging.basicConfig(level=logging.WARNING, filename=path, format="%(asctime)s %(message)s")
    logging.getLogger("tailnet_agent.calls").setLevel(logging.INFO)


async def main_async(args: argparse.Namespace) -> Report:
    plan = (Plan(n=60, slow_n=8, load_calls=1000, tailnet=not args.no_tailnet) if args.quick
            else Plan(n=300, slow_n=25, load_calls=3000, tailnet=not args.no_tailnet))
    report = Report(
        started=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                 "load1": round(os.getloadavg()[0], 2)},
    )
    sshd = Sshd()
    sshd.start()
    work = Path(tempfile.mkdtemp(prefix="tnagent-bench-"))
    quiet_logging(work / "in-process.log")
    try:
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("floors", lambda: floors(report, sshd, plan)),
            ("other ways", lambda: others(report, sshd, plan)),
            ("in-process", lambda: in_process(report, sshd, plan)),
            ("loopback agent", lambda: loopback(report, sshd, plan, work)),
        ]
        if plan.tailnet:
            steps.append(("tailnet", lambda: through_tailnet(report, sshd, plan, work)))
        for name, step in steps:
            started = time.monotonic()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            await step()
            print(f"bench: {name} done in {time.monotonic() - started:.0f} s",
                  file=sys.stderr, flush=True)
    finally:
        sshd.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    report.targets = targets(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", type=Path, metavar="OLD.json",
                        help="print each figure next to the same one from an earlier run")
    parser.add_argument("--no-tailnet", action="store_true",
                        help="skip the tailnet row (needs headscale/tailscaled built with Go)")
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
