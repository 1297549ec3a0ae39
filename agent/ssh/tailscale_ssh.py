"""Keyless login through Tailscale SSH.

On a node running Tailscale SSH, tailscaled answers port 22 on the node's tailnet
address itself and authorises the caller by its tailnet identity and the tailnet
policy's `ssh` rules; the client offers no key. What asyncssh must do (found against
tailscaled v1.98.8): send the SSH "none" authentication request, which tailscaled's
server accepts when a rule lets the agent's node in as that user; offer nothing else
(no keys, agent, password or keyboard-interactive). A refusal comes as an auth
banner ("tailscale: tailnet policy does not permit you to SSH ...") followed by a
disconnect, which asyncssh reports as a lost connection: the banner is what tells a
refusal from a network failure, so it is collected here.
"""

from __future__ import annotations

import json
from typing import Any

import asyncssh

from agent.hosts.inventory import AUTH_TAILSCALE_SSH, HostConfig

from .errors import AuthenticationFailed, SSHError, TailscaleSSHDenied

POLICY_REFUSAL = "tailnet policy does not permit"


class BannerClient(asyncssh.SSHClient):
    """An asyncssh client that keeps the auth banners the server sends."""

    def __init__(self) -> None:
        self.banner = ""

    def auth_banner_received(self, msg: str, lang: str) -> None:
        self.banner += msg


def auth_options(host: HostConfig, keys: list[asyncssh.SSHKey] | None) -> dict[str, Any]:
    """asyncssh's authentication arguments: the key only, or (Tailscale SSH) nothing."""
    if host.auth == AUTH_TAILSCALE_SSH:
        return {"client_keys": None, "preferred_auth": "none"}
    return {"client_keys": keys, "preferred_auth": "publickey"}


def rule_to_add(host: HostConfig) -> str:
    """The tailnet policy `ssh` rule that would let the agent in as host.user."""
    rule = {
        "action": "accept",
        "src": [host.tailnet_self or "<the agent's tag or user>"],
        "dst": [host.tags[0] if host.tags else "<the node's tag or owner>"],
        "users": [host.user],
    }
    return json.dumps(rule)


def refusal(host: HostConfig, banner: str) -> SSHError | None:
    """The error for a login Tailscale SSH refused, or None if the banner says nothing."""
    if host.auth != AUTH_TAILSCALE_SSH:
        return None
    said = " ".join(banner.split())
    if POLICY_REFUSAL in said:
        return TailscaleSSHDenied(
            host.name,
            f"Tailscale SSH on {host.name} refused the agent as user {host.user!r} ({said}). "
            f"Add an `ssh` rule to the tailnet policy, for example {rule_to_add(host)}, or "
            "log in with a key instead (auth: key in the inventory's tailnet selector)",
        )
    if said:
        return AuthenticationFailed(
            host.name, f"Tailscale SSH on {host.name} refused the agent as user "
            f"{host.user!r}: {said}")
    return None


def keyless_failed(host: HostConfig) -> str:
    return (
        f"{host.target} ({host.name}) did not accept a keyless Tailscale SSH login: is "
        "Tailscale SSH on for that node (`tailscale set --ssh`) and does the tailnet policy "
        f"have an `ssh` rule like {rule_to_add(host)}? Otherwise use auth: key"
    )
