"""The tailnet identity behind a connection, as answered by LocalAPI whois."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class WhoIs:
    login_name: str | None  # UserProfile.LoginName; None for tagged nodes
    display_name: str | None
    node_name: str  # MagicDNS FQDN without the trailing dot, else ComputedName
    tags: tuple[str, ...]
    tailscale_ips: tuple[str, ...]
    cap_map: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_localapi(cls, answer: Mapping[str, Any]) -> WhoIs:
        node: Mapping[str, Any] = answer.get("Node") or {}
        profile: Mapping[str, Any] = answer.get("UserProfile") or {}
        tags = tuple(str(t) for t in node.get("Tags") or ())
        # A tagged node is owned by the tailnet, not a person: the profile tailscaled
        # returns for it is a placeholder ("tagged-devices"), so it must not pass as a user.
        login = None if tags else (profile.get("LoginName") or None)
        display = None if tags else (profile.get("DisplayName") or None)
        name = str(node.get("Name") or "").rstrip(".") or str(node.get("ComputedName") or "")
        ips = tuple(str(a).split("/", 1)[0] for a in node.get("Addresses") or ())
        ips = tuple(sorted(ips, key=lambda ip: ":" in ip))  # IPv4 first
        cap_map = MappingProxyType(dict(answer.get("CapMap") or {}))
        return cls(
            login_name=login,
            display_name=display,
            node_name=name,
            tags=tags,
            tailscale_ips=ips,
            cap_map=cap_map,
        )
