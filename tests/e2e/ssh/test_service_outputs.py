"""What a command's output costs, through the service on the real sshd: the disk budget holds
for running and kept outputs together, pages are charged and recorded like calls, and
secrets passed as parameters stay out of the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from pathlib import Path

import pytest

from agent.access.identity import Identity
from agent.app import build_service
from agent.errors import RateLimited
from agent.hosts.inventory import HostConfig
from agent.settings import load_settings
from tests.support.secret_corpus import corpus
from tests.support.services import ServiceFactory
from whitelist import load_catalog

ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")
MB = 1_000_000
CATALOG = """
commands:
  eighty_mb:
    description: Print 80 MB.
    category: Test
    template: "yes 'a line of ordinary output, nothing secret in it at all' | head -c 80000000"
    max_output: 100000000
    timeout: 300
  many_lines:
    description: Print 200 KB.
    category: Test
    template: "seq 1 30000"
  echo_word:
    description: Print a word.
    category: Test
    template: "echo {word}"
    parameters:
      word: {type: string, description: a word, pattern: "[A-Za-z0-9_-]+", max_length: 200}
"""

def spooled_on_disk(directory: Path) -> int:
    """Bytes in this process's open files under `directory` (unlinked spool files too),
    measured from the outside: /proc, not the budget's own count."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(directory)):
                total += os.stat(f"/proc/self/fd/{fd}").st_size
    return total


async def test_eight_concurrent_80_mb_outputs_stay_within_the_disk_setting(
    make: ServiceFactory, tmp_path: Path,
) -> None:
    spool_dir = tmp_path / "spools"
    spool_dir.mkdir()
    limit = 300 * MB
    service = make(output_dir=spool_dir, output_disk=limit)
    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, spooled_on_disk(spool_dir))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        results = await asyncio.gather(*(service.run("eighty_mb", {}, host=None, identity=ALICE)
                                         for _ in range(8)))
    finally:
        done.set()
        await sampler
    print(f"\n8 x 80 MB with TAILNET_AGENT_OUTPUT_DISK={limit}: peak on disk {peak / MB:.0f} MB,"
          f" budget's own peak {service.outputs.budget.peak / MB:.0f} MB")
    assert peak <= limit and service.outputs.budget.peak <= limit
    cut = [r for r in results if "TAILNET_AGENT_OUTPUT_DISK" in r.stdout]
    assert cut and all(r.truncated for r in cut)
    # What is kept is what the budget counts; dropping it gives everything back.
    assert service.outputs.budget.used == service.outputs.bytes_kept
    service.outputs.close()
    assert service.outputs.budget.used == 0 and spooled_on_disk(spool_dir) == 0


async def test_pages_take_a_rate_token_and_are_recorded_once_a_minute_per_handle(
    make: ServiceFactory, tmp_path: Path,
) -> None:
    service = make(rate_burst=6, rate_per_minute=1)
    result = await service.run("many_lines", {}, host=None, identity=ALICE)
    handle = result.output_handle
    assert handle is not None
    for offset in range(0, 4000, 1000):  # 4 pages: with the run, 5 of the 6 tokens
        await service.read_output(ALICE, handle, offset=offset, max_bytes=100)
    with pytest.raises(RateLimited):
        for _ in range(2):
            await service.read_output(ALICE, handle, offset=0, max_bytes=100)
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    reads = [r for r in records if r.get("tool") == "read_output"]
    ends = {r["call"]: r for r in records if r["event"] == "end"}
    # One record (start and end) for this handle's reads in this minute, one for the refusal.
    assert len(reads) == 2, reads
    assert reads[0]["command"] == "many_lines" and reads[0]["parameters"]["handle"] == handle
    assert ends[reads[0]["call"]]["outcome"] == "read"
    assert ends[reads[1]["call"]]["outcome"] == "limited"


async def test_a_tailscale_key_passed_as_a_parameter_is_not_in_the_audit_log(
    make: ServiceFactory, tmp_path: Path,
) -> None:
    service = make()
    (planted,) = [p for p in corpus() if p.name == "Tailscale auth key"]
    result = await service.run("echo_word", {"word": planted.text}, host=None, identity=ALICE)
    assert result.stdout == "[REDACTED: Tailscale Key]\n"
    audit = (tmp_path / "audit.jsonl").read_text()
    assert planted.text[12:] not in audit and planted.text[-20:] not in audit
    start = next(json.loads(line) for line in audit.splitlines() if '"start"' in line)
    assert start["parameters"] == {"word": "[REDACTED: Tailscale Key]"}
    assert start["rendered"] == "echo [REDACTED: Tailscale Key]"


async def test_a_command_shown_unredacted_keeps_its_output_but_not_in_the_audit_log(
    make: ServiceFactory, tmp_path: Path, ssh_host: HostConfig,
) -> None:
    path = tmp_path / "raw.yaml"
    (planted,) = [p for p in corpus() if p.name == "GitHub classic token"]
    path.write_text(f"""
commands:
  raw_token:
    description: Print a token, unredacted.
    category: Test
    template: "echo {planted.text}"
    redact: false
""")
    settings = dataclasses.replace(
        load_settings({}, env_file=None), hosts={ssh_host.name: ssh_host},
        default_host=ssh_host.name, audit_log=tmp_path / "audit.jsonl")
    service = build_service(settings, mode="tailnet", catalog=load_catalog([path]))
    try:
        result = await service.run("raw_token", {}, host=None, identity=ALICE)
    finally:
        await service.pool.close()
    assert result.stdout == planted.text + "\n" and result.redacted == {}
    audit = (tmp_path / "audit.jsonl").read_text()
    assert planted.text[4:20] not in audit and "[REDACTED: GitHub Token]" in audit
