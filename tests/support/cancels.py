"""Cancelled calls and what they leave behind (issue 19).

A cancelled call must return only once its remote tree is gone, its slot free and its
end record written; so whatever is still there when a cancel has returned is a leftover.
"""

from __future__ import annotations

from pathlib import Path

from agent.core.audit_records import read_records
from agent.core.service import AgentService


def busy_slots(service: AgentService) -> dict[str, int]:
    """The SSH channel slots held, by host (none once every call has ended)."""
    return {name: state.slots.busy for name, state in service.pool._hosts.items()
            if state.slots.busy}


def unended(audit: Path) -> list[str]:
    """Calls with a start record and no end record yet."""
    records = list(read_records(audit)) if audit.exists() else []
    ended = {r["call"] for r in records if r["event"] == "end"}
    return [r["call"] for r in records if r["event"] == "start" and r["call"] not in ended]
