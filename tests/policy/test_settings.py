"""The policy, audit and limit settings, from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_settings


def test_defaults_and_environment_names() -> None:
    default = load_settings({}, env_file=None)
    assert default.policy_file is None and default.audit_log is None
    assert (default.rate_per_minute, default.rate_burst, default.host_concurrency) == (120, 60, 32)
    settings = load_settings({
        "TAILNET_AGENT_POLICY": "/etc/tailnet-agent/policy.yaml",
        "TAILNET_AGENT_AUDIT_LOG": "/var/log/tailnet-agent/audit.jsonl",
        "TAILNET_AGENT_AUDIT_MAX_BYTES": "200000",
        "TAILNET_AGENT_AUDIT_BACKUPS": "3",
        "TAILNET_AGENT_RATE_PER_MINUTE": "30",
        "TAILNET_AGENT_RATE_BURST": "5",
        "TAILNET_AGENT_HOST_CONCURRENCY": "4",
        "ANTHROPIC_TIMEOUT": "45",
        "ANTHROPIC_API_KEY": "sk-ant-secret-value",
    }, env_file=None)
    assert settings.policy_file == Path("/etc/tailnet-agent/policy.yaml")
    assert settings.audit_log == Path("/var/log/tailnet-agent/audit.jsonl")
    assert (settings.audit_max_bytes, settings.audit_backups) == (200000, 3)
    assert (settings.rate_per_minute, settings.rate_burst, settings.host_concurrency) == (30, 5, 4)
    assert settings.anthropic_timeout == 45.0
    assert settings.secret_values() == ["sk-ant-secret-value"]


@pytest.mark.parametrize(("name", "value"), [
    ("TAILNET_AGENT_RATE_PER_MINUTE", "0"), ("TAILNET_AGENT_RATE_BURST", "many"),
    ("TAILNET_AGENT_HOST_CONCURRENCY", "-1"), ("TAILNET_AGENT_AUDIT_MAX_BYTES", "10"),
    ("ANTHROPIC_TIMEOUT", "0"),
])
def test_bad_values_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value}, env_file=None)
