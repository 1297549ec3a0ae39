"""Big outputs and secrets, as an MCP client (the official SDK) sees them: a 50 MB output
comes back as a head, a tail and a handle, read to the last byte page by page with bounded
memory; planted secrets never reach the client or the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp import Client

from agent.hosts.inventory import HostConfig
from tests.support.agents import RunningAgent, agent_with_catalog
from tests.support.memory import peak_rss_bytes, reset_peak_rss
from tests.support.secrets_planted import (
    AWS_KEY_ID,
    GITHUB_TOKEN,
    URL_WITH_PASSWORD,
    key_body,
    private_key,
)

MiB = 1024 * 1024
SIZE = 50 * MiB
LINE = b"the quick brown fox jumps over the lazy dog 0123456789\n"
CATALOG = f"""
commands:
  big_output:
    description: Print 50 MiB of text.
    category: Test
    template: "yes '{LINE.decode().strip()}' | head -c {SIZE}"
    max_output: 60000000
    timeout: 120
  show_file:
    description: Print a file.
    category: Test
    template: "cat -- {{path}}"
    parameters:
      path: {{type: path, description: file, roots: ["/tmp"]}}
  show_file_raw:
    description: Print a file, secrets and all.
    category: Test
    template: "cat -- {{path}}"
    redact: false
    parameters:
      path: {{type: path, description: file, roots: ["/tmp"]}}
