"""`tailnet-agent audit`: the audit log, one line (or one JSON object) per call;
`tailnet-agent audit verify`: its hash chain checked (agent.audit.verify); `tailnet-agent
audit show CALL_ID`: one call's record and its recorded output (`--cast FILE`: the recording).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agent.audit import casts
from agent.audit.chain import load_public_key
from agent.audit.reader import AuditFilter, find_call, parse_since, show
from agent.audit.verify import Unreadable, verify
from agent.settings import Settings


def _error(message: str) -> None:
    print(f"tailnet-agent audit: {message}", file=sys.stderr)


def _no_log(path: Path) -> int:
    _error(f"no audit log at {path} yet (nothing has run, or the agent writes elsewhere: "
           "--audit-log / TAILNET_AGENT_AUDIT_LOG)")
    return 1


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
        _error(str(exc))
        return 2
    if not path.exists():
        return _no_log(path)
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
        result = verify(settings.audit_path, key, shipped, settings.recordings_path)
    except Unreadable as exc:
        print(f"tailnet-agent audit verify: {exc}", file=sys.stderr)
        return 2
    for finding in result.findings:
        print(finding)
    for note in result.notes:
        print(f"note: {note}")
    print(result.summary())
    return 0 if result.ok else 1


def _terminal_safe(text: str) -> str:
    """Output as a terminal may print it: line ends and tabs as they are, every other
    control character (escape sequences a host printed) escaped."""
    return "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in text)


def run_audit_show(settings: Settings, call: str, *, cast_file: Path | None) -> int:
    """Print one call's audit record, then its recorded output; or write its cast."""
    path = settings.audit_path
    if not path.exists():
        return _no_log(path)
    found = find_call(path, call)
    if found is None:
        _error(f"no call {call[:40]!r} in {path} (nor in its rotated files); `tailnet-agent "
               "audit` lists the calls with their ids")
        return 1
    record = found.call.merged(chain=True)  # seq: where `audit verify` would look
    ref = record.get("cast")
    if cast_file is None:
        print(json.dumps(record, indent=1, ensure_ascii=True))
    directory = settings.recordings_path
    unchecked = not isinstance(ref, dict) and found.call.end is None
    if unchecked and casts.cast_path(directory, call).exists():
        # The agent stopped during the call: the recording so far, with no sha256 to check.
        ref = {"id": call, "sha256": None}
        _error(f"call {call} has no end record (the agent stopped during it), so its "
               "recording's sha256 was never recorded: what follows is shown unchecked")
    if not isinstance(ref, dict):
        why = f"it ran no command ({record.get('outcome')})"
        if unchecked:
            # A command's first second of output waits in memory for its end record.
            why = ("the agent stopped during it, before its output reached the recordings "
                   f"directory {directory}")
        if cast_file is not None:
            _error(f"call {call} has no recording: {why}")
            return 1
        print(f"(no recording: {why})")
        return 0
    try:
        data = casts.load(directory, ref)
    except casts.CastMissing as exc:
        removal = found.cast_removed
        if removal is not None:
            _error(f"the recording of call {call} was removed at {removal.get('time')} to "
                   "stay within the recordings budget; raise TAILNET_AGENT_RECORDINGS_BUDGET "
                   "to keep recordings longer")
        else:
            _error(f"{exc}, and the audit log records no removal: it was deleted outside the "
                   "agent, or the agent keeps recordings elsewhere (TAILNET_AGENT_RECORDINGS)")
        return 1
    except casts.CastUnavailable as exc:
        _error(str(exc))
        return 1
    if cast_file is not None:
        if str(cast_file) == "-":
            sys.stdout.buffer.write(data)
        else:
            cast_file.write_bytes(data)
            print(f"wrote the recording of call {call} to {cast_file} ({len(data)} bytes, "
                  f"sha256 {ref.get('sha256')}); play it with `asciinema play {cast_file}`",
                  file=sys.stderr)
        return 0
    recorded = casts.output(data)
    for name, text in (("stdout", recorded.stdout), ("stderr", recorded.stderr)):
        if text:
            print(f"--- {name} ---")
            print(_terminal_safe(text), end="" if text.endswith("\n") else "\n")
    checked = "unchecked" if ref.get("sha256") is None else "sha256 checked"
    print(f"--- recorded {recorded.duration:.3f} s, {len(data)} bytes, {checked}"
          + (f"; cut: {recorded.cut}" if recorded.cut else "") + " ---")
    return 0
