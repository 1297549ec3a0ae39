"""The policy on its own: rules, groups, tags, the shipped default, tailnet grants."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agent.access.grants import CAPABILITY, capability_grants
from agent.access.identity import Identity
from agent.access.policy import (
    DEFAULT_RULE,
    DENY_RULE,
    LOCAL_RULE,
    TAGGED_RULE,
    Policy,
    load_policy,
    parse_policy,
)
from agent.errors import ConfigError, PolicyDenied
from tailscale_userspace import WhoIs
from whitelist import Command, load_catalog

CATALOG = load_catalog()
DISK = CATALOG.get("disk_usage")
REBOOT = dataclasses.replace(CATALOG.get("hostname"), name="reboot", category="Power",
                             destructive=True)
ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")
BOB = Identity(login="bob@example.com", node="phone.tailnet.test")
CI = Identity(login=None, node="ci.tailnet.test", tags=("tag:ci",))
LOCAL = Identity(login="me", node="here", source="local")

POLICY = """
groups:
  group:ops: [alice@example.com]
rules:
  - name: ops-admin
    who: [group:ops]
    hosts: ["web-*"]
    commands: ["*"]
    destructive: true
  - name: ci-disk
    who: [tag:ci]
    commands: ["category:Disk"]
"""


def policy(text: str = POLICY) -> Policy:
    import yaml

    return parse_policy(yaml.safe_load(text), "test.yaml")


def test_the_shipped_default_gives_tailnet_users_read_only_commands_everywhere() -> None:
    default = Policy()
    decision = default.decide(BOB, DISK, "any-host")
    assert decision.allowed and decision.rule == DEFAULT_RULE
    refused = default.decide(BOB, REBOOT, "any-host")
    assert not refused.allowed and refused.rule == DEFAULT_RULE
    assert "not destructive commands" in refused.reason


def test_a_tagged_node_gets_nothing_by_default() -> None:
    decision = Policy().decide(CI, DISK, "web-1")
    assert not decision.allowed
    assert decision.rule == TAGGED_RULE
    assert not Policy().visible(CI, DISK)


def test_an_identity_without_a_grant_is_refused_with_the_rule_named() -> None:
    strict = policy(POLICY + "default: none\n")
    with pytest.raises(PolicyDenied) as refused:
        strict.check(BOB, DISK, "web-1")
    assert refused.value.decision.rule == DENY_RULE
    assert "[rule: default deny]" in str(refused.value)
    assert "bob@example.com" in str(refused.value)


def test_rules_match_groups_hosts_and_categories() -> None:
    p = policy()
    assert p.decide(ALICE, REBOOT, "web-1").rule == "ops-admin"
    # Outside the rule's hosts alice falls back to the default: read-only only.
    outside = p.decide(ALICE, REBOOT, "db-1")
    assert not outside.allowed and outside.rule == DEFAULT_RULE
    assert p.decide(ALICE, DISK, "db-1").rule == DEFAULT_RULE
    assert p.decide(CI, DISK, "db-1").rule == "ci-disk"
    hostname = CATALOG.get("hostname")
    refused = p.decide(CI, hostname, "db-1")
    assert not refused.allowed and refused.rule == DENY_RULE and "ci-disk" in refused.reason


def test_a_destructive_command_needs_a_rule_that_says_destructive() -> None:
    p = policy(POLICY.replace("destructive: true", "destructive: false"))
    decision = p.decide(ALICE, REBOOT, "web-1")
    assert not decision.allowed and decision.rule == "ops-admin"
    assert "destructive: true" in decision.reason
    assert not p.visible(ALICE, REBOOT)


def test_local_callers_hold_the_keys_and_get_everything() -> None:
    strict = policy("default: none\n")
    assert strict.decide(LOCAL, REBOOT, "anything").rule == LOCAL_RULE
    operator = dataclasses.replace(LOCAL, source="local-operator")
    assert strict.decide(operator, REBOOT, "anything").allowed


def test_a_tailnet_grant_in_the_whois_capmap_is_honoured() -> None:
    # A WhoIs answer as tailscaled returns it for a caller with an app grant
    # (recorded shape: CapMap maps the capability to a list of JSON values).
    answer = {
        "Node": {"Name": "laptop.tailnet.test.", "Addresses": ["100.64.0.2/32"], "Tags": None},
        "UserProfile": {"LoginName": "carol@example.com", "DisplayName": "Carol"},
        "CapMap": {CAPABILITY: [{"hosts": ["db-*"], "commands": ["reboot"],
                                 "destructive": True}],
                   "other.example/cap/x": [{"a": 1}]},
    }
    who = WhoIs.from_localapi(answer)
    carol = Identity(login=who.login_name, node=who.node_name,
                     grants=capability_grants(who.cap_map, "carol"))
    strict = policy("default: none\n")
    decision = strict.decide(carol, REBOOT, "db-1")
    assert decision.allowed and decision.rule.startswith(f"tailnet grant {CAPABILITY}")
    assert not strict.decide(carol, REBOOT, "web-1").allowed
    assert not strict.decide(carol, DISK, "db-1").allowed


def test_a_malformed_tailnet_grant_grants_nothing(caplog: pytest.LogCaptureFixture) -> None:
    grants = capability_grants({CAPABILITY: [{"hosts": 5}, "text", [1], {"hostz": ["*"]}]},
                               "carol")
    assert grants == ()
    assert caplog.text.count("ignored tailnet grant") == 4
    carol = Identity(login="carol", node="n", grants=grants)
    assert not policy("default: none\n").visible(carol, DISK)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("rules: [{who: [bob]}]", "`name` is required"),
        ("rules: [{name: a, who: [group:nope]}]", "not defined under groups"),
        ("rules: [{name: a, who: [bob], destructive: yes-please}]", "true or false"),
        ("rules: [{name: a, who: [bob], commandz: [x]}]", "unknown field"),
        ("rules: [{name: a, who: []}]", "non-empty list"),
        ("default: everything", "read-only or none"),
        ("groups: {ops: [a]}", "group:ops"),
        ("allow: all", "unknown field"),
        ("- a list", "expected a mapping"),
    ],
)
def test_malformed_policies_are_refused_with_what_to_fix(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        policy(text)


def test_load_policy_from_a_file_and_say_what_is_wrong(tmp_path: Path) -> None:
    file = tmp_path / "policy.yaml"
    file.write_text(POLICY)
    assert load_policy(file).decide(ALICE, REBOOT, "web-2").rule == "ops-admin"
    with pytest.raises(ConfigError, match="cannot read policy"):
        load_policy(tmp_path / "missing.yaml")
    file.write_text("rules: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_policy(file)


def test_visible_commands_are_what_list_commands_shows() -> None:
    commands: list[Command] = [*CATALOG, REBOOT]
    p = policy()
    assert {c.name for c in commands if p.visible(CI, c)} == {
        c.name for c in CATALOG if c.category == "Disk"}
    assert REBOOT in [c for c in commands if p.visible(ALICE, c)]
    assert REBOOT not in [c for c in commands if p.visible(BOB, c)]


METRICS_POLICY = """
rules:
  - name: prometheus
    who: [tag:monitoring]
    commands: []
    metrics: true
