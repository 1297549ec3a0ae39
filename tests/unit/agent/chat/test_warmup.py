"""The anthropic SDK is warmed up in the background when (and only when) a key is set,
without touching the network. Each case runs in a fresh interpreter: this test process
has imported the SDK long ago."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]

BUILD = """
import json, logging, socket, sys, threading, time
logging.basicConfig(level=logging.INFO)
def no_network(*args, **kwargs):
    raise AssertionError("the warm-up reached for the network")
socket.socket.connect = no_network
socket.create_connection = no_network
from agent.app import build_agent
from agent.chat import warmup
from agent.access.identity import local_user_identity
from agent.settings import Settings
from agent.web.middleware.identity import fixed_resolver
build_agent(Settings(anthropic_api_key=KEY), mode="local",
            resolver=fixed_resolver(local_user_identity()), allowed_names=["127.0.0.1"])
threads = [t.name for t in threading.enumerate()]
streamed = warmup.start().result(timeout=120) if KEY else None
print(json.dumps({"imported": "anthropic" in sys.modules, "threads": threads,
                  "streamed": streamed}))
"""


def build(key: str | None) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", f"KEY = {key!r}\n" + BUILD], cwd=ROOT, capture_output=True,
        text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert "warming the anthropic SDK up failed" not in done.stderr, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_without_a_key_the_sdk_is_never_imported() -> None:
    result = build(None)
    assert result["imported"] is False
    assert "anthropic-warm-up" not in result["threads"]  # type: ignore[operator]


def test_with_a_key_the_sdk_is_imported_and_streamed_once_in_the_background() -> None:
    result = build("sk-ant-test-not-a-real-key")
    assert "anthropic-warm-up" in result["threads"]  # type: ignore[operator]
    assert result["imported"] is True and result["streamed"] is True


async def test_a_cancelled_waiter_does_not_cancel_the_warm_up() -> None:
    from agent.chat import warmup

    waiters = [asyncio.ensure_future(warmup.ready()) for _ in range(5)]
    await asyncio.sleep(0)
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await asyncio.wait_for(warmup.ready(), 120)  # still there for the next turn
    assert not warmup.start().cancelled()


# `serve --local` with a key, its warm-up held until the server waits for it: "Ready." must
# come after the warm-up, or the first question right after it waits for the SDK.
HELD_SERVE = """
import concurrent.futures, sys, threading
from agent.chat import warmup
from agent.cli import main

class Held(concurrent.futures.Future):
    awaited = threading.Event()
    def add_done_callback(self, fn):
        super().add_done_callback(fn)
        Held.awaited.set()

held = Held()
held.set_running_or_notify_cancel()
warmup._warm = held
def release():
    if Held.awaited.wait(60):
        print("warm-up awaited", flush=True)
    held.set_result(True)
threading.Thread(target=release, daemon=True).start()
sys.exit(main(["serve", "--local", "--port", "0", "--env-file", "/dev/null"]))
"""


def test_ready_is_announced_once_the_warm_up_is_over(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(ROOT),
           "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key"}
    proc = subprocess.Popen([sys.executable, "-c", HELD_SERVE], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("Ready."):
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ready = [i for i, line in enumerate(lines) if line.startswith("Ready.")]
    assert ready, lines
    assert "warm-up awaited" in lines[:ready[0]], (
        "Ready. was announced before the chat's warm-up was over:\n" + "\n".join(lines))
