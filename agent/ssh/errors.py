"""SSH failures, one class per cause, each explained for a person: what failed, on which
host, what to do next. All are `agent.errors.HostError`s, so the service and the
front ends handle them without knowing about SSH."""

from __future__ import annotations

from agent.errors import HostError


class SSHError(HostError):
    """Something about SSH to `host` failed; the message says what and what to do."""


class HostUnreachable(SSHError):
    """No SSH connection: DNS, routing, a closed port, a timeout, or the tailnet dial."""


class _HostKeyError(SSHError):
    def __init__(self, host: str, message: str, fingerprint: str | None) -> None:
        super().__init__(host, message)
        self.fingerprint = fingerprint


class HostKeyUnknown(_HostKeyError):
    """The server's key is not pinned in known_hosts: `trust` it deliberately."""


class HostKeyChanged(_HostKeyError):
    """known_hosts pins a different key: a re-keyed server or an attack."""


class NoHostKey(SSHError):
    """The server presented no host key at all."""


class AuthenticationFailed(SSHError):
    """The server refused our key for this user."""


class ClientKeyUnusable(AuthenticationFailed):
    """Our own private key is missing, unreadable or needs a (different) passphrase."""


class ShellNotPosix(SSHError):
    """The login shell would not parse commands meant for /bin/sh."""


class TimeoutMissing(SSHError):
    """The host has no `timeout` program, which stops runaway commands."""


class ProbeFailed(SSHError):
    """Connected, but the shell probe could not run."""


class ChannelRefused(SSHError):
    """The host refused to open a channel (sshd's MaxSessions, usually)."""


class ConnectionCapReached(SSHError):
    """Every SSH connection the agent may keep open had a call running; nothing was sent."""


class ConnectionDropped(SSHError):
    """The connection went away while a command was starting; it may or may not have run."""


class HostKeyContradicted(_HostKeyError):
    """known_hosts pins a key that the tailnet's netmap contradicts for this node."""


class HostKeyNotPublished(_HostKeyError):
    """The server presented a key that is not among those the tailnet publishes for it."""


class TailscaleSSHDenied(AuthenticationFailed):
    """Tailscale SSH on the node refused the agent: the tailnet policy has no `ssh` rule
    that lets the agent's node in as that user."""
