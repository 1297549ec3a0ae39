"""`tailnet-agent audit`: the audit log, one line (or one JSON object) per call;
`tailnet-agent audit verify`: its hash chain checked (agent.core.audit_verify)."""

from __future__ import annotations

import sys
from pathlib import Path

from agent.core.audit_chain import load_public_key
from agent.core.audit_records import AuditFilter, parse_since, show
from agent.core.audit_verify import Unreadable, verify
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


def run_verify(settings: Settings, *, public_key: Path | None, shipped: Path | None = None
               ) -> int:
    """0: every link intact; 1: a finding (one line each); 2: the log or key unreadable."""
    key = None
    if public_key is not None:
        try:
            key = load_public_key(public_key)
        except OSError as exc:
            print(f"tailnet-agent audit verify: cannot read --public-key {public_key}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"tailnet-agent audit verify: --public-key: {exc} (give the .pub file of "
                  "the signing key)", file=sys.stderr)
            return 2
    try:
        result = verify(settings.audit_path, key, shipped)
    except Unreadable as exc:
        print(f"tailnet-agent audit verify: {exc}", file=sys.stderr)
        return 2
    for finding in result.findings:
        print(finding)
    for note in result.notes:
        print(f"note: {note}")
    print(result.summary())
    return 0 if result.ok else 1
