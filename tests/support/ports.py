"""Ports for the servers the tests start (sshd, headscale, rsyslog, the agent on a tailnet).

A port the kernel hands out (bind to 0) is in its ephemeral range, where any outgoing
connection on the machine can take it before our server binds it: one CI run lost a module's
sshd so ("Address already in use"), beside a 1,000-host fan-out, and a restarted server needs
its port again. So ports come from PORTS_FROM up to the start of that range, checked free.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

PORTS_FROM = 20000


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of `kind` (TCP or UDP) free on every address, below the ephemeral range."""
    end = max(ephemeral_start(), PORTS_FROM + 1000)
    for _ in range(200):
        port = PORTS_FROM + secrets.randbelow(end - PORTS_FROM)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {PORTS_FROM} and {end}")


def ephemeral_start() -> int:
    """Where the kernel's ephemeral ports begin."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default
