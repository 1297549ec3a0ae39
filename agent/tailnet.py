"""`tailnet-agent serve`: become a tailnet node, then serve tailnet peers only.

The agent owns a userspace tailscaled (no TUN, no root). Outbound SSH goes
through that node's SOCKS5 proxy; inbound tailnet connections to the node's
port P arrive on 127.0.0.1:P and are identified with WhoIs (see identity.py).
The HTTP server binds 127.0.0.1 only, so nothing off this machine reaches it
except through tailscaled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable

from tailscale_userspace import (
    NodeInfo,
    NodeOptions,
    SocksError,
    TailscaleNode,
    find_tailscaled,
    open_socks5_connection,
    read_auth_key,
)

from . import __version__
from .config import Settings
from .hostcheck import LOOPBACK_NAMES
from .identity import tailnet_resolver
from .mcp_server import build_mcp_server
from .server import build_service, chat_routes, serve_app
from .ssh import Connector
from .web import build_app

log = logging.getLogger(__name__)


def socks_connector(proxy: Callable[[], tuple[str, int]]) -> Connector:
    """Dial SSH targets through the node's SOCKS5 proxy; tailscaled resolves MagicDNS names.

    `proxy` is read per dial because a restarted tailscaled listens on a new port.
    """

    async def connect(host: str, port: int) -> socket.socket:
        try:
            return await open_socks5_connection(proxy(), host, port)
        except SocksError as exc:
            # Right after this node joins, peers do not know its DERP region yet and the
            # first dial can fail ("general SOCKS server failure"); one more try settles it.
            log.info("SOCKS5 dial to %s:%d failed (%s); retrying once", host, port, exc)
            await asyncio.sleep(1.0)
            return await open_socks5_connection(proxy(), host, port)

    return connect


def node_names(info: NodeInfo) -> list[str]:
    """Every name a peer may put in the Host header to reach this node."""
    names = [*info.ips, info.hostname]
    if info.dns_name:
        names += [info.dns_name, info.dns_name.split(".")[0]]
    return [n for n in names if n]


def _progress(message: str) -> None:
    print(f"tailnet: {message}", flush=True)


def _login_url(url: str) -> None:
    print(f"tailnet: to add this agent to your tailnet, open {url}", flush=True)


def node_from_args(args: argparse.Namespace, *, default_hostname: str) -> TailscaleNode:
    """A node from the tailnet flags, falling back to TS_* variables like tsnet apps do."""
    raw_key = args.authkey or os.environ.get("TS_AUTHKEY") or ""
    options = NodeOptions(
        tailscaled=find_tailscaled(args.tailscaled),
        state_dir=getattr(args, "state_dir", None),
        auth_key=read_auth_key(raw_key) if raw_key else None,
        hostname=args.hostname or os.environ.get("TS_HOSTNAME") or default_hostname,
        control_url=args.control_url or os.environ.get("TS_CONTROL_URL") or None,
    )
    return TailscaleNode(options, on_progress=_progress, on_login_url=_login_url)


@contextlib.asynccontextmanager
async def joined_node(
    args: argparse.Namespace, *, default_hostname: str
) -> AsyncIterator[TailscaleNode]:
    """A node joined for the length of a `with` block (used by `trust --tailnet`)."""
    node = node_from_args(args, default_hostname=default_hostname)
    try:
        await node.up(timeout=None)
        yield node
    finally:
        await node.stop()


async def serve_tailnet(args: argparse.Namespace, settings: Settings) -> None:
    node = node_from_args(args, default_hostname="tailnet-agent")

    # Until uvicorn takes over signal handling, SIGTERM must still unwind through the
    # `finally` below, so tailscaled is stopped (and an ephemeral node logs out).
    main_task = asyncio.current_task()
    assert main_task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)

    supervisor: asyncio.Task[None] | None = None
    try:
        await node.start()
        info = await node.up(timeout=None)
        supervisor = asyncio.create_task(node.run_supervised())
        service = build_service(
            settings,
            mode="tailnet",
            extra_catalogs=args.catalog,
            connector=socks_connector(lambda: node.socks5),
        )
        service.tailnet_status = node.health
        mcp = build_mcp_server(service)
        names = node_names(info)
        if args.allow_local_operator:
            names += LOOPBACK_NAMES
        app = build_app(
            service,
            mcp,
            resolver=tailnet_resolver(node.localapi, local_operator=args.allow_local_operator),
            allowed_names=names,
            extra_routes=chat_routes(service, mcp),
        )
        url_host = info.dns_name or info.ips[0]
        banner = [
            f"tailnet-agent {__version__}: serving tailnet peers as "
            f"{info.dns_name or info.hostname} ({', '.join(info.ips)}); "
            f"{len(service.catalog)} commands; hosts: "
            f"{', '.join(settings.hosts) or 'none'}",
            "Listening on 127.0.0.1 only; tailnet peers reach it through tailscaled."
            + (" Local callers are accepted as the local operator." if args.allow_local_operator
               else " Local callers get 403."),
        ]
        await serve_app(service, app, port=args.port, banner=banner, url_host=url_host)
    except asyncio.CancelledError:
        log.info("stopping on signal")
    finally:
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        _progress("stopping tailscaled")
        await node.stop()
        loop.remove_signal_handler(signal.SIGTERM)
