"""Redaction holds whatever part of an output is read, however it arrived (real sshd, the
official MCP client): a page that starts inside a key, 8-byte pages, a token an SSH chunk
cut in two while progress notifications show the lines."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp import Client

from agent.hosts.inventory import HostConfig
from tests.support.agents import RunningAgent, agent_with_catalog
from tests.support.secret_corpus import Planted, corpus, leaks
from tests.support.secrets_planted import key_body, private_key

CATALOG = """
commands:
  show_file:
    description: Print a file.
    category: Test
    template: "cat -- {path}"
    parameters:
      path: {type: path, description: file, roots: ["/tmp"]}
  run_script:
    description: Run a test script.
    category: Test
    template: "sh -- {path}"
    timeout: 30
    parameters:
      path: {type: path, description: script, roots: ["/tmp"]}
"""
FILLER = "".join(f"log line {n:05d} all is well\n" for n in range(2000))  # 56 KB


@pytest.fixture
async def agent(ssh_host: HostConfig, tmp_path: Path) -> AsyncIterator[RunningAgent]:
    async with agent_with_catalog(ssh_host, tmp_path, CATALOG) as running:
        yield running


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory the sshd user can read."""
    directory = Path(tempfile.mkdtemp(prefix="tnagent-ingest-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def readable(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(0o644)
    return path


async def pages(client: Client, handle: str, start: int, stop: int, size: int) -> str:
    """Pages of `size` bytes from `start` until `stop`, stitched together."""
    text = []
    offset: int | None = start
    while offset is not None and offset < stop:
        page = (await client.call_tool("read_output", {
            "handle": handle, "offset": offset, "max_bytes": size})).structured_content
        assert page is not None
        text.append(page["text"])
        offset = page["next_offset"]
    return "".join(text)


async def test_a_page_starting_inside_a_key_or_8_byte_pages_show_none_of_it(
    agent: RunningAgent, shared: Path,
) -> None:
    pem = private_key()
    path = readable(shared, "key.txt", FILLER + pem + FILLER[:9000])
    begin = (FILLER + pem).index("-----BEGIN")
    async with Client(agent.url) as client:
        result = (await client.call_tool("execute_command", {
            "command": "show_file", "parameters": {"path": str(path)}})).structured_content
        assert result is not None
        handle = result["output_handle"]
        total = result["stdout_bytes"]
        shown = [result["stdout"]]
        for offset in (begin, begin + 1, begin + 11, begin + 40):
            page = (await client.call_tool("read_output", {
                "handle": handle, "offset": min(offset, total)})).structured_content
            assert page is not None
            shown.append(page["text"])
        shown.append(await pages(client, handle, begin - 64, begin + len(pem) + 64, 8))
    for text in shown:
        assert not [body for body in key_body(pem) if body[:8] in text]
    assert "[REDACTED: Private Key]" in shown[-1] or "[REDACTED: Private Key]" in shown[1]


@pytest.mark.parametrize("name", ["GitHub classic token", "Tailscale auth key",
                                  "Stripe live key (99 characters)"])
async def test_a_token_cut_by_an_ssh_chunk_is_redacted_live_and_in_the_result(
    agent: RunningAgent, shared: Path, name: str,
) -> None:
    (planted,) = [p for p in corpus() if p.name == name]
    secret = planted.first_secret
    half = len(secret) // 2
    # A long line (the live view cuts it at 1,000 characters and flushes it at 4,000) with
    # the token's first half, a pause (the channel sends what it has), then the rest; the
    # same on a short line.
    script = readable(shared, "split.sh", f"""\
printf '%s,{secret[:half]}' "$(head -c 4100 /dev/zero | tr '\\0' x)"
sleep 1
printf '{secret[half:]} and the rest\\n'
printf 'short line: {secret[:half]}'
sleep 1
printf '{secret[half:]} and the end\\n'
i=0; while [ $i -lt 10 ]; do echo tick-$i; i=$((i+1)); sleep 0.2; done
""")
    messages: list[str] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(agent.url) as client:
        result = await client.call_tool("execute_command", {
            "command": "run_script", "parameters": {"path": str(script)}},
            progress_callback=progress)
    data = result.structured_content
    assert data is not None and data["exit_status"] == 0
    assert any("tick-" in m for m in messages)  # progress was reported while it ran
    shown = "\n".join(messages)
    assert "x" * 990 in shown  # the long line, cut at 1,000 characters
    assert f"short line: [REDACTED: {_kind(planted)}] and the end" in shown
    for text in [*messages, data["stdout"]]:
        assert not leaks(planted, text), text[-300:]
    assert f"[REDACTED: {_kind(planted)}] and the rest" in data["stdout"]
    assert data["redacted"] == {_kind(planted): 2}


def _kind(planted: Planted) -> str:
    return {"GitHub classic token": "GitHub Token", "Tailscale auth key": "Tailscale Key",
            "Stripe live key (99 characters)": "Stripe Access Key"}[planted.name]
