"""The TCP sockets a process listens on, read from /proc (Linux).

A userspace tailscaled should listen on loopback only (its SOCKS5 proxy; LocalAPI is a
unix socket). An upstream build also opens its peerapi on every interface
(0.0.0.0:<port>) in userspace mode; builds without that feature (ts_omit_peerapiserver,
as the agent embeds) do not. `exposed_listeners` finds what a given process listens on
beyond loopback, so whoever starts tailscaled can refuse to serve from such a node.

/proc/<pid>/net/tcp{,6} lists every socket of the process's network namespace; the
inodes behind /proc/<pid>/fd say which of them belong to the process.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


@dataclass(frozen=True)
class Listener:
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # IPv6: four 32-bit words, each in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def listeners(pid: int) -> list[Listener]:
    """The TCP sockets process `pid` listens on (OSError if it is gone or not ours)."""
    mine = _socket_inodes(pid)
    found: list[Listener] = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN or fields[9] not in mine:
                continue
            hex_address, hex_port = fields[1].split(":")
            found.append(Listener(_address(hex_address), int(hex_port, 16)))
    return found


def exposed_listeners(pid: int) -> list[Listener]:
    """What `pid` listens on beyond loopback (empty: loopback only)."""
    return [listener for listener in listeners(pid) if not listener.loopback]
