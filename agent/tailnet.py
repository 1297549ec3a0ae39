"""The agent's own tailnet node: options from settings, the names peers reach it by.

The agent owns a userspace tailscaled (no TUN, no root). Outbound SSH goes through
that node's SOCKS5 proxy (agent.ssh.dial.socks_connector); inbound tailnet
connections to the node's port P arrive on 127.0.0.1:P and are identified with
WhoIs (agent.web.middleware.identity).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from agent.logs import say
from agent.settings import Settings
from agent.ssh import Connector, socks_connector
from tailscale_userspace import (
    NodeInfo,
    NodeOptions,
    TailscaleNode,
    find_tailscaled,
    read_auth_key,
)


def progress(message: str) -> None:
    say(f"tailnet: {message}")


def _login_url(url: str) -> None:
    say(f"tailnet: to add this agent to your tailnet, open {url}")


def make_node(
    settings: Settings, *, state_dir: Path | None = None, hostname: str | None = None
) -> TailscaleNode:
    """A node from the tailnet settings (TS_AUTHKEY, TS_HOSTNAME, TS_CONTROL_URL, TAILSCALED)."""
    options = NodeOptions(
        tailscaled=find_tailscaled(settings.tailscaled),
        state_dir=state_dir,
        auth_key=read_auth_key(settings.authkey) if settings.authkey else None,
        hostname=hostname or settings.hostname,
        control_url=settings.control_url,
    )
    return TailscaleNode(options, on_progress=progress, on_login_url=_login_url)


def join_timeout(settings: Settings) -> float | None:
    """With an auth key a join is quick or broken; without one a person must approve the
    login URL, which takes as long as it takes."""
    return settings.join_timeout if settings.authkey else None


def node_names(info: NodeInfo) -> list[str]:
    """Every name a peer may put in the Host header to reach this node."""
    names = [*info.ips, info.hostname]
    if info.dns_name:
        names += [info.dns_name, info.dns_name.split(".")[0]]
    return [n for n in names if n]


@contextlib.asynccontextmanager
async def joined_node(settings: Settings, *, hostname: str) -> AsyncIterator[TailscaleNode]:
    """A node joined for the length of a `with` block (`trust --tailnet`, `doctor`)."""
    node = make_node(settings, hostname=hostname)
    try:
        await node.up(timeout=join_timeout(settings))
        yield node
    finally:
        await node.stop()


@contextlib.asynccontextmanager
async def dialer(
    settings: Settings, *, through_tailnet: bool, purpose: str
) -> AsyncIterator[Connector | None]:
    """How a one-off command (`trust`, `doctor`) dials hosts: directly (None), or through
    a node that joins briefly as `<hostname>-<purpose>`."""
    if not through_tailnet:
        yield None
        return
    async with joined_node(settings, hostname=f"{settings.hostname}-{purpose}") as node:
        yield socks_connector(lambda: node.socks5)
