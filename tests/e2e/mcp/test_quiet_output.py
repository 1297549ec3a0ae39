"""No raw warning reaches a person or a log, from each entry point run from the source
tree, in text and in JSON mode: `demo`, `serve --local` and `mcp --stdio`, each started,
asked to run a command over SSH (asyncssh and everything under it imported and used), and
stopped. The executable, `serve` on the tailnet and the image are checked the same way in
tests/e2e/build, tests/e2e/tailnet and tests/e2e/container.

With cryptography 51 (the lock's), importing asyncssh alone prints five
`CryptographyDeprecationWarning: DSA is deprecated` lines: these tests see them unless the
agent silences them at start (agent.logs.QUIET_WARNINGS).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from agent.hosts.inventory import HostConfig
from tests.support.output import assert_clean
from tests.support.waiting import wait_until_sync

MODES = ["text", "json"]


def host_env(host: HostConfig) -> dict[str, str]:
    return {
        "REMOTE_HOST": host.address,
        "REMOTE_USER": host.user,
        "REMOTE_SSH_PORT": str(host.port),
        "REMOTE_SSH_KEY_PATH": str(host.key_path),
        "REMOTE_SSH_KNOWN_HOSTS": str(host.known_hosts),
    }


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The tests' environment without settings of ours or a Python warnings option."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REMOTE_", "ANTHROPIC_", "TAILNET_AGENT_", "PYTHONWARNINGS"))}
    return {**env, "HOME": str(home), "TMPDIR": str(tmp_path),
            "PYTHONPATH": os.pathsep.join(sys.path), **extra}


@contextlib.contextmanager
def started(tmp_path: Path, args: list[str], env: dict[str, str]) -> Iterator[str]:
    """Run `tailnet-agent ARGS` with stdout and stderr in files; yield its MCP URL once it
    is ready; stop it with Ctrl-C (SIGINT) and wait for it to exit."""
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", *args,
                                 "--env-file", "/dev/null"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                cwd=tmp_path)
    try:
        def printed() -> str:
            text = out_path.read_text() + err_path.read_text()
            assert proc.poll() is None, text
            return text if "Ready." in text else ""

        text = wait_until_sync(printed, 60, "the agent printing Ready.", every=0.05)
        match = re.search(r"MCP endpoint: (http://127\.0\.0\.1:\d+/mcp)", text)
        assert match, text
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, out_path.read_text() + err_path.read_text()


def outputs(tmp_path: Path) -> tuple[str, str]:
    return (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()


async def run_a_command(url: str) -> None:
    async with Client(url) as client:
        result = await client.call_tool("check_memory", {})
        assert not result.is_error, result.content


@pytest.mark.parametrize("mode", MODES)
async def test_demo(tmp_path: Path, mode: str) -> None:
    env = clean_env(tmp_path)
    with started(tmp_path, ["demo", "--port", "0", "--log-format", mode], env) as url:
        await run_a_command(url)
    stdout, stderr = outputs(tmp_path)
    assert_clean(stdout, stderr, json_mode=mode == "json")


@pytest.mark.parametrize("mode", MODES)
async def test_serve_local(tmp_path: Path, mode: str, ssh_host: HostConfig) -> None:
    env = clean_env(tmp_path, **host_env(ssh_host))
    with started(tmp_path, ["serve", "--local", "--port", "0", "--log-format", mode],
                 env) as url:
        await run_a_command(url)
    stdout, stderr = outputs(tmp_path)
    assert_clean(stdout, stderr, json_mode=mode == "json")


@pytest.mark.parametrize("mode", MODES)
async def test_mcp_stdio(tmp_path: Path, mode: str, ssh_host: HostConfig) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "agent.cli", "mcp", "--stdio", "--env-file", "/dev/null",
              "--log-format", mode],
        env=clean_env(tmp_path, **host_env(ssh_host)),
    )
    errlog = tmp_path / "stderr"
    with errlog.open("w") as err:
        async with Client(stdio_client(params, errlog=err)) as client:  # stdout: MCP only
            result = await client.call_tool("check_memory", {})
            assert not result.is_error, result.content
    assert_clean("", errlog.read_text(), json_mode=mode == "json")
