"""`tailnet-agent serve`: become a tailnet node and serve tailnet peers only
(or, with --local, serve the person at this machine on loopback).

The HTTP server binds 127.0.0.1 only, so nothing off this machine reaches it
except through the agent's own tailscaled (see agent/tailnet/node.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator, Sequence

from agent import __version__
from agent.access.identity import local_user_identity
from agent.app import build_agent
from agent.chat import warmed_up
from agent.core.service import AgentService
from agent.settings import Settings
from agent.ssh import socks_connector
from agent.tailnet.fleet import TailnetFleet
from agent.tailnet.node import check_listeners, join_timeout, make_node, node_names, progress
from agent.web.middleware.host_origin import LOOPBACK_NAMES
from agent.web.middleware.identity import fixed_resolver, tailnet_peer_key, tailnet_resolver
from agent.web.server import serve_app
from agent.web.unix_socket import serving_on_socket
from tailscale_userspace import NodeInfo

from .checks import warn_about_hosts

log = logging.getLogger(__name__)


@contextlib.contextmanager
def sigterm_cancels() -> Iterator[None]:
    """Until uvicorn's own handling starts, SIGTERM cancels the main task, so `finally`
    blocks still run (tailscaled stopped, temporary files removed)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def hosts_line(settings: Settings) -> str:
    line = ", ".join(settings.hosts) or "none"
    if settings.tailnet_selectors:
        line += " (and the tailnet's, from the inventory's `tailnet:` selectors)"
    return line


async def serve_local(
    settings: Settings, *, port: int, mode: str = "local", banner: Sequence[str] = ()
) -> None:
    """Serve MCP and the chat on 127.0.0.1 to the local user (`serve --local`, `demo`)."""
    agent = build_agent(
        settings,
        mode=mode,
        resolver=fixed_resolver(local_user_identity("local")),
        allowed_names=LOOPBACK_NAMES,
    )
    if mode == "local":
        await warn_about_hosts(settings)
    if settings.tailnet_selectors:
        log.warning("the inventory's `tailnet:` hosts need the tailnet: they are left out in "
                    "%s mode (run `serve` without --local)", mode)
    lines = [f"tailnet-agent {__version__}: {mode} mode, {len(agent.service.catalog)} commands, "
             f"hosts: {hosts_line(settings)}", *banner]
    async with serving_on_socket(agent.ops_app, settings.socket):
        await warmed_up()  # "Ready." means a first question is answered at full speed
        await serve_app(agent.service, agent.app, port=port, banner=lines)


async def serve_tailnet(settings: Settings, *, port: int, allow_local_operator: bool,
                        allow_exposed_tailscaled: bool = False) -> None:
    """Join the tailnet with our own tailscaled, then serve tailnet peers only.

    The agent is built once tailscaled runs, before joining: a configuration error
    stops us before the node joins, and the local socket (TAILNET_AGENT_SOCKET) answers
    during the join, so a health check reads "not ready: the node is Starting" rather
    than silence. The node's names are allowed as Host once it has them.

    Shutdown order: HTTP stops accepting and drains, SSH closes (serve_app), the local
    socket closes, then tailscaled stops and an ephemeral node logs out (the `finally`
    below). A node with a state directory (TS_STATE_DIR) stays registered: it comes
    back as the same node.
    """
    node = make_node(settings, state_dir=settings.state_dir)
    supervisor: asyncio.Task[None] | None = None
    fleet: TailnetFleet | None = None
    with sigterm_cancels():
        try:
            await node.start()
            agent = build_agent(
                settings,
                mode="tailnet",
                resolver=tailnet_resolver(node.localapi, local_operator=allow_local_operator),
                allowed_names=LOOPBACK_NAMES if allow_local_operator else (),
                connector=socks_connector(lambda: node.socks5),
                tailnet_status=node.health,
            )
            async with serving_on_socket(agent.ops_app, settings.socket):
                info = await node.up(timeout=join_timeout(settings))
                check_listeners(node, allow_exposed=allow_exposed_tailscaled)
                supervisor = asyncio.create_task(node.run_supervised())
                agent.app.allow(node_names(info))
                if settings.tailnet_selectors:
                    # Before serving: a name clash with a file host stops the start here.
                    fleet = TailnetFleet(settings.tailnet_selectors, agent.service.hosts,
                                         node.localapi)
                    await fleet.start()
                    tailnet_hosts = [h for h in agent.service.hosts.values()
                                     if h.source == "tailnet"]
                    progress(f"{len(tailnet_hosts)} host(s) from the tailnet; following the "
                             "netmap")
                await warmed_up()  # ran while the node joined: seldom a wait
                await serve_app(agent.service, agent.app, port=port,
                                banner=_banner(settings, agent.service, info,
                                               allow_local_operator),
                                url_host=info.dns_name or info.ips[0],
                                peer_key=tailnet_peer_key(node.localapi))
        except asyncio.CancelledError:
            log.info("stopping on signal")
        finally:
            if fleet is not None:
                await fleet.stop()
            if supervisor is not None:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
            progress("stopping tailscaled")
            await node.stop()


def _banner(
    settings: Settings, service: AgentService, info: NodeInfo, allow_local_operator: bool
) -> list[str]:
    return [
        f"tailnet-agent {__version__}: serving tailnet peers as "
        f"{info.dns_name or info.hostname} ({', '.join(info.ips)}); "
        f"{len(service.catalog)} commands; hosts: {hosts_line(settings)}",
        "Listening on 127.0.0.1 only; tailnet peers reach it through tailscaled."
        + (" Local callers are accepted as the local operator." if allow_local_operator
           else " Local callers get 403."),
    ]
