"""A grant: which commands a caller may run on which hosts, and whether destructive ones.

Grants come from the policy file's rules and from the tailnet: a Tailscale grant
gives a caller our app capability (`CAPABILITY`), and WhoIs carries its values in
the caller's CapMap. Those values are decoded here, once, when the caller is
identified; a malformed value grants nothing and is logged for the tailnet admin.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import ConfigError, reject_unknown_fields
from whitelist import Command
from whitelist.host_patterns import host_matches, pattern_problem

log = logging.getLogger(__name__)

# The app capability a tailnet policy grant uses to give rights in this service
# (Tailscale's `<domain>/cap/<name>` style).
CAPABILITY = "tailnet-agent.dev/cap/run"
GRANT_FIELDS = frozenset({"hosts", "commands", "destructive", "metrics", "audit",
                          "approval_minutes", "approvers"})
DEFAULT_APPROVAL_MINUTES = 60  # how long a person confirming may approve identical calls for
MAX_APPROVAL_MINUTES = 24 * 60


@dataclass(frozen=True)
class Grant:
    """What one rule or tailnet grant allows: command patterns on host patterns (host
    names, globs, or `tag:<name>` for hosts carrying that tailnet tag), whether the
    caller may read the agent's metrics, and whether they may see every call's audit
    record and recording (`commands: []` grants only those)."""

    name: str
    hosts: tuple[str, ...] = ("*",)
    commands: tuple[str, ...] = ("*",)
    destructive: bool = False
    metrics: bool = False
    audit: bool = False  # every call's audit record, recording and shared turn, not only theirs
    # A person confirming a destructive command may approve identical calls for up to this
    # many minutes (0: every call is confirmed on its own).
    approval_minutes: int = DEFAULT_APPROVAL_MINUTES
    # Two-person rule: destructive commands need a yes from another identity matching one
    # of these selectors (login, group:..., "*"), never from the one asking.
    approvers: tuple[str, ...] = ()

    def covers_host(self, host: str, tags: Collection[str] = ()) -> bool:
        return host_matches(self.hosts, host, tags)

    def covers_command(self, command: Command) -> bool:
        for pattern in self.commands:
            if pattern.lower().startswith("category:"):
                if command.category.lower() == pattern.split(":", 1)[1].strip().lower():
                    return True
            elif fnmatch.fnmatchcase(command.name, pattern):
                return True
        return False

    def allows(self, command: Command) -> bool:
        return self.covers_command(command) and (self.destructive or not command.destructive)


def strings(
    value: Any, where: str, default: tuple[str, ...], *, may_be_empty: bool = False
) -> tuple[str, ...]:
    """A YAML/JSON value that must be a string or a non-empty list of strings (or an empty
    list, meaning "none", where `may_be_empty`)."""
    if value is None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not (value or may_be_empty) or not all(
        isinstance(v, str) and v.strip() for v in value
    ):
        raise ConfigError(f"{where} must be a non-empty list of strings")
    return tuple(v.strip() for v in value)


def _flag(entry: dict[str, Any], name: str, where: str) -> bool:
    value = entry.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {name} must be true or false")
    return value


def parse_grant(entry: Any, where: str, *, name: str) -> Grant:
    """A grant from a mapping with hosts, commands and destructive (all optional)."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with hosts, commands, destructive, "
                          "metrics")
    reject_unknown_fields(entry, GRANT_FIELDS, where)
    minutes = entry.get("approval_minutes", DEFAULT_APPROVAL_MINUTES)
    if (isinstance(minutes, bool) or not isinstance(minutes, int)
            or not 0 <= minutes <= MAX_APPROVAL_MINUTES):
        raise ConfigError(f"{where}: approval_minutes must be a whole number of minutes from 0 "
                          f"to {MAX_APPROVAL_MINUTES}")
    hosts = strings(entry.get("hosts"), f"{where}: hosts", ("*",))
    for pattern in hosts:
        problem = pattern_problem(pattern)
        if problem is not None:
            raise ConfigError(f"{where}: hosts: {problem}")
    return Grant(
        name=name,
        hosts=hosts,
        commands=strings(entry.get("commands"), f"{where}: commands", ("*",),
                         may_be_empty=True),
        destructive=_flag(entry, "destructive", where),
        metrics=_flag(entry, "metrics", where),
        audit=_flag(entry, "audit", where),
        approval_minutes=minutes,
        approvers=strings(entry.get("approvers"), f"{where}: approvers", ()),
    )


def capability_grants(cap_map: Mapping[str, Any], who: str) -> tuple[Grant, ...]:
    """Our capability's values in a WhoIs CapMap, as grants (malformed ones skipped, logged)."""
    values = cap_map.get(CAPABILITY) or ()
    if not isinstance(values, list | tuple):
        values = (values,)
    grants: list[Grant] = []
    for index, value in enumerate(values):
        name = f"tailnet grant {CAPABILITY} #{index + 1}"
        try:
            grants.append(parse_grant(value, name, name=name))
        except ConfigError as exc:
            log.warning("ignored %s for %s: %s", name, who, exc)
    return tuple(grants)
