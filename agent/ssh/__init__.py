"""SSH to the hosts: one pooled asyncssh connection per host, verified and probed.

`SSHPool` runs already rendered commands (agent.core.service hands them over);
connect.py opens and checks connections, exec.py and shell.py are the two ways a
command runs, known_hosts.py pins host keys, errors.py says what went wrong.
"""

from .connect import fetch_host_key
from .dial import Connector, socks_connector
from .errors import (
    AuthenticationFailed,
    HostKeyChanged,
    HostKeyUnknown,
    HostUnreachable,
    ShellNotPosix,
    SSHError,
)
from .known_hosts import fingerprint, is_trusted, known_hosts_pattern, pin_host_key, trusted_keys
from .pool import SSHPool

__all__ = [
    "AuthenticationFailed",
    "Connector",
    "HostKeyChanged",
    "HostKeyUnknown",
    "HostUnreachable",
    "SSHError",
    "SSHPool",
    "ShellNotPosix",
    "fetch_host_key",
    "fingerprint",
    "is_trusted",
    "known_hosts_pattern",
    "pin_host_key",
    "socks_connector",
    "trusted_keys",
]
