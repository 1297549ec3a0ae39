"""Run tailscaled as a child in userspace-networking mode and talk to it.

Knows nothing of the agent: spawn and supervise tailscaled (`TailscaleNode`),
its LocalAPI (`LocalAPI`, `WhoIs`) and dialing through its SOCKS5 proxy
(`open_socks5_connection`).
"""

from .authkey import read_auth_key
from .errors import LocalAPIError, SocksError, TailscaledNotFound, TailscaleError
from .listeners import Listener, exposed_listeners
from .localapi import LocalAPI
from .locate import TAILSCALE_VERSION, find_tailscaled, tailscaled_version
from .node import NodeInfo, NodeOptions, TailscaleNode
from .socks import open_socks5_connection
from .whois import WhoIs

__all__ = [
    "TAILSCALE_VERSION",
    "Listener",
    "LocalAPI",
    "LocalAPIError",
    "NodeInfo",
    "NodeOptions",
    "SocksError",
    "TailscaleError",
    "TailscaleNode",
    "TailscaledNotFound",
    "WhoIs",
    "exposed_listeners",
    "find_tailscaled",
    "open_socks5_connection",
    "read_auth_key",
    "tailscaled_version",
]
