"""Who may run what, where: the policy every tool call is decided by.

Rights come from three places, all turned into the same `Grant` (agent.access.grants):
1. the policy file's `rules` (YAML, in the style of the catalog);
2. Tailscale grants: the tailnet policy gives a caller our app capability, WhoIs
   carries its values, and they arrive decoded in `Identity.grants`;
3. the shipped default: tailnet users (not tagged nodes) may run read-only
   commands on every host. A policy file may turn it off with `default: none`.

Everything no grant covers is refused, and the refusal names the rule that
refused. The person at the machine (local mode, stdio, `--allow-local-operator`, the
agent's local socket) already holds the SSH keys, so they get everything; destructive
commands still need a confirmation, which the service asks for.

Reading `/metrics` is a right of its own (`metrics: true` on a rule or a tailnet
grant); the default grants it to nobody but the local operator. So is seeing every
call's audit record (`audit: true`): everyone sees their own calls; an auditor (and the
local operator) sees all of them, with their recordings and the turns shared from them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.errors import ConfigError, PolicyDenied, reject_unknown_fields
from whitelist import Command, yaml_problem

from .grants import GRANT_FIELDS, Grant, parse_grant, strings
from .identity import Identity

DEFAULT_RULE = "default: tailnet users may run read-only commands"
LOCAL_RULE = "local operator: the person at this machine"
DENY_RULE = "default deny"
TAGGED_RULE = "default deny: tagged nodes get nothing unless a rule names their tag"

_GROUP = re.compile(r"^group:[A-Za-z0-9][A-Za-z0-9._-]*$")
_TOP_FIELDS = {"groups", "default", "rules"}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # the rule that allowed, or the one that refused
    # The whole reason, for the audit log and the operator. Never the policy file's path:
    # the audit log is read back by the caller too (tailnet-agent://audit/recent).
    reason: str
    approval_minutes: int = 0  # the longest time-limited approval the rule allows
    approvers: tuple[str, ...] = ()  # two-person rule: who may approve (not the caller)
    # What a caller who is not the operator is told: no other rules.
    shown: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"allowed": self.allowed, "rule": self.rule,
                                "reason": self.reason}
        if self.approvers:
            data["approvers"] = list(self.approvers)
        return data

    def reason_for(self, identity: Identity) -> str:
        return self.reason if identity.is_operator or not self.shown else self.shown


@dataclass(frozen=True)
class Rule:
    grant: Grant
    who: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    groups: Mapping[str, frozenset[str]] | None = None
    default_read_only: bool = True
    source: str = "the shipped default policy"

    def _matches(self, selector: str, identity: Identity) -> bool:
        login = (identity.login or "").lower()
        if selector == "*":
            return True
        if selector == "autogroup:member":
            return bool(login) and not identity.tags
        if selector.startswith("tag:"):
            return selector in identity.tags
        if selector.startswith("group:"):
            members = (self.groups or {}).get(selector, frozenset())
            return bool(login) and login in members
        return bool(login) and login == selector.lower()

    def grants_for(self, identity: Identity) -> list[Grant]:
        if identity.is_operator:
            return [Grant(LOCAL_RULE, destructive=True, metrics=True, audit=True)]
        grants = [r.grant for r in self.rules if any(self._matches(w, identity) for w in r.who)]
        grants += identity.grants
        if self.default_read_only and identity.login and not identity.tags:
            grants.append(Grant(DEFAULT_RULE))
        return grants

    def decide(self, identity: Identity, command: Command, host: str,
               tags: Collection[str] = ()) -> Decision:
        """May `identity` run `command` on `host` (whose tailnet tags are `tags`)?"""
        grants = self.grants_for(identity)
        short_of_destructive: Grant | None = None
        for grant in grants:
            if not (grant.covers_host(host, tags) and grant.covers_command(command)):
                continue
            if command.destructive and not grant.destructive:
                short_of_destructive = short_of_destructive or grant
                continue
            return Decision(True, grant.name, f"granted by {grant.name!r}",
                            approval_minutes=grant.approval_minutes,
                            approvers=grant.approvers if command.destructive else ())
        who = identity.principal
        if short_of_destructive is not None:
            return Decision(
                False,
                short_of_destructive.name,
                f"rule {short_of_destructive.name!r} lets {who} run {command.name!r} on "
                f"{host!r} but not destructive commands; a rule with `destructive: true` "
                "is needed",
            )
        if not grants:
            rule = TAGGED_RULE if identity.tags and not identity.login else DENY_RULE
            return Decision(False, rule, f"nothing in the agent's policy grants {who} anything")
        names = ", ".join(repr(g.name) for g in grants)
        where = f" on host {host!r}" if self.covers(identity, host, tags) else ""
        return Decision(
            False,
            DENY_RULE,
            f"no rule of the agent's policy grants {who} {command.name!r}{where} "
            f"(rules for {who}: {names})",
            shown=f"no rule of the agent's policy grants {who} {command.name!r}{where}",
        )

    def decide_metrics(self, identity: Identity) -> Decision:
        """May this caller read the agent's metrics? Only a grant with `metrics: true` says
        yes (the local operator's included); the default policy grants it nobody else."""
        for grant in self.grants_for(identity):
            if grant.metrics:
                return Decision(True, grant.name, f"granted by {grant.name!r}")
        return Decision(
            False,
            DENY_RULE,
            f"no rule of the agent's policy grants {identity.principal} the metrics; a rule "
            "or tailnet grant with `metrics: true` is needed",
        )

    def audits(self, identity: Identity) -> bool:
        """May this caller see every call's audit record, not only their own? Only a grant
        with `audit: true` says yes (the local operator's included)."""
        return any(grant.audit for grant in self.grants_for(identity))

    def check(self, identity: Identity, command: Command, host: str,
              tags: Collection[str] = ()) -> Decision:
        """`decide`, raising PolicyDenied with a message naming the rule when refused."""
        decision = self.decide(identity, command, host, tags)
        if not decision.allowed:
            # A caller is told the host's name only if a grant of theirs covers it: one who
            # may use no host is answered alike for a real host and a made-up one.
            where = f" on host {host!r}" if self.covers(identity, host, tags) else ""
            raise PolicyDenied(
                f"refused by policy: {identity.principal} may not run {command.name!r}{where}: "
                f"{decision.reason_for(identity)} [rule: {decision.rule}]. Ask the agent's "
                "operator for a grant.",
                decision,
            )
        return decision

    def may_approve(self, approver: Identity, requester: Identity,
                    selectors: Iterable[str]) -> bool:
        """Two-person rule: `approver` matches a selector and is not the one who asked."""
        if not approver.login or approver.key == requester.key or (
                requester.login and approver.login.lower() == requester.login.lower()):
            return False
        return any(self._matches(selector, approver) for selector in selectors)

    def visible(self, identity: Identity, command: Command) -> bool:
        """May this caller run `command` on some host? (What list_commands shows them.)"""
        return any(g.allows(command) for g in self.grants_for(identity))

    def covers(self, identity: Identity, host: str, tags: Collection[str] = ()) -> bool:
        """Whether some grant of this caller names `host` (a grant of no commands names no
        host): only then may an answer to them name it."""
        return any(g.commands and g.covers_host(host, tags) for g in self.grants_for(identity))

    def hosts_for(self, identity: Identity, hosts: Iterable[str],
                  tags: Callable[[str], Collection[str]] = lambda _: ()) -> list[str]:
        """The hosts some grant of this caller covers (`tags` gives a host's tailnet tags).
        A grant of no commands (`commands: []`, metrics only) shows no host."""
        return [h for h in hosts if self.covers(identity, h, tags(h))]


def parse_policy(data: Any, source: str) -> Policy:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"policy {source}: expected a mapping with groups, default, rules")
    reject_unknown_fields(data, _TOP_FIELDS, f"policy {source}")
    groups: dict[str, frozenset[str]] = {}
    for group, members in (data.get("groups") or {}).items():
        if not isinstance(group, str) or not _GROUP.match(group):
            raise ConfigError(f"policy {source}: group names look like group:ops, got {group!r}")
        names = strings(members, f"policy {source}: {group}", ())
        groups[group] = frozenset(n.lower() for n in names)
    default = data.get("default", "read-only")
    if default not in ("read-only", "none"):
        raise ConfigError(f"policy {source}: default must be read-only or none, got {default!r}")
    rules: list[Rule] = []
    seen: set[str] = set()
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        raise ConfigError(f"policy {source}: rules must be a list")
    for index, entry in enumerate(raw_rules):
        where = f"policy {source}, rules[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with name, who, hosts, commands")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: `name` is required (refusals quote it)")
        if name in seen:
            raise ConfigError(f"{where}: rule name {name!r} is used twice")
        seen.add(name)
        who = strings(entry.get("who"), f"{where} ({name}): who", ())
        approvers = strings(entry.get("approvers"), f"{where} ({name}): approvers", ())
        for selector in (*who, *approvers):
            if selector.startswith("group:") and selector not in groups:
                raise ConfigError(f"{where} ({name}): {selector} is not defined under groups")
        reject_unknown_fields(entry, {"name", "who", *GRANT_FIELDS}, f"{where} ({name})")
        grant = parse_grant({k: v for k, v in entry.items() if k not in ("name", "who")},
                            f"{where} ({name})", name=name)
        rules.append(Rule(grant=grant, who=who))
    return Policy(tuple(rules), groups, default == "read-only", source=f"policy {source}")


def load_policy(path: Path | None) -> Policy:
    """The policy file at `path`, or the shipped default when there is none."""
    if path is None:
        return Policy()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"cannot read policy {path}: {exc.strerror}; check --policy / TAILNET_AGENT_POLICY"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"policy {path} is not valid YAML: {yaml_problem(exc)}; fix the "
                          "syntax") from None
    return parse_policy(data, str(path))

