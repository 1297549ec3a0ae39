"""HTTP responses back to back: a plain GET, and a warm call on each MCP protocol version.

Why back to back. uvicorn writes a response's head and body as two segments. A server
socket with Nagle's algorithm on holds the second until the client acknowledges the
first, and a Linux client in request/response rhythm (its next request sent within the
delayed-ACK timeout of the last response, so "pingpong" mode) delays that
acknowledgement by 40 ms. So the stall of issue 19 (about 45 ms on every response, our
listening socket built without TCP_NODELAY) shows only when a connection's requests
follow one another closely, as a client's successive calls do; in the other tables every
row waits for all the others between two of its calls, and on a busy machine that gap
outlasts the timeout. Here each row makes BURST calls in a row on its one connection per
round, the rows interleaved round by round as elsewhere.

Rows, on loopback and through the tailnet (the client node's SOCKS5 proxy):
- GET /healthz on the floor (the same uvicorn and Starlette, none of our middleware) and
  on the agent;
- execute_command hostname on the agent with protocol 2025-11-25 (initialize handshake,
  the reply as an SSE event) and with 2026-07-28 (one self-contained POST, a JSON reply).
Targets: ours / floor for the GET; 2026-07-28 / 2025-11-25 for the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import httpx2
from mcp import Client

from tests.bench.bench_stats import Report, Row, Target, ratio
from tests.bench.calls import HOSTNAME, Call, tool

BURST = 3
GROUP = f"ours: HTTP responses, {BURST} calls back to back on one connection"
# mcp.Client's mode: "legacy" negotiates 2025-11-25 with the initialize handshake.
PROTOCOLS = {"2025-11-25": "legacy", "2026-07-28": "2026-07-28"}
# Ours / floor for GET /healthz; before the fix 5 to 40 on loopback, 24 through the tailnet.
# There ours also asks tailscaled twice per GET (WhoIs, the node's state), ~2 ms each.
GET_LIMIT = {"": 3.0, "_tailnet": 4.0}
PROTOCOL_LIMIT = 1.2

Clients = Callable[[str, str], contextlib.AbstractAsyncContextManager[Client]]
WHERE = {"": "on loopback", "_tailnet": "through the tailnet"}


def get(http: httpx2.AsyncClient, url: str) -> Call:
    async def call() -> object:
        response = await http.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")
        return response

    return call


async def http_calls(stack: contextlib.AsyncExitStack, http: httpx2.AsyncClient, clients: Clients,
                     *, floor_base: str, agent_base: str, suffix: str) -> dict[str, Call]:
    """The rows' calls; `clients(url, mode)` opens an MCP client the way this path needs."""
    calls = {f"http_get_floor{suffix}": get(http, f"{floor_base}/healthz"),
             f"http_get{suffix}": get(http, f"{agent_base}/healthz")}
    for version, mode in PROTOCOLS.items():
        client = await stack.enter_async_context(clients(f"{agent_base}/mcp", mode))
        if client.protocol_version != version:
            raise RuntimeError(f"asked for {version}, negotiated {client.protocol_version}")
        calls[f"http_call_{version}{suffix}"] = tool(client, *HOSTNAME)
    return calls


def http_rows(samples: dict[str, list[float]], suffix: str) -> list[Row]:
    where = WHERE[suffix]
    labels = {
        f"http_get_floor{suffix}": f"GET /healthz {where}, floor (uvicorn, no middleware)",
        f"http_get{suffix}": f"GET /healthz {where}, ours",
        **{f"http_call_{v}{suffix}": f"MCP hostname {where}, protocol {v}" for v in PROTOCOLS},
    }
    return [Row.latency(key, labels[key], GROUP, seconds) for key, seconds in samples.items()]


def http_targets(report: Report) -> list[Target]:
    targets = []
    for suffix, where in WHERE.items():
        get_ours, get_floor = report.p50(f"http_get{suffix}"), report.p50(f"http_get_floor{suffix}")
        old, new = (report.p50(f"http_call_{v}{suffix}") for v in PROTOCOLS)
        targets += [
            Target(f"http_get{suffix}", f"GET /healthz back to back {where}: ours / floor p50",
                   ratio(get_ours, get_floor), GET_LIMIT[suffix], detail=_ms(get_ours, get_floor)),
            Target(f"http_protocols{suffix}",
                   f"warm call back to back {where}: 2026-07-28 / 2025-11-25 p50",
                   ratio(new, old), PROTOCOL_LIMIT, detail=_ms(new, old)),
        ]
    return targets


def _ms(a: float | None, b: float | None) -> str:
    return " vs ".join("-" if x is None else f"{x:.2f} ms" for x in (a, b))
