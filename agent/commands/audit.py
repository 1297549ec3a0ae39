"""`tailnet-agent audit`: the audit log, one line (or one JSON object) per call."""

from __future__ import annotations

import sys

from agent.core.audit_records import AuditFilter, parse_since, show
from agent.settings import Settings


def run_audit(
    settings: Settings,
    *,
    since: str | None,
    identity: str | None,
    host: str | None,
    command: str | None,
    as_json: bool,
) -> int:
    path = settings.audit_path
    try:
        since_time = parse_since(since) if since else None
    except ValueError as exc:
        print(f"tailnet-agent audit: {exc}", file=sys.stderr)
        return 2
    if not path.exists():
        print(f"tailnet-agent audit: no audit log at {path} yet (nothing has run, or the "
              "agent writes elsewhere: --audit-log / TAILNET_AGENT_AUDIT_LOG)", file=sys.stderr)
        return 1
    flt = AuditFilter(since=since_time, identity=identity, host=host, command=command)
    for line in show(path, flt, as_json=as_json):
        print(line)
    return 0
