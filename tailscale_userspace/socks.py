"""Dialing tailnet hosts through tailscaled's SOCKS5 proxy.

We use python-socks rather than a hand-written client: it is small, maintained,
already speaks SOCKS5 with remote name resolution (`rdns=True`), reports server
reply codes as typed errors, and hands back a plain connected socket, which is
what `asyncssh.connect(sock=...)` wants. Names go to tailscaled unresolved so
MagicDNS names (`host` or `host.tailnet.example`) resolve inside the tailnet.
"""

from __future__ import annotations

import socket

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy

from .errors import SocksError


async def open_socks5_connection(
    proxy: tuple[str, int],
    host: str,
    port: int,
    *,
    timeout: float = 15.0,  # noqa: ASYNC109 (part of the API; also bounds the handshake)
) -> socket.socket:
    proxy_host, proxy_port = proxy
    client = Proxy(ProxyType.SOCKS5, proxy_host, proxy_port, rdns=True)
    where = f"{host}:{port} via tailscaled's SOCKS5 proxy {proxy_host}:{proxy_port}"
    try:
        sock: socket.socket = await client.connect(host, port, timeout=timeout)
    except ProxyTimeoutError:
        raise SocksError(
            f"connecting to {where} timed out after {timeout:g}s; check that the host is "
            "online in the tailnet (`tailscale status`) and that the ACLs allow this node"
        ) from None
    except ProxyConnectionError as exc:
        raise SocksError(
            f"cannot reach tailscaled's SOCKS5 proxy for {where}: {exc}; "
            "is tailscaled still running?"
        ) from None
    except ProxyError as exc:
        raise SocksError(
            f"connecting to {where} was refused: {exc}; check the host name (MagicDNS), "
            "that the port is open on that host and that the tailnet ACLs allow it"
        ) from None
    except OSError as exc:
        raise SocksError(
            f"connecting to {where} failed: {exc}; is tailscaled still running?"
        ) from None
    # asyncssh and asyncio's loop.create_connection(sock=...) set their own mode;
    # leave the socket non-blocking as asyncio expects.
    sock.setblocking(False)
    return sock
