"""Run tailscaled as a child in userspace-networking mode and talk to it.

Knows nothing of the agent: spawn and supervise tailscaled (`TailscaleNode`),
its LocalAPI (`LocalAPI`, `WhoIs`), the other nodes it sees (`Peer`, `watch_peers`)
and dialing through its SOCKS5 proxy (`open_socks5_connection`).
"""

from .authkey import read_auth_key
from .errors import LocalAPIError, SocksError, TailscaledNotFound, TailscaleError
from .listeners import Listener, exposed_listeners
from .localapi import LocalAPI
from .locate import TAILSCALE_VERSION, find_tailscaled, tailscaled_version
from .node import NodeInfo, NodeOptions, TailscaleNode
from .peers import Peer, peers_from_status, self_principal, watch_peers
from .socks import open_socks5_connection
from .whois import WhoIs

__all__ = [
    "TAILSCALE_VERSION",
    "Listener",
    "LocalAPI",
    "LocalAPIError",
    "NodeInfo",
    "NodeOptions",
    "Peer",
    "SocksError",
    "TailscaleError",
    "TailscaleNode",
    "TailscaledNotFound",
    "WhoIs",
    "exposed_listeners",
    "find_tailscaled",
    "open_socks5_connection",
    "peers_from_status",
    "read_auth_key",
    "self_principal",
    "tailscaled_version",
    "watch_peers",
]
