"""Opening one SSH connection: load the client key, dial, verify the host key, probe the shell.

Every failure becomes one of agent.ssh.errors with a message a person can act on:
an unknown or changed host key names the fingerprint and `tailnet-agent trust`; a
refused key names the user and authorized_keys; a non-POSIX login shell names chsh.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import asyncssh

from agent.hosts.inventory import AUTH_TAILSCALE_SSH, HostConfig

from .dial import Connector, describe, open_socket, unreachable_message
from .errors import (
    AuthenticationFailed,
    ClientKeyUnusable,
    HostKeyChanged,
    HostKeyUnknown,
    HostUnreachable,
    NoHostKey,
    ProbeFailed,
    ShellNotPosix,
    SSHError,
    TimeoutMissing,
)
from .known_hosts import fingerprint, is_trusted, trusted_keys
from .parsed_files import ParsedFiles
from .tailnet_keys import host_key_check, not_published_error
from .tailscale_ssh import BannerClient, auth_options, keyless_failed, refusal

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 10.0
# AES-GCM first: one C call per packet in asyncssh where chacha20-poly1305 takes
# several, about 40 us less client CPU per command (measured); all three are AEADs.
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
# `$((...))` is POSIX arithmetic that fish, csh/tcsh and nushell reject; `timeout`
# is what wrap_for_exec relies on to kill runaway commands.
SHELL_PROBE = (
    'test "$((6*7))" = 42 && printf posix-ok; '
    "command -v timeout >/dev/null 2>&1 && printf ' timeout-ok'"
)


async def connect(
    host: HostConfig,
    *,
    connector: Connector | None,
    timeout: float,  # noqa: ASYNC109
) -> asyncssh.SSHClientConnection:
    """A connection that passed the host-key check, authentication and the shell probe."""
    conn = await _connect(host, connector, timeout)
    try:
        await probe(host, conn)
    except BaseException:
        conn.close()
        raise
    return conn


async def _connect(
    host: HostConfig, connector: Connector | None, timeout: float  # noqa: ASYNC109
) -> asyncssh.SSHClientConnection:
    keyless = host.auth == AUTH_TAILSCALE_SSH
    keys = None if keyless else load_client_keys(host)
    known_hosts = host_key_check(host)  # the netmap's keys, or known_hosts
    sock = await open_socket(host, connector, timeout)
    log.info("connecting to %s (%s%s)", host.name, host.target,
             ", Tailscale SSH" if keyless else "")
    client = BannerClient()
    try:
        return await asyncssh.connect(
            host.address,  # also the name looked up in known_hosts
            host.port,
            sock=sock,
            client_factory=lambda: client,
            username=host.user,
            known_hosts=known_hosts,
            **auth_options(host, keys),
            password=None,
            agent_path=None,
            kbdint_auth=False,
            config=None,  # ~/.ssh/config must not silently change user, port or keys
            connect_timeout=timeout,
            encryption_algs=ENCRYPTION_ALGS,
            keepalive_interval=30,
            keepalive_count_max=3,
        )
    except asyncssh.HostKeyNotVerifiable:
        if host.host_keys:
            raise not_published_error(
                host, await _presented_key(host, connector, timeout)) from None
        raise await host_key_error(host, connector, timeout) from None
    except asyncssh.PermissionDenied:
        refused = refusal(host, client.banner)
        if refused is not None:
            raise refused from None
        raise AuthenticationFailed(
            host.name, keyless_failed(host) if keyless else _auth_failed(host)) from None
    except (OSError, TimeoutError, asyncssh.Error) as exc:
        if sock is not None:
            sock.close()
        # Tailscale SSH says why it refuses in a banner, then disconnects.
        refused = refusal(host, client.banner)
        if refused is not None:
            raise refused from None
        # A connection that opened and then broke may be a host-key type mismatch.
        if not host.host_keys and not isinstance(
                exc, TimeoutError | ConnectionRefusedError | socket.gaierror):
            changed = await _changed_key_type(host, connector, timeout)
            if changed is not None:
                raise changed from None
        raise HostUnreachable(host.name, unreachable_message(host, exc)) from None


async def fetch_host_key(
    host: HostConfig,
    *,
    connector: Connector | None = None,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> asyncssh.SSHKey:
    """Ask the server for its host key without trusting or authenticating anything."""
    sock = await open_socket(host, connector, timeout)
    target: dict[str, Any] = (
        {"sock": sock} if sock is not None else {"host": host.address, "port": host.port}
    )
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(**target, config=None), timeout)
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise HostUnreachable(
            host.name,
            f"could not read the SSH host key of {host.name} ({host.address}:{host.port}): "
            f"{describe(exc)}; check that sshd is running there and the port is right",
        ) from None
    finally:
        if sock is not None:
            sock.close()
    if key is None:
        raise NoHostKey(host.name, f"{host.name} ({host.address}:{host.port}) presented no "
                        "host key; check sshd's HostKey lines there")
    return key


async def _presented_key(
    host: HostConfig, connector: Connector | None, timeout: float  # noqa: ASYNC109
) -> asyncssh.SSHKey | None:
    """The server's key, fetched over a second connection (for messages only)."""
    try:
        return await fetch_host_key(host, connector=connector, timeout=timeout)
    except SSHError:
        return None


