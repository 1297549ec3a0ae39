"""The trimmed tailscaled we embed keeps the LocalAPI surface the agent may use.

The executable's smoke test proves joining, SOCKS5 and whois. This covers the rest
of what build/tailscaled-features.txt promises to keep: the serve config (the
alternative inbound path) and the IPN bus (login URL, state changes).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import httpx

from tailscale_userspace import TailscaleNode
from tests.support.components import missing
from tests.support.frozen import REPO
from tests.support.tailnet import TestTailnet

TRIMMED = REPO / "build" / "work" / "tailscaled-bin" / "tailscaled"


def trimmed_tailscaled() -> Path:
    if not TRIMMED.is_file():
        missing(f"the trimmed tailscaled {TRIMMED}",
                "build it with `make dist` (sh build/build.sh without TAILSCALED=...)")
    return TRIMMED


async def test_serve_config_and_ipn_bus_work(tailnet: TestTailnet, tmp_path: Path) -> None:
    options = dataclasses.replace(tailnet.node_options("trimmed"), tailscaled=trimmed_tailscaled())
    node = tailnet.adopt(TailscaleNode(options))
    info = await node.up(timeout=60)
    transport = httpx.AsyncHTTPTransport(uds=str(node.localapi.socket_path))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://local-tailscaled.sock", timeout=30
    ) as local:
        version = (await local.get("/localapi/v0/status")).headers["Tailscale-Version"]
        assert version.endswith("-tailnet-agent-trimmed"), version

        config = {
            "TCP": {"80": {"HTTP": True}},
            "Web": {f"{info.dns_name}:80": {
                "Handlers": {"/": {"Proxy": f"unix:{tmp_path / 'app.sock'}"}}}},
        }
        posted = await local.post("/localapi/v0/serve-config", json=config)
        assert posted.status_code == 200, posted.text
        stored = await local.get("/localapi/v0/serve-config")
        assert stored.json() == config

        # mask 2 = NotifyInitialState: the first message carries the current state.
        async with local.stream("GET", "/localapi/v0/watch-ipn-bus", params={"mask": "2"}) as bus:
            assert bus.status_code == 200
            first = json.loads(await anext(bus.aiter_lines()))
        assert first["State"] == 6, first  # ipn.Running
    await node.stop()
