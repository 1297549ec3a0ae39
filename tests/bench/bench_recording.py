"""Recordings: what a minute of output costs on disk as an asciinema cast.

Commands that print steadily for SECONDS (a log line of 80 bytes every 100 ms, every
10 ms, and every 100 ms alternating stdout and stderr, the worst case for the stream
markers) run through the service on the real sshd, as any call does; the row is the cast's
size per minute of output, next to the output itself (the bytes the command printed).
The calls run at the same time, so the whole takes about SECONDS.

    python -m tests.bench.bench_recording [SECONDS]
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from agent.access.identity import local_user_identity
from agent.app import build_service
from agent.audit.casts import output
from agent.settings import load_settings
from tests.bench.bench_stats import Row
from tests.support.sshd import Sshd
from whitelist import load_catalog

GROUP = "recordings: asciinema cast per minute of steady output"
LINE = "2026-12-06T03:00:00Z worker-3 processed batch $i: 128 items in 42 ms, 0 errors"
# name: (label, pause between lines in seconds, every other line to stderr)
STEADY = {
    "cast_10_per_s": ("a log line (80 B) every 100 ms", 0.1, False),
    "cast_100_per_s": ("a log line (80 B) every 10 ms", 0.01, False),
    "cast_mixed": ("every 100 ms, stdout and stderr in turn", 0.1, True),
}


def catalog(seconds: float) -> str:
    commands = {}
    for name, (label, pause, mixed) in STEADY.items():
        lines = int(seconds / pause)
        echo = (f'if [ $((i % 2)) -eq 1 ]; then echo "{LINE}" >&2; else echo "{LINE}"; fi'
                if mixed else f'echo "{LINE}"')
        commands[name] = {
            "description": f"Print {label} for {seconds:g} s (benchmark).",
            "category": "Bench", "timeout": int(seconds * 3) + 60,
            "max_output": 100_000_000,
            "template": (f"i=0; while [ $i -lt {lines} ]; do {echo}; sleep {pause}; "
                         "i=$((i+1)); done"),
        }
    return json.dumps({"commands": commands})


async def recording_rows(sshd: Sshd, work: Path, seconds: float = 60.0) -> list[Row]:
    path = work / "recording-catalog.yaml"
    path.write_text(catalog(seconds))
    host = sshd.host_config("bench")
    settings = dataclasses.replace(load_settings({}, env_file=None), hosts={host.name: host},
                                   default_host=host.name, audit_log=work / "audit.jsonl")
    service = build_service(settings, mode="local", catalog=load_catalog([path]))
    identity = local_user_identity()
    try:
        results = await asyncio.gather(*(service.run(name, {}, host=None, identity=identity)
                                          for name in STEADY))
    finally:
        service.outputs.close()
        await service.close()
    rows = []
    for name, result in zip(STEADY, results, strict=True):
        cast = (settings.recordings_path / f"{result.audit_id}.cast").read_bytes()
        minutes = result.duration_ms / 60_000
        recorded = output(cast)  # what the command printed: the result shows only a part
        printed = len(recorded.stdout.encode()) + len(recorded.stderr.encode())
        events = cast.count(b'"o", ')
        rows.append(Row(
            name, f"ours: {STEADY[name][0]}", GROUP, value=round(len(cast) / 1024 / minutes, 1),
            unit="KiB/min", n=events,
            note=(f"{len(cast) / max(1, printed):.2f} x the {printed / 1024 / minutes:.1f} KiB/min "
                  f"printed; {events / minutes:.0f} output events/min over "
                  f"{result.duration_ms / 1000:.0f} s")))
    return rows


async def main(seconds: float) -> None:
    sshd = Sshd()
    sshd.start()
    work = Path(tempfile.mkdtemp(prefix="tnagent-bench-recording-"))
    try:
        for row in await recording_rows(sshd, work, seconds):
            print(f"{row.label}: {row.value} {row.unit} ({row.note})")
    finally:
        sshd.cleanup()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0))
