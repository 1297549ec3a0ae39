"""The soak: many clients, thousands of calls, and faults, against the agent as it runs.

    python -m tests.soak.run [--calls 5000] [--clients 16] [--mode loopback|tailnet|both]

`make soak` runs it in a loopback-only network namespace, like the tests. The agent is
`tailnet-agent serve` in its own process: on loopback (`--local`) and on the test
tailnet (headscale, a server node in front of the real sshd, a client node the MCP
clients dial through). 16 MCP clients share the calls: read-only commands (the fast
path), commands that sleep on an exec channel, destructive ones (confirmed through
elicitation), and some the client abandons part-way (cancel). Meanwhile sshd is
restarted 3 times and, on the tailnet, the agent's tailscaled is killed twice.

The report: calls ok / failed with a clear error / failed otherwise (must be 0),
the audit log (exactly one start and one end per call), remote processes left (0),
and the agent's resident memory at the start and at the end. It is written to
bench-results/soak-<stamp>.txt and .json; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.types import ElicitResult

from agent.audit.reader import read_records
from tests.bench.bench_servers import ServerProcess, agent_env, rss_mib, start_agent
from tests.bench.bench_tailnet import tailnet_topology
from tests.soak.faults import Faults, Tally, classify, remote_left
from tests.support.sshd import Sshd

RESULTS = Path("bench-results")
MARK = f"{random.randint(10000, 99999)}"
CATALOG = f"""
commands:
  soak_nap:
    description: Sleep a moment, then answer (soak).
    category: Soak
    template: "sleep 0.2{MARK} && echo napped"
    timeout: 10
  soak_long_nap:
    description: Sleep a moment on an exec channel (its timeout is past the fast path's).
    category: Soak
    template: "sleep 0.3{MARK} && echo napped"
    timeout: 90
  soak_touch:
    description: Change something (soak; destructive, confirmed).
    category: Soak
    template: "touch -- {{path}} && echo touched"
    destructive: true
    parameters:
      path:
        type: path
        description: the file
        roots: ["/tmp"]
"""
POLICY = """
rules:
  - name: soak-clients
    who: ["*"]
    destructive: true
"""
# (weight, tool, arguments, what stdout holds when it ran), "cancel" = abandoned at 0.1 s.
MIX: list[tuple[int, str, str, dict[str, Any], str]] = [
    (40, "call", "execute_command", {"command": "hostname"}, ""),
    (15, "call", "check_memory", {}, "Mem:"),
    (10, "call", "check_disk", {}, "Filesystem"),
    (15, "call", "execute_command", {"command": "soak_nap"}, "napped"),
    (6, "call", "execute_command", {"command": "soak_long_nap"}, "napped"),
    (7, "call", "execute_command", {"command": "soak_touch", "parameters": {"path": "{touch}"}},
     "touched"),
    (7, "cancel", "execute_command", {"command": "soak_nap"}, "napped"),
]


async def accept(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="accept", content={"confirm": True})


ClientFactory = Callable[[], contextlib.AbstractAsyncContextManager[Client]]


class Soak:
    def __init__(self, total: int, clients: int, faults: Faults, touch: Path,
                 tailnet: bool) -> None:
        self.total, self.clients, self.faults = total, clients, faults
        self.touch, self.tailnet = touch, tailnet
        self.tally = Tally()
        self.issued = 0
        self._fault_lock = asyncio.Lock()
        self.latencies: list[float] = []

    def pick(self, rng: random.Random) -> tuple[str, str, dict[str, Any], str]:
        kind, tool, args, expect = rng.choices([m[1:] for m in MIX],
                                               weights=[m[0] for m in MIX])[0]
        args = json.loads(json.dumps(args).replace("{touch}", str(self.touch)))
        return kind, tool, args, expect

    async def client(self, number: int, make: ClientFactory) -> None:
        rng = random.Random(number)
        while self.issued < self.total:
            entered = calling = False
            try:
                async with make() as session:
                    entered = True
                    while self.issued < self.total:
                        self.issued += 1
                        async with self._fault_lock:
                            await self.faults.maybe(self.issued)
                        calling = True
                        ok = await self.one(session, *self.pick(rng))
                        calling = False
                        if not ok:
                            break  # the transport broke: a new client session
            except Exception as exc:
                # The client library's own tasks failed (the agent unreachable): the call
                # in progress, or the one that could not connect, is lost; retry.
                if calling or not entered:
                    self.issued += 0 if calling else 1
                    self.unreachable(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.5)
                # else: closing a broken session failed, which costs no call

    async def one(self, session: Client, kind: str, tool: str, args: dict[str, Any],
                  expect: str) -> bool:
        started = time.monotonic()
        try:
            if kind == "cancel":
                with anyio.move_on_after(0.1) as scope:
                    result = await session.call_tool(tool, args)
                if scope.cancelled_caught:
                    self.tally.cancelled += 1
                    return True
            else:
                result = await asyncio.wait_for(session.call_tool(tool, args), 60)
        except TimeoutError:
            self.tally.add_other(f"{tool}: no answer within 60 s")
            return False
        except Exception as exc:
            self.unreachable(f"{type(exc).__name__}: {exc}")
            return False
        self.latencies.append(time.monotonic() - started)
        classify(self.tally, tool, result, expect)
        return True

    def unreachable(self, why: str) -> None:
        # On the tailnet, killing the agent's tailscaled cuts clients off for a while:
        # their library says so. On loopback nothing should ever cut them off.
        if self.tailnet:
            self.tally.add_clear(f"agent unreachable (its tailscaled was killed): {why}")
        else:
            self.tally.add_other(f"transport: {why}")

    async def run(self, make: ClientFactory) -> float:
        started = time.monotonic()
        await asyncio.gather(*(self.client(n, make) for n in range(self.clients)))
        return time.monotonic() - started


def audit_summary(path: Path) -> dict[str, Any]:
    events: Counter[tuple[str, str]] = Counter()
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []  # errors of calls that ended for no known reason
    for record in read_records(path):
        if "call" in record:
            events[(str(record["call"]), str(record.get("event")))] += 1
            if record.get("event") == "end":
                outcomes[str(record.get("outcome"))] += 1
                if record.get("outcome") == "not-run" and len(unexpected) < 5:
                    unexpected.append(str(record.get("error"))[:300])
    calls = {call for call, _ in events}
    exact = sum(1 for c in calls if events[(c, "start")] == 1 and events[(c, "end")] == 1)
    return {"calls": len(calls), "exactly_one_start_and_end": exact,
            "unfinished": sum(1 for c in calls if events[(c, "end")] == 0),
            "outcomes": dict(outcomes), "unexpected_errors": unexpected}


async def soak_once(mode: str, total: int, clients: int, work: Path) -> dict[str, Any]:
    sshd = Sshd()
    sshd.start()
    catalog, policy = work / "soak.yaml", work / "policy.yaml"
    catalog.write_text(CATALOG)
    policy.write_text(POLICY)
    touch_dir = Path(tempfile.mkdtemp(prefix="tnagent-soak-"))
    touch_dir.chmod(0o777)
    # All clients are one identity (one client node): the soak is about faults, not the
    # per-identity fair share, which would refuse 16 callers' ninth call in flight.
    extra = {"TAILNET_AGENT_CATALOG": str(catalog), "TAILNET_AGENT_POLICY": str(policy),
             "TAILNET_AGENT_IDENTITY_CONCURRENCY": str(2 * clients)}
    try:
        async with topology(mode, sshd, work, extra) as (agent, make):
            await warm_up(make)
            rss_start = rss_mib(agent.proc.pid)
            faults = Faults(sshd, agent.proc.pid,
                            restart_at=[total * 2 // 10, total * 5 // 10, total * 8 // 10],
                            kill_at=[total * 35 // 100, total * 65 // 100]
                            if mode == "tailnet" else [])
            soak = Soak(total, clients, faults, touch_dir / "touched", mode == "tailnet")
            seconds = await soak.run(make)
            await asyncio.sleep(2.0)  # the kill path's bound: anything left now is an orphan
            left = remote_left(sshd.user, f"sleep 0.[23]{MARK}")
            rss_end = rss_mib(agent.proc.pid)
            audit = audit_summary(work / "audit.jsonl")
            # The agent's own account of what went wrong, when something did.
            agent_errors = [line.rstrip() for line in agent.output.splitlines()
                            if "Traceback" in line or "Error" in line][:10]
            if soak.tally.other:  # kept for a look at the tracebacks
                RESULTS.mkdir(exist_ok=True)
                (RESULTS / f"soak-{mode}-agent-output.txt").write_text(agent.output)
    finally:
        sshd.cleanup()
    tally = soak.tally
    latencies = sorted(soak.latencies)
    return {
        "mode": mode, "clients": clients, "seconds": round(seconds, 1),
        "calls": tally.issued, "ok": tally.ok, "failed_clear": tally.clear,
        "failed_otherwise": tally.other, "cancelled_by_client": tally.cancelled,
        "clear_kinds": tally.clear_kinds, "others": tally.others, "faults": faults.done,
        "unreachable": sum(n for kind, n in tally.clear_kinds.items()
                           if kind.startswith("agent unreachable")),
        "audit": audit, "remote_processes_left": len(left), "left": left[:5],
        "agent_errors": agent_errors if tally.other else [],
        "rss_mib_start": round(rss_start, 1), "rss_mib_end": round(rss_end, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
    }


@contextlib.asynccontextmanager
async def topology(mode: str, sshd: Sshd, work: Path, extra: dict[str, str]
                   ) -> AsyncIterator[tuple[ServerProcess, ClientFactory]]:
    if mode == "loopback":
        env = {**agent_env(sshd, work), **extra}
        agent, url, _ = start_agent(env, "--local")
        try:
            yield agent, lambda: Client(url, elicitation_callback=accept)
        finally:
            agent.stop()
        return
    async with tailnet_topology(sshd, work, extra) as net:
        yield net.agent, lambda: net.client(elicitation_callback=accept)


WARM_UP = 20


async def warm_up(make: ClientFactory) -> None:
    async with make() as client:
        for _ in range(WARM_UP):
            await client.call_tool("execute_command", {"command": "hostname"})


def verdicts(result: dict[str, Any]) -> list[tuple[str, bool]]:
    audit = result["audit"]
    return [
        ("no call failed otherwise", result["failed_otherwise"] == 0),
        ("every audited call has exactly one start and one end",
         audit["exactly_one_start_and_end"] == audit["calls"]),
        ("no remote process left", result["remote_processes_left"] == 0),
        # A call cut off while the agent's tailscaled was down, or abandoned by its client
        # within 0.1 s, may or may not have reached the agent before; every other did.
        ("every call that reached the agent is in the audit log",
         result["calls"] + WARM_UP - result["unreachable"] - result["cancelled_by_client"]
         <= audit["calls"] <= result["calls"] + WARM_UP),
        ("memory at the end within 1.5x of the start",
         result["rss_mib_end"] <= 1.5 * result["rss_mib_start"]),
    ]


def render(result: dict[str, Any]) -> str:
    audit = result["audit"]
    lines = [
        f"soak, {result['mode']}: {result['clients']} clients, {result['calls']} calls in "
        f"{result['seconds']} s (p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms)",
        *(f"  fault: {f}" for f in result["faults"]),
        f"  calls ok:                       {result['ok']}",
        f"  failed with a clear error:      {result['failed_clear']}",
        *(f"      {n:5d}  {kind}" for kind, n in sorted(result["clear_kinds"].items(),
                                                      key=lambda kv: -kv[1])),
        f"  failed otherwise (must be 0):   {result['failed_otherwise']}",
        *(f"      {o}" for o in result["others"]),
        *(f"      audit error: {e}" for e in audit.get("unexpected_errors", [])),
        *(f"      agent: {line}" for line in result.get("agent_errors", [])),
        f"  cancelled by the client:        {result['cancelled_by_client']}",
        f"  audit ({WARM_UP} warm-up calls included): {audit['calls']} calls, "
        f"{audit['exactly_one_start_and_end']} with exactly "
        f"one start and one end, {audit['unfinished']} unfinished; outcomes "
        f"{audit['outcomes']}",
        f"  remote processes left:          {result['remote_processes_left']}",
        f"  agent RSS: {result['rss_mib_start']} MiB at the start, {result['rss_mib_end']} MiB "
        "at the end",
    ]
    lines += [f"  {'met' if ok else 'NOT MET'}: {what}" for what, ok in verdicts(result)]
    return "\n".join(lines)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.run")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--mode", choices=["loopback", "tailnet", "both"], default="both")
    args = parser.parse_args(argv)
    modes = ["loopback", "tailnet"] if args.mode == "both" else [args.mode]
    results, texts = [], []
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix=f"tnagent-soak-{mode}-") as tmp:
            result = await soak_once(mode, args.calls, args.clients, Path(tmp))
        results.append(result)
        texts.append(render(result))
        print(texts[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"soak-{stamp}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"soak-{stamp}.txt").write_text("\n\n".join(texts) + "\n")
    print(f"written to {RESULTS}/soak-{stamp}.txt", flush=True)
    return 0 if all(ok for r in results for _, ok in verdicts(r)) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