"""


@pytest.fixture
async def agent(ssh_host: HostConfig, tmp_path: Path) -> AsyncIterator[RunningAgent]:
    async with agent_with_catalog(ssh_host, tmp_path, CATALOG) as running:
        yield running


@pytest.fixture
def planted() -> Iterator[Path]:
    """A file the sshd user can read, with secrets on a few lines among many ordinary ones."""
    directory = Path(tempfile.mkdtemp(prefix="tnagent-secrets-"))
    directory.chmod(0o755)
    path = directory / "leaky.txt"
    filler = "".join(f"log line {n} all is well\n" for n in range(2000))
    path.write_text(f"{filler}{private_key()}aws_access_key_id = {AWS_KEY_ID}\n"
                    f"remote = {URL_WITH_PASSWORD}\ntoken: {GITHUB_TOKEN}\n{filler}")
    path.chmod(0o644)
    yield path
    shutil.rmtree(directory)


def secrets_in(text: str) -> list[str]:
    planted = [AWS_KEY_ID, "s3cr3t-Pa55", GITHUB_TOKEN, *key_body(private_key())]
    return [s for s in planted if s in text]


async def test_50_mb_are_shown_as_head_and_tail_and_paged_with_bounded_memory(
    agent: RunningAgent,
) -> None:
    expected = hashlib.sha256((LINE * (SIZE // len(LINE) + 1))[:SIZE]).hexdigest()
    async with Client(agent.url) as client:
        if not reset_peak_rss():
            pytest.skip("cannot reset the peak RSS counter (/proc/self/clear_refs)")
        before = peak_rss_bytes()
        started = time.monotonic()
        result = await client.call_tool("execute_command", {"command": "big_output"})
        ran = time.monotonic() - started
        data = result.structured_content
        assert not result.is_error and data is not None
        assert data["stdout_bytes"] == SIZE and not data["truncated"]
        assert len(data["stdout"]) < 11_000  # head 8000 + note + tail 2000
        handle = data["output_handle"]
        digest = hashlib.sha256()
        offset: int | None = 0
        pages = 0
        while offset is not None:
            page = await client.call_tool("read_output", {"handle": handle, "offset": offset,
                                                          "max_bytes": 262144})
            assert not page.is_error, page.content
            content = page.structured_content
            assert content is not None and content["total_bytes"] == SIZE
            digest.update(content["text"].encode())
            offset = content["next_offset"]
            pages += 1
        paged = time.monotonic() - started - ran
        growth = peak_rss_bytes() - before
    assert digest.hexdigest() == expected
    assert pages == SIZE // 262144 + 1  # pages end on whole lines, so one more
    # Client and server in this one process together held far less than the output.
    assert growth < 40 * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB"
    print(f"\n50 MiB: ran {ran:.1f} s, {pages} pages read in {paged:.1f} s, "
          f"peak RSS +{growth / MiB:.1f} MiB")
    # Someone else's handle, or a made-up one, reads nothing.
    async with Client(agent.url) as client:
        missing = await client.call_tool("read_output", {"handle": "out-nope"})
    assert missing.is_error and "Run the command again" in missing.content[0].text


async def test_planted_secrets_are_redacted_in_results_pages_and_the_audit_log(
    agent: RunningAgent, planted: Path,
) -> None:
    async with Client(agent.url) as client:
        small = await client.call_tool("execute_command", {
            "command": "show_file", "parameters": {"path": str(planted)}})
        data = small.structured_content
        assert data is not None and not small.is_error
        # The secrets are in the middle: the head and tail do not show them, the pages do.
        handle = data["output_handle"]
        pages: list[str] = []
        offset: int | None = 0
        while offset is not None:
            page = (await client.call_tool("read_output", {
                "handle": handle, "offset": offset, "max_bytes": 4096})).structured_content
            assert page is not None
            pages.append(page["text"])
            offset = page["next_offset"]
            if page["redacted"]:
                assert page["redacted"].get("AWS Access Key") == 1
        raw = await client.call_tool("execute_command", {
            "command": "show_file_raw", "parameters": {"path": str(planted)}})
        raw_pages = await client.call_tool("read_output", {
            "handle": raw.structured_content["output_handle"], "offset": 0,  # type: ignore[index]
            "max_bytes": 262144})
    text = "".join(pages)
    assert secrets_in(data["stdout"]) == [] and secrets_in(text) == []
    assert "[REDACTED: Private Key]" in text and "[REDACTED: GitHub Token]" in text
    assert "https://deploy:[REDACTED: Basic Auth Credentials]@git.example.com" in text
    # Turned off for that command: everything as it was.
    assert AWS_KEY_ID in raw_pages.structured_content["text"]  # type: ignore[index]
    assert secrets_in(agent.service.audit.path.read_text()) == []


async def test_a_short_output_with_a_secret_says_what_was_redacted(
    agent: RunningAgent, tmp_path: Path, planted: Path,
) -> None:
    short = planted.with_name("short.txt")
    short.write_text(f"{private_key()}key {AWS_KEY_ID}\n")
    short.chmod(0o644)
    async with Client(agent.url) as client:
        result = await client.call_tool("execute_command", {
            "command": "show_file", "parameters": {"path": str(short)}})
    data = result.structured_content
    assert data is not None and data["output_handle"] is None
    assert data["stdout"] == "[REDACTED: Private Key]\nkey [REDACTED: AWS Access Key]\n"
    assert data["redacted"] == {"Private Key": 1, "AWS Access Key": 1}
    records = [json.loads(line) for line in agent.service.audit.path.read_text().splitlines()]
    (start,) = [r for r in records if r["event"] == "start"
                and r["parameters"].get("path") == str(short)]
    (end,) = [r for r in records if r["event"] == "end" and r["call"] == start["call"]]
    assert end["stdout_head"].startswith("[REDACTED: Private Key]")
    assert end["redacted"] == {"Private Key": 1, "AWS Access Key": 1}
    assert secrets_in(json.dumps(records)) == []


async def test_guessed_handles_and_offsets_read_nothing(agent: RunningAgent) -> None:
    async with Client(agent.url) as client:
        real = (await client.call_tool("execute_command", {"command": "big_output"})
                ).structured_content
        assert real is not None
        gate = asyncio.Semaphore(20)

        async def guess(n: int) -> bool:
            handle = real["output_handle"][:-2] + f"{n % 100:02d}" if n % 2 else f"out-{n}"
            async with gate:
                result = await client.call_tool("read_output", {"handle": handle,
                                                                "offset": n * 7919})
            return result.is_error and "Run the command again" in result.content[0].text

        outcomes = await asyncio.gather(*(guess(n) for n in range(1, 1001)))
        # Even the right handle with an offset past the end says so, and the agent answers on.
        past = await client.call_tool("read_output", {"handle": real["output_handle"],
                                                      "offset": SIZE + 1})
        ping = await client.call_tool("ping", {})
    assert sum(outcomes) >= 990  # a guess can only hit by a 1-in-100 suffix, then its offset
    assert past.is_error and "outside the output" in past.content[0].text
    assert not ping.is_error
