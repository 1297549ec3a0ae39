"""Recordings at volume, across the size where a cast stops fitting in its audit record.

2,000 calls through the real service (its Runner writes each host's answer into the call's
output as SSH would, tests/support/recording.py): outputs of 0 to 2,500 bytes, multi-byte
UTF-8, a planted secret the redactor knows and one of the agent's own secrets, which only
the audit log hides. Every cast reads back (through the one read path, casts.load) as the redacted
output, a small one from its end record and a large one from its file, `audit verify`
vouches for all of them, and no secret is in the log or the recordings.
"""

from __future__ import annotations

from pathlib import Path

from agent.audit.casts import load, output
from agent.audit.reader import read_calls
from agent.audit.recorder import INLINE_MAX
from agent.audit.verify import verify
from agent.output.redact import Redactor
from tests.support.recording import ALICE, fleet_service
from tests.support.secrets_planted import AWS_KEY_ID

# The agent's own secret, in no format the redactor knows: only the audit log hides it.
API_KEY = "correct-horse-battery-staple-4711"
NAMES = [f"web-{i:03d}" for i in range(200)]


def answer(host: str) -> tuple[str, str, int]:
    n = int(host[-3:])
    body = ("é✓ab" * 700)[: (n * 37) % 2500]  # 0 to 2,500 characters, around INLINE_MAX
    if n % 17 == 0:
        body += f"\nkey {AWS_KEY_ID}\n"
    if n % 23 == 0:
        body += f"\nthe agent's key {API_KEY}\n"
    return body, "warn\n" if n % 5 == 0 else "", n % 3


async def test_two_thousand_recordings_around_the_inline_size(tmp_path: Path) -> None:
    service = fleet_service(tmp_path, NAMES, answer, anthropic_api_key=API_KEY,
                            rate_burst=100_000)
    for _ in range(10):
        await service.run_on_hosts("uptime", {}, ["all"], identity=ALICE)
    calls = [c.merged() for c in read_calls(service.audit.path) if c.end is not None]
    refs = [c["cast"] for c in calls if isinstance(c.get("cast"), dict)]
    assert len(refs) == 2_000
    inline = [r for r in refs if "inline" in r]
    files = {p.stem for p in service.casts.directory.iterdir()}
    assert 300 < len(inline) < 1_700 and len(files) == 2_000 - len(inline)
    assert all(r["bytes"] <= INLINE_MAX for r in inline)
    redactor = Redactor()
    assert redactor.redact(API_KEY)[0] == API_KEY
    by_call = {c["call"]: c for c in calls}
    for ref in refs:
        host = str(by_call[ref["id"]]["host"])
        stdout, stderr, _ = answer(host)
        shown = output(load(service.casts.directory, ref))
        assert shown.stdout == redactor.redact(stdout)[0].replace("\r\n", "\n")
        assert shown.stderr == stderr
        if API_KEY in stdout:  # the log would hide it: never inline, its file keeps it
            assert "inline" not in ref and ref["id"] in files
    log = service.audit.path.read_text()
    assert API_KEY not in log and AWS_KEY_ID not in log
    assert not any(AWS_KEY_ID.encode() in p.read_bytes()
                   for p in service.casts.directory.iterdir())
    result = verify(service.audit.path, recordings=service.casts.directory)
    assert result.ok, result.findings[:3]
    assert any("2000 recording(s) match" in note for note in result.notes), result.notes
