"""The agent's own tailnet node: options from settings, the names peers reach it by.

The agent owns a userspace tailscaled (no TUN, no root). Outbound SSH goes through
that node's SOCKS5 proxy (agent.ssh.dial.socks_connector); inbound tailnet
connections to the node's port P arrive on 127.0.0.1:P and are identified with
WhoIs (agent.web.middleware.identity).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from agent.errors import ConfigError
from agent.logs import say
from agent.settings import Settings
from agent.ssh import Connector, socks_connector
from tailscale_userspace import (
    NodeInfo,
    NodeOptions,
    TailscaleNode,
    exposed_listeners,
    find_tailscaled,
    read_auth_key,
)

log = logging.getLogger(__name__)


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


def check_listeners(node: TailscaleNode, *, allow_exposed: bool) -> None:
    """The node must listen on loopback only: its SOCKS5 proxy, nothing else.

    An untrimmed tailscaled in userspace mode also serves its peerapi on every interface,
    reachable from the LAN around this machine; the embedded build has no such listener.
    Refuse to serve from such a node unless the operator said so (then warn loudly).
    """
    if node.pid is None:
        return
    try:
        exposed = exposed_listeners(node.pid)
    except OSError as exc:
        log.warning("could not inspect tailscaled's sockets (pid %d): %s", node.pid, exc)
        return
    if not exposed:
        return
    where = ", ".join(str(listener) for listener in exposed)
    message = (f"tailscaled ({node.options.tailscaled}) listens on {where}, beyond loopback: "
               "other machines on this network can reach it. Use the tailscaled embedded in "
               "tailnet-agent, or build one with the same omit tags (README, \"With pip or "
               "pipx\")")
    if not allow_exposed:
        raise ConfigError(f"{message}; or pass --allow-exposed-tailscaled to serve anyway")
    print(f"WARNING: {message}. Serving anyway (--allow-exposed-tailscaled).", file=sys.stderr,
          flush=True)
    log.warning("%s; serving anyway (--allow-exposed-tailscaled)", message)
