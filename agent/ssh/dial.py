"""How a TCP connection to an SSH host is made: directly (asyncssh dials), or through the
tailnet node's SOCKS5 proxy (tailscaled resolves MagicDNS names and routes the stream)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from agent.hosts.inventory import HostConfig
from tailscale_userspace import SocksError, open_socks5_connection

from .errors import HostUnreachable

log = logging.getLogger(__name__)

# A connected socket to (host, port); None from `open_socket` means "let asyncssh dial".
Connector = Callable[[str, int], Awaitable[socket.socket]]


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


async def open_socket(
    host: HostConfig,
    connector: Connector | None,
    timeout: float,  # noqa: ASYNC109
) -> socket.socket | None:
    """Dial through `connector`; None means asyncssh dials itself."""
    if connector is None:
        return None
    try:
        return await asyncio.wait_for(connector(host.address, host.port), timeout)
    except (OSError, TimeoutError, ConnectionError, SocksError) as exc:
        raise HostUnreachable(host.name, unreachable_message(host, exc)) from None


def unreachable_message(host: HostConfig, exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return (
            f"cannot resolve {host.address!r} for host {host.name}: {exc.strerror or exc}; "
            "check the name in the host configuration (for a tailnet host, that this machine "
            "can reach it: `serve` and `doctor --tailnet` dial through the tailnet)"
        )
    return (
        f"cannot reach {host.name} at {host.address}:{host.port} ({describe(exc)}); check that the "
        "host is up (and online in the tailnet), that sshd listens on that port, "
        "and the address in the host configuration"
    )


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
