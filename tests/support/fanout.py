"""Reading a run_on_hosts result in tests: every host's outcome, groups expanded."""

from __future__ import annotations

from typing import Any

from agent.fanout.hostlist import expand


def outcomes_by_host(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each host the result shows (in a group, or on its own) and its outcome: a group's
    fields for each of its listed hosts, with `host` set."""
    found: dict[str, dict[str, Any]] = {}
    for group in data.get("groups", []):
        for host in expand(group["hosts"]):
            found[host] = {**group, "host": host}
    for outcome in data.get("hosts", []):
        found[outcome["host"]] = outcome
    return found
