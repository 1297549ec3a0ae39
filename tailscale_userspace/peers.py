"""The tailnet's other nodes as tailscaled knows them, typed, and a live view of them.

`Peer` is one entry of the LocalAPI status's `Peer` map (Go's ipnstate.PeerStatus).
`watch_peers` follows tailscaled's IPN bus (`watch-ipn-bus`): each netmap change it
announces (a full netmap, or peer deltas such as a node going offline) is answered
with one fresh status read, so the peer list follows joins, leaves and online changes
as they happen, without polling. The status document is the stable, typed view;
the netmap inside bus messages is tailscaled's internal structure and is not read.

Online is three-valued here. The status writes a peer's online state as a plain bool,
so "control has not said" reads as offline. A node that has registered but not yet
connected is one of those: Headscale v0.29 registers a node with LastSeen set to that
moment and marks it offline until its first map poll connects, ~1.6 s later. Control
has not seen it online since it registered, so it is `online=None` ("not seen yet"),
not offline with a last-seen time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import LocalAPIError
from .localapi import NOTIFY_INITIAL_NETMAP, NOTIFY_INITIAL_STATE, NOTIFY_PEER_CHANGES, LocalAPI

log = logging.getLogger(__name__)

# Go's zero time.Time, which status reports as LastSeen for peers it has no time for.
_ZERO_TIME_YEAR = 1
# A LastSeen this close to the node's registration (Created) is the registration itself:
# Headscale sets LastSeen just before it stores the node.
REGISTERED_ONLY = dt.timedelta(seconds=5)
RECONNECT_DELAY = 1.0
RECONNECT_DELAY_MAX = 10.0


def _time(value: Any) -> dt.datetime | None:
    """A Go RFC 3339 time (nanoseconds and all); None for the zero time or nonsense."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:  # Python takes at most microseconds
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return None if parsed.year <= _ZERO_TIME_YEAR else parsed


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value if isinstance(v, str) and v)


@dataclass(frozen=True)
class Peer:
    id: str  # the stable node ID
    hostname: str  # the machine's own hostname
    dns_name: str  # MagicDNS FQDN without the trailing dot ("" without MagicDNS)
    ips: tuple[str, ...]  # tailnet addresses, IPv4 first
    tags: tuple[str, ...]  # ("tag:server", ...); () for a user's node
    user: str  # the owning user's login name ("" for tagged nodes)
    os: str
    online: bool | None  # None: not seen yet (registered, not connected since)
    last_seen: dt.datetime | None  # when control last saw it offline; None if not reported
    ssh_host_keys: tuple[str, ...]  # "type base64" host keys it publishes (Tailscale SSH)
    created: dt.datetime | None = None  # when it registered with control

    @property
    def short_name(self) -> str:
        """The MagicDNS short name (first label), or the hostname without MagicDNS."""
        return self.dns_name.split(".")[0] if self.dns_name else self.hostname

    @property
    def runs_tailscale_ssh(self) -> bool:
        # What tailscale itself uses as the sign (tailcfg.Hostinfo.TailscaleSSHEnabled).
        return bool(self.ssh_host_keys)

    @classmethod
    def from_status(cls, data: Mapping[str, Any], users: Mapping[str, Any]) -> Peer:
        ips = _strings(data.get("TailscaleIPs"))
        tags = _strings(data.get("Tags"))
        profile = users.get(str(data.get("UserID"))) or {}
        online: bool | None = bool(data.get("Online"))
        last_seen, created = _time(data.get("LastSeen")), _time(data.get("Created"))
        if (not online and last_seen is not None and created is not None
                and last_seen - created <= REGISTERED_ONLY):
            online, last_seen = None, None  # registered, never seen since: not seen yet
        elif online:
            last_seen = None  # Go: "only present if offline"; an old one may linger
        return cls(
            id=str(data.get("ID") or data.get("PublicKey") or ""),
            hostname=str(data.get("HostName") or ""),
            dns_name=str(data.get("DNSName") or "").rstrip("."),
            ips=tuple(sorted(ips, key=lambda ip: ":" in ip)),
            tags=tags,
            user="" if tags else str(profile.get("LoginName") or ""),
            os=str(data.get("OS") or ""),
            online=online,
            last_seen=last_seen,
            ssh_host_keys=_strings(data.get("sshHostKeys")),
            created=created,
        )


def peers_from_status(status: Mapping[str, Any]) -> list[Peer]:
    """Every peer in a LocalAPI status document, sorted by MagicDNS name."""
    users = status.get("User") or {}
    peers = [Peer.from_status(p, users) for p in (status.get("Peer") or {}).values()]
    return sorted(peers, key=lambda p: (p.dns_name, p.id))


def self_principal(status: Mapping[str, Any]) -> str:
    """How a tailnet policy names this node as a source: its first tag, or `login@`
    (a login without a domain, as Headscale's CLI users have, gets the trailing `@`)."""
    me = status.get("Self") or {}
    tags = _strings(me.get("Tags"))
    if tags:
        return tags[0]
    profile = (status.get("User") or {}).get(str(me.get("UserID"))) or {}
    login = str(profile.get("LoginName") or "")
    return login if "@" in login or not login else f"{login}@"


async def watch_peers(localapi: LocalAPI) -> AsyncGenerator[list[Peer], None]:
    """The peer list now, then again after every netmap change tailscaled announces.

    A broken IPN bus (tailscaled restarting, say) is reopened with a growing delay; the
    first message after it reopens is a full view again. Stop with `aclose()`.
    """
    mask = NOTIFY_INITIAL_STATE | NOTIFY_INITIAL_NETMAP | NOTIFY_PEER_CHANGES
    delay = RECONNECT_DELAY
    while True:
        bus = localapi.watch_ipn_bus(mask)
        try:
            async for notify in bus:
                if "NetMap" in notify or "PeerChanges" in notify or "State" in notify:
                    yield peers_from_status(await localapi.status())
                    delay = RECONNECT_DELAY
        except LocalAPIError as exc:
            log.info("the IPN bus closed (%s); reopening in %g s", exc, delay)
        finally:
            await bus.aclose()
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECONNECT_DELAY_MAX)