async def host_key_error(
    host: HostConfig,
    connector: Connector | None,
    timeout: float,  # noqa: ASYNC109
    key: asyncssh.SSHKey | None = None,
) -> SSHError:
    """HostKeyChanged or HostKeyUnknown, with the presented fingerprint and the way out."""
    changed = bool(trusted_keys(host))
    if key is None:
        key = await _presented_key(host, connector, timeout)
    shown = fingerprint(key) if key is not None else None
    where = f"{host.name} ({host.address}:{host.port})"
    advice = f"run `tailnet-agent trust {host.name}` to review and pin it"
    if changed:
        return HostKeyChanged(
            host.name,
            f"the SSH host key of {where} has CHANGED: it now presents {shown or 'a new key'}"
            f", which does not match {host.known_hosts}. This can mean a reinstalled "
            f"server or an attack; if you expected it, {advice}",
            shown,
        )
    return HostKeyUnknown(
        host.name,
        f"the SSH host key of {where} is not in {host.known_hosts} "
        f"(it presents {shown or 'an unknown key'}); {advice}",
        shown,
    )


async def _changed_key_type(
    host: HostConfig, connector: Connector | None, timeout: float  # noqa: ASYNC109
) -> SSHError | None:
    """A HostKeyChanged when a handshake failed because the server's key type changed.

    With keys pinned, asyncssh offers only their algorithms; a server that now
    has only another key type drops the handshake, which looks like a network
    failure unless we look at the key it presents.
    """
    if not trusted_keys(host):
        return None
    key = await _presented_key(host, connector, timeout)
    if key is None or is_trusted(host, key) is not False:
        return None
    return await host_key_error(host, connector, timeout, key)


async def probe(host: HostConfig, conn: asyncssh.SSHClientConnection) -> None:
    """Check that the login shell is POSIX and `timeout` exists; raise otherwise."""
    try:
        done = await conn.run(SHELL_PROBE, check=False, timeout=PROBE_TIMEOUT_SECONDS)
    except (OSError, asyncssh.Error, asyncssh.ProcessError, asyncssh.TimeoutError) as exc:
        raise ProbeFailed(
            host.name,
            f"connected to {host.name} ({host.target}) but could not run the shell probe: "
            f"{exc}; check sshd's logs on that host",
        ) from None
    out = done.stdout if isinstance(done.stdout, str) else ""
    if "posix-ok" not in out:
        raise ShellNotPosix(
            host.name,
            f"the login shell of {host.user} on {host.name} is not a POSIX shell "
            f"(probe exit status {done.exit_status}); commands are sent for /bin/sh. "
            f"Give that account a POSIX login shell (chsh -s /bin/sh {host.user}) "
            "or configure another user",
        )
    if "timeout-ok" not in out:
        raise TimeoutMissing(
            host.name,
            f"`timeout` (GNU coreutils or busybox) is not on the PATH of {host.user} on "
            f"{host.name}; it is needed to stop runaway commands: install coreutils there",
        )


# Parsed once per version of the file (and passphrase), not per connection: an encrypted
# key costs a bcrypt KDF per parse (parsed_files.py).
def _private_key(path: Path, data: bytes, passphrase: str | None) -> asyncssh.SSHKey:
    key = asyncssh.import_private_key(data, passphrase)
    key.set_filename(path)  # as asyncssh.read_private_key does
    return key


_CLIENT_KEYS = ParsedFiles(_private_key)


def load_client_keys(host: HostConfig) -> list[asyncssh.SSHKey]:
    paths = host.client_key_paths()
    if not paths:
        raise ClientKeyUnusable(
            host.name,
            f"no SSH key for {host.name}: ~/.ssh/id_ed25519 and ~/.ssh/id_rsa do not exist; "
            "set REMOTE_SSH_KEY_PATH or `key:` in the inventory",
        )
    keys = []
    for path in paths:
        try:
            keys.append(_CLIENT_KEYS.get(path, host.key_passphrase))
        except OSError as exc:
            raise ClientKeyUnusable(
                host.name, f"cannot read SSH key {path} for {host.name}: {exc.strerror}"
            ) from None
        except asyncssh.KeyEncryptionError as exc:
            if "bcrypt" in str(exc):
                # Encrypted OpenSSH-format keys (ssh-keygen's default) need bcrypt's KDF.
                hint = "decrypting it needs the `bcrypt` package (pip install bcrypt)"
            elif host.key_passphrase:
                hint = "the passphrase is wrong (REMOTE_SSH_KEY_PASSPHRASE)"
            else:
                hint = "it needs a passphrase (set REMOTE_SSH_KEY_PASSPHRASE)"
            raise ClientKeyUnusable(
                host.name, f"cannot load SSH key {path} for {host.name}: {hint}"
            ) from None
        except asyncssh.KeyImportError:
            hint = (
                "the passphrase is wrong (REMOTE_SSH_KEY_PASSPHRASE)"
                if host.key_passphrase
                else "it may need a passphrase (set REMOTE_SSH_KEY_PASSPHRASE)"
            )
            raise ClientKeyUnusable(
                host.name, f"cannot load SSH key {path} for {host.name}: {hint}"
            ) from None
    return keys


def _auth_failed(host: HostConfig) -> str:
    keys = ", ".join(str(p) for p in host.client_key_paths())
    return (
        f"{host.user}@{host.address}:{host.port} ({host.name}) refused key {keys}: check the "
        f"user name, and that the matching public key is in ~{host.user}/.ssh/authorized_keys "
        "on that host"
    )
