"""What a long command looks like from an MCP client: progress cadence, lines shown live, the
agent's memory while it runs. Not part of `make bench` (it takes as long as the command):

    python -m tests.bench.long_command [--minutes 10]

The command prints one line a second for the first half, nothing for the second half (the
heartbeat cadence), then exits. The agent is served over real HTTP on loopback (as
`serve --local`), the official SDK client calls it with a progress callback, and the
agent's resident memory (this process: client and server together) is sampled each second.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from mcp import Client

from tests.support.agents import running_agent, settings_for
from tests.support.sshd import Sshd


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main(minutes: float) -> None:
    half = int(minutes * 30)
    catalog = f"""
commands:
  long_job:
    description: Print a line a second for {half} s, then stay quiet for {half} s.
    category: Test
    template: >-
      i=0; while [ $i -lt {half} ]; do echo "line $i $(date +%T)"; i=$((i+1)); sleep 1;
      done; sleep {half}
    timeout: {int(minutes * 60) + 60}
"""
    sshd = Sshd()
    sshd.start()
    work = Path(tempfile.mkdtemp(prefix="tnagent-long-"))
    (work / "long.yaml").write_text(catalog)
    settings = dataclasses.replace(settings_for(sshd.host_config()),
                                   audit_log=work / "audit.jsonl")
    events: list[tuple[float, float, str]] = []
    rss: list[float] = []
    try:
        async with running_agent(settings, catalogs=(work / "long.yaml",)) as agent, \
                Client(agent.url) as client:
            started = time.monotonic()

            async def on_progress(progress: float, total: float | None, message: str | None
                                  ) -> None:
                events.append((time.monotonic() - started, progress, message or ""))

            async def sample() -> None:
                while True:
                    rss.append(rss_mib())
                    await asyncio.sleep(1)

            sampler = asyncio.create_task(sample())
            result = await client.call_tool("execute_command", {"command": "long_job"},
                                            progress_callback=on_progress)
            took = time.monotonic() - started
            sampler.cancel()
    finally:
        sshd.cleanup()
    data = result.structured_content or {}
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(events)]
    talking = [g for (t, _, _), g in zip(events[1:], gaps, strict=False) if t <= half + 2]
    quiet = [g for (t, _, _), g in zip(events[1:], gaps, strict=False) if t > half + 3]
    live_lines = sum(1 for _, _, m in events for line in m.splitlines()
                     if line.startswith("line "))
    print(f"command: {minutes:g} min ({half} lines, then {half} s quiet); call took {took:.1f} s;"
          f" exit {data.get('exit_status')}, {data.get('stdout_bytes')} bytes of stdout")
    print(f"progress notifications: {len(events)}; first after {events[0][0]:.1f} s")
    print(f"while printing: gap median {statistics.median(talking):.2f} s, "
          f"max {max(talking):.2f} s; lines shown live {live_lines} of {half}")
    print(f"while quiet: gap median {statistics.median(quiet):.1f} s, max {max(quiet):.1f} s "
          f"(heartbeats: {events[-1][2]!r})")
    print(f"RSS of client + agent: start {rss[0]:.1f} MiB, max {max(rss):.1f} MiB, "
          f"end {rss[-1]:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    asyncio.run(main(parser.parse_args().minutes))
