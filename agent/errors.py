"""The agent's shared exceptions: one class per cause, each message says what to do next.

A leaf module: it imports nothing from the agent, so every layer can raise and
catch these without pulling in another. Front ends turn them into tool errors,
HTTP answers or one line on stderr; none of them needs a traceback to explain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.access.policy import Decision


class ConfigError(Exception):
    """A setting, file or flag is missing or malformed; the message names it and the fix."""


class NoHostConfigured(ConfigError):
    def __init__(self) -> None:
        super().__init__(
            "no SSH host is configured: set REMOTE_HOST and REMOTE_USER (environment or .env), "
            "or point TAILNET_AGENT_INVENTORY at an inventory YAML; or try `tailnet-agent demo`"
        )


class NoDefaultHost(ConfigError):
    def __init__(self, choices: Iterable[str], *, caller: bool = False) -> None:
        if caller:  # a tailnet caller: the inventory is not theirs to change
            super().__init__(f"no host given, and no default host for you; hosts you can "
                             f"use: {_names(choices)}")
            return
        super().__init__(
            f"no host given and no default host set; choose one of: {_names(choices)} "
            "(or set `default:` in the inventory)"
        )


class UnknownHost(ConfigError):
    """A host name that is not configured (or that this caller may not see)."""

    def __init__(self, name: str, choices: Iterable[str]) -> None:
        super().__init__(f"unknown host {_shown(name)}; hosts you can use: {_names(choices)}")
        self.name = name


class PortInUse(ConfigError):
    """The HTTP port is taken; the message suggests --port 0."""


def _shown(value: str, limit: int = 80) -> str:
    """A caller's value as a message may quote it: a hostile 100 KB name is cut."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def _names(choices: Iterable[str]) -> str:
    return ", ".join(sorted(choices)) or "none"


def reject_unknown_fields(entry: Mapping[Any, Any], allowed: Iterable[str], where: str) -> None:
    """A typo in a YAML key must be an error, not a silently ignored setting."""
    unknown = set(entry) - set(allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


class CallRefused(Exception):
    """A tool call was refused before it ran; the message says why and what would help."""


class PolicyDenied(CallRefused):
    def __init__(self, message: str, decision: Decision) -> None:
        super().__init__(message)
        self.decision = decision


class NotConfirmed(CallRefused):
    """A destructive command that nobody confirmed (declined, timed out, or cannot be asked)."""


class LimitExceeded(CallRefused):
    """A rate or concurrency limit refused the call; retrying later can succeed."""


class RateLimited(LimitExceeded):
    pass


class HostBusy(LimitExceeded):
    pass


class AuditUnavailable(CallRefused):
    """The audit log cannot be written, so nothing runs."""


class PathRefused(CallRefused):
    """A path parameter leads (through a symlink on the host) outside its allowed roots."""


class NoCallerIdentity(CallRefused):
    """A tool call arrived with no caller to act for (fail closed)."""


class NotForHost(CallRefused):
    """The catalog binds the command to other hosts (its `hosts:` field)."""


class CallChanged(CallRefused):
    """The policy or the host changed between a call's preparation (and confirmation) and
    its run, so that it would now be decided otherwise: it does not run."""


class HostError(Exception):
    """Reaching or running on a host failed (SSH errors subclass this); `host` names it."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host


class ElevationRefused(HostError):
    """sudo on the host would not run a `become` command without a password (or at all)."""


class HostOffline(HostError):
    """The tailnet says the host is offline: answered at once, nothing is sent."""
