"""Many concurrent MCP clients in one process, hammering one tool; prints one JSON line.

    python -m tests.bench.bench_load URL TOOL ARGS_JSON --clients 32 --calls 3000

Each client is its own MCP session (its own HTTP connection pool), started and
warmed before the clock starts; then the clients share a budget of calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

from mcp import Client

from tests.bench.bench_stats import percentile


async def _load(url: str, tool: str, arguments: dict[str, Any], clients: int,
                calls: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    left = calls
    go = asyncio.Event()
    ready = 0

    async def worker() -> None:
        nonlocal left, ready
        async with Client(url) as client:
            for _ in range(2):
                await client.call_tool(tool, arguments)
            ready += 1
            await go.wait()
            while left > 0:
                left -= 1
                started = time.perf_counter()
                try:
                    result = await client.call_tool(tool, arguments)
                    if result.is_error:
                        errors.append(str(result.content)[:200])
                except Exception as exc:
                    errors.append(repr(exc)[:200])
                latencies.append(time.perf_counter() - started)

    tasks = [asyncio.create_task(worker()) for _ in range(clients)]
    while ready < clients:
        if any(t.done() for t in tasks):
            for t in tasks:
                if t.done():
                    t.result()
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    ms = [s * 1000 for s in latencies]
    return {
        "calls": len(latencies),
        "seconds": elapsed,
        "calls_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(ms),
        "p99_ms": percentile(ms, 0.99),
        "errors": len(errors),
        "first_errors": errors[:3],
        "latencies_ms": [round(x, 3) for x in ms],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("tool")
    parser.add_argument("arguments", help="JSON object")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    out = asyncio.run(_load(args.url, args.tool, json.loads(args.arguments), args.clients,
                            args.calls))
    print(json.dumps(out), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
