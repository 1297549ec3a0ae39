"""Joining the tailnet goes wrong, as it does for new users: a control URL nothing answers,
an auth key the control server refuses. `serve` and `trust --tailnet` end with one line that
says what to check, a non-zero exit, no traceback, and no tailscaled left behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.output import assert_clean, assert_json_lines, assert_no_warning
from tests.support.tailnet import TEST_TAILSCALED_ENV, TailnetBinaries, TestTailnet


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_agent(tmp_path: Path, tailscaled: Path, *args: str,
              env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "tmp"
    runtime.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args, "--env-file", "/dev/null"],
        env={**os.environ, **TEST_TAILSCALED_ENV, "TMPDIR": str(runtime),
             "TAILSCALED": str(tailscaled), "TAILNET_AGENT_JOIN_TIMEOUT": "6",
             "PYTHONPATH": os.pathsep.join(sys.path), **env},
        capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )


def assert_one_line_and_clean(result: subprocess.CompletedProcess[str], tmp_path: Path,
                              *phrases: str) -> str:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 1, (result.stdout, result.stderr)
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    for phrase in phrases:
        assert phrase in last, (phrase, last)
    # tailscaled was stopped and its private runtime directory removed.
    assert not list((tmp_path / "tmp").glob("tsu-*"))
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "tmp")], capture_output=True)
    assert leftover.returncode == 1, leftover.stdout
    return last


def test_serve_with_a_control_url_nobody_answers(tmp_path: Path,
                                                 tailnet_binaries: TailnetBinaries) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = run_agent(tmp_path, tailnet_binaries.tailscaled, "serve", "--port", "0",
                       "--control-url", url, "--authkey", "hs-not-a-real-key",
                       env={"REMOTE_HOST": "web1", "REMOTE_USER": "ops"})
    last = assert_one_line_and_clean(result, tmp_path, "did not reach Running within 6s",
                                     url, "check the control URL", "auth key")
    assert "last log lines" not in last  # the log tail is for -v, not for this line
    assert_no_warning(result.stdout + result.stderr)
    verbose = run_agent(tmp_path, tailnet_binaries.tailscaled, "serve", "--port", "0", "-v",
                        "--control-url", url, "--authkey", "hs-not-a-real-key",
                        env={"REMOTE_HOST": "web1", "REMOTE_USER": "ops"})
    assert verbose.returncode == 1 and "Traceback" not in verbose.stderr
    assert_no_warning(verbose.stdout + verbose.stderr)


def test_serve_that_cannot_join_logs_json_only(tmp_path: Path,
                                               tailnet_binaries: TailnetBinaries) -> None:
    """A log shipper reads `serve --log-format json` failing to join: every line is a JSON
    object, the last one the error with its next step; nothing else, no warning."""
    url = f"http://127.0.0.1:{closed_port()}"
    result = run_agent(tmp_path, tailnet_binaries.tailscaled, "serve", "--port", "0", "-v",
                       "--log-format", "json", "--control-url", url,
                       "--authkey", "hs-not-a-real-key",
                       env={"REMOTE_HOST": "web1", "REMOTE_USER": "ops"})
    assert result.returncode == 1, result.stderr
    assert_clean(result.stdout, result.stderr, json_mode=True)
    last = assert_json_lines(result.stderr)[-1]
    assert last["level"] == "error" and "did not reach Running" in str(last["message"]), last


async def test_trust_tailnet_with_a_key_the_control_server_refuses(
    tmp_path: Path, tailnet: TestTailnet
) -> None:
    result = run_agent(tmp_path, tailnet.binaries.tailscaled, "trust", "default", "--tailnet",
                       "--yes", "--control-url", tailnet.control_url,
                       "--authkey", "0123456789abcdef0123456789abcdef0123456789abcdef",
                       env={"REMOTE_HOST": "web1", "REMOTE_USER": "ops"})
    last = assert_one_line_and_clean(result, tmp_path, "did not reach Running within 6s",
                                     "auth key")
    # What the control server said is on that line too.
    assert "invalid pre auth key" in last