"""
MONITOR = Identity(login=None, node="prom.tailnet.test", tags=("tag:monitoring",))


def test_the_metrics_are_closed_by_default_and_open_to_the_local_operator() -> None:
    default = Policy()
    for caller in (BOB, CI, MONITOR):
        decision = default.decide_metrics(caller)
        assert not decision.allowed and decision.rule == DENY_RULE
        assert "metrics: true" in decision.reason
    assert default.decide_metrics(LOCAL).allowed
    assert default.decide_metrics(dataclasses.replace(LOCAL, source="local-operator")).allowed


def test_a_metrics_only_rule_grants_no_command_and_shows_no_host() -> None:
    p = policy(METRICS_POLICY)
    assert p.decide_metrics(MONITOR).rule == "prometheus"
    assert not [c for c in CATALOG if p.visible(MONITOR, c)]
    assert p.hosts_for(MONITOR, ["web-1", "db-1"]) == []
    assert not p.decide(MONITOR, DISK, "web-1").allowed
    # A user keeps the default's commands, and gets no metrics from it.
    assert p.decide(BOB, DISK, "web-1").allowed and not p.decide_metrics(BOB).allowed


def test_a_tailnet_grant_can_give_the_metrics() -> None:
    grants = capability_grants({CAPABILITY: [{"commands": [], "metrics": True}]}, "prom")
    prom = dataclasses.replace(MONITOR, grants=grants)
    assert Policy().decide_metrics(prom).allowed
    assert not Policy().visible(prom, DISK)


@pytest.mark.parametrize(("text", "complaint"), [
    ("rules: [{name: a, who: [bob], metrics: sometimes}]", "metrics must be true or false"),
    ("rules: [{name: a, who: [bob], hosts: []}]", "non-empty list"),
])
def test_malformed_metrics_rules_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        policy(text)


def test_rules_and_grants_may_name_hosts_by_tailnet_tag() -> None:
    tagged = parse_policy({"default": "none", "rules": [
        {"name": "db-team", "who": ["alice@example.com"], "hosts": ["tag:db", "bastion"]},
    ]}, "test")
    assert tagged.decide(ALICE, DISK, "pg-7", ("tag:db", "tag:eu")).allowed
    assert tagged.decide(ALICE, DISK, "bastion").allowed
    refused = tagged.decide(ALICE, DISK, "web-1", ("tag:web",))
    assert not refused.allowed and refused.rule == DENY_RULE
    tags = {"pg-7": ("tag:db",), "web-1": ("tag:web",)}
    assert tagged.hosts_for(ALICE, ["pg-7", "web-1", "bastion"], lambda h: tags.get(h, ())) \
        == ["pg-7", "bastion"]
    with pytest.raises(ConfigError, match="is not a tag"):
        parse_policy({"rules": [{"name": "x", "who": ["*"], "hosts": ["tag:"]}]}, "test")
    grants = capability_grants({CAPABILITY: [{"hosts": ["tag:db"]}]}, "alice")
    assert grants[0].covers_host("pg-7", ("tag:db",)) and not grants[0].covers_host("pg-7")
