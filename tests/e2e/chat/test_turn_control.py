"""Stopping a turn, and a turn seen from several places at once: over HTTP as the page
talks to the agent, then with volume as a hostile peer would (hundreds of turns
stopped at random points, far more views of a turn than a person opens, stops and
confirmations for turns that do not exist)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.audit.reader import read_calls
from agent.chat import ChatOptions
from agent.chat.agent_loop import LoopOptions
from agent.chat.routes.conversation import MAX_STREAMS
from agent.hosts.inventory import HostConfig
from agent.web.connections import ConnectionLimits
from tests.support.agents import RunningAgent, running_agent, settings_for
from tests.support.fake_anthropic import FakeAnthropic, Step, Text, ToolUse, tool_results
from tests.support.sshd import Sshd
from tests.support.waiting import wait_until, wait_until_sync
from whitelist import load_catalog

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
LONG_TEXT = " ".join(f"word{n}" for n in range(400))


async def start_turn(http: httpx.AsyncClient, question: str) -> str:
    response = await http.post("/chat/send", data={"message": question})
    assert response.status_code == 200, response.text
    found = re.search(r'id="turn-([0-9a-f]+)"', response.text)
    assert found, response.text
    return found.group(1)


async def read_until(chunks: AsyncIterator[str], marker: str) -> str:
    text = ""
    async for chunk in chunks:
        text += chunk
        if marker in text:
            return text
    raise AssertionError(f"the stream ended before {marker!r}: {text[-2000:]}")


async def stream_text(http: httpx.AsyncClient, turn: str) -> str:
    """The whole stream of a turn, from its snapshot to its end."""
    async with http.stream("GET", f"/chat/stream/{turn}") as response:
        assert response.status_code == 200
        text = ""
        async for chunk in response.aiter_text():
            text += chunk
            if "event: done" in text:
                return text
    raise AssertionError("the stream ended without its done event")


@dataclass
class Served:
    running: RunningAgent
    http: httpx.AsyncClient
    fake: FakeAnthropic


@pytest.fixture
async def agent(
    ssh_host: HostConfig, catalog_file: Path, tmp_path: Path,
) -> AsyncIterator[Callable[..., Any]]:
    """`await agent(script)`: the agent (local mode) with a scripted API, and an HTTP client
    that talks to it as the page does."""
    fakes: list[FakeAnthropic] = []
    async with contextlib.AsyncExitStack() as stack:

        async def start(script: list[Step], delay: float = 0.0,
                        limits: ConnectionLimits | None = None) -> Served:
            fake = FakeAnthropic(script, delay=delay).start()
            fakes.append(fake)
            settings = settings_for(
                ssh_host, audit_log=tmp_path / "audit.jsonl",
                anthropic_api_key="sk-ant-test-not-a-real-key", anthropic_model="claude-test",
                anthropic_base_url=fake.base_url)
            options = ChatOptions(loop=LoopOptions(overloaded_backoff=0.05), sdk_max_retries=0)
            running = await stack.enter_async_context(running_agent(
                settings, catalog=load_catalog([catalog_file]), chat_options=options,
                limits=limits))
            http = await stack.enter_async_context(httpx.AsyncClient(
                base_url=running.base, headers=SAME_ORIGIN, timeout=30))
            return Served(running, http, fake)

        yield start
    for fake in fakes:
        fake.stop()


async def test_stop_ends_the_turn_and_cancels_its_command(
    agent: Callable[..., Any], tmp_path: Path,
) -> None:
    served = await agent([
        Step(when="sleep", reply=[Text("Sleeping."),
                                  ToolUse("execute_command", {"command": "sleep_long"})]),
        Step(when="", reply=[Text("Next answer.")]),
    ])
    http, fake = served.http, served.fake
    turn = await start_turn(http, "sleep for a while")
    async with http.stream("GET", f"/chat/stream/{turn}") as view:
        chunks = view.aiter_text()
        shown = await read_until(chunks, "Running sleep_long on test")
        stopped = await http.post(f"/chat/stop/{turn}")
        assert stopped.status_code == 204
        shown += await read_until(chunks, "event: done")
    assert "You stopped this turn. The command it was running was cancelled." in shown
    assert ">stopped<" in shown and "Stopped while it ran" in shown
    # Stopping twice is not an error worth more than a line.
    again = await http.post(f"/chat/stop/{turn}")
    assert again.status_code == 409 and "already finished" in again.text

    # The call was cancelled where it ran: the audit log says so.
    calls = [c.merged() for c in read_calls(tmp_path / "audit.jsonl")]
    assert [(c["command"], c["outcome"]) for c in calls] == [("sleep_long", "cancelled")]

    # The next question goes out with a valid history that says what happened.
    await start_turn(http, "and now?")
    await wait_until(lambda: len(fake.requests) == 2)
    messages = fake.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    [result] = tool_results(fake.requests[-1])
    assert result["is_error"] and "stopped" in result["content"]


async def test_a_second_view_of_a_turn_sees_its_confirmation_and_its_answer(
    agent: Callable[..., Any], marker: Path,
) -> None:
    marker.touch()
    marker.chmod(0o666)
    served = await agent([
        Step(when="remove the marker", reply=[
            ToolUse("execute_command", {"command": "remove_marker"})]),
        Step(when="exit_status", reply=[Text("The marker is gone.")]),
    ])
    http = served.http
    turn = await start_turn(http, "remove the marker")

    async def first_view() -> str:
        return await stream_text(http, turn)

    viewing = asyncio.create_task(first_view())
    # Another tab: its snapshot holds the pending confirmation, with its buttons.
    async with http.stream("GET", f"/chat/stream/{turn}") as second:
        chunks = second.aiter_text()
        text = await read_until(chunks, "/chat/confirm/")
        call = re.search(r'hx-post="/chat/confirm/([^"]+)"', text)
        assert call and "Waiting for you" in text
        assert marker.exists()
        confirmed = await http.post(f"/chat/confirm/{call.group(1)}",
                                    data={"decision": "confirm"})
        assert confirmed.status_code == 204
        text += await read_until(chunks, "event: done")
    # Both views saw the same end.
    first = await viewing
    for view in (first, text):
        assert "The marker is gone." in view and ">exit 0<" in view
    assert not marker.exists()
    # A confirmation answered once cannot be answered again.
    late = await http.post(f"/chat/confirm/{call.group(1)}", data={"decision": "confirm"})
    assert late.status_code == 409


async def test_a_question_while_a_turn_runs_says_what_it_does_and_offers_stop(
    agent: Callable[..., Any],
) -> None:
    served = await agent([
        Step(when="sleep", reply=[ToolUse("execute_command", {"command": "sleep_long"})]),
    ])
    http = served.http
    turn = await start_turn(http, "sleep now")
    async with http.stream("GET", f"/chat/stream/{turn}") as view:
        await read_until(view.aiter_text(), "Running sleep_long on test")
    busy = await http.post("/chat/send", data={"message": "another question"})
    assert "still answering" in busy.text and "Running sleep_long on test" in busy.text
    assert f'hx-post="/chat/stop/{turn}"' in busy.text
    assert (await http.post(f"/chat/stop/{turn}")).status_code == 204
    assert "You stopped this turn" in await stream_text(http, turn)


async def test_hundreds_of_turns_stopped_at_random_points_leave_nothing_behind(
    agent: Callable[..., Any], tmp_path: Path,
) -> None:
    served = await agent([
        Step(when="command", reply=[Text("Running it."),
                                    ToolUse("execute_command", {"command": "count_lines"})]),
        Step(when="line-1", reply=[Text(LONG_TEXT, chunk=8)]),
        Step(when="", reply=[Text(LONG_TEXT, chunk=8)]),
    ], delay=0.001)
    http, fake = served.http, served.fake
    rng = random.Random(13)
    tasks_before = len(asyncio.all_tasks())
    turns = 200
    started = time.monotonic()
    for n in range(turns):
        question = f"run the command {n}" if n % 2 else f"say something {n}"
        turn = await start_turn(http, question)
        await asyncio.sleep(rng.random() * 0.08)
        response = await http.post(f"/chat/stop/{turn}")
        assert response.status_code in (204, 409)  # 409: it had already finished
        shown = await stream_text(http, turn)
        assert "event: done" in shown
    assert time.monotonic() - started < 240
    # Every turn ended; nothing of them keeps running.
    await wait_until(lambda: len(asyncio.all_tasks()) <= tasks_before + 2, timeout=10)
    # The conversation the next question carries is still a valid one.
    await start_turn(http, "are you still there?")
    await wait_until(lambda: last_user_text_is(fake, "are you still there?"))
    messages = fake.requests[-1]["messages"]
    roles = [m["role"] for m in messages]
    assert all(a != b for a, b in pairwise(roles)), roles
    uses = {b["id"] for m in messages if m["role"] == "assistant" and isinstance(m["content"], list)
            for b in m["content"] if b.get("type") == "tool_use"}
    answered = {r["tool_use_id"] for r in tool_results(fake.requests[-1])}
    assert uses == answered
    # Every command that started has its end record.
    calls = [c.merged() for c in read_calls(tmp_path / "audit.jsonl")]
    assert calls and all(c["outcome"] in ("ran", "cancelled") for c in calls), \
        {c["outcome"] for c in calls}


def last_user_text_is(fake: FakeAnthropic, text: str) -> bool:
    return bool(fake.requests) and fake.requests[-1]["messages"][-1]["content"] == text


async def test_views_of_a_turn_are_capped_and_bogus_stops_cost_nothing(
    agent: Callable[..., Any],
) -> None:
    held = threading.Event()  # the answer waits half-way until the end of the test
    attempts = 300
    # The chat's own cap on views is under test: the HTTP layer's cap of connections per
    # peer (64 by default, agent/web/connections.py) is lifted above the views we open.
    served = await agent([
        Step(when="", reply=[Text(LONG_TEXT, chunk=8, hold=held, hold_after=5)]),
    ], limits=ConnectionLimits(per_peer=2 * attempts))
    http, running = served.http, served.running
    turn = await start_turn(http, "a long answer")
    answered: list[int] = []
    all_answered = asyncio.Event()

    async def open_view(client: httpx.AsyncClient) -> int:
        async with client.stream("GET", f"/chat/stream/{turn}") as response:
            answered.append(response.status_code)
            if len(answered) == attempts:
                all_answered.set()
            if response.status_code == 200:
                await all_answered.wait()  # hold it open until every other view has tried
            return response.status_code

    async with httpx.AsyncClient(base_url=running.base, headers=SAME_ORIGIN, timeout=60,
                                 limits=httpx.Limits(max_connections=attempts)) as many:
        codes = await asyncio.gather(*(open_view(many) for _ in range(attempts)))
    assert codes.count(200) == MAX_STREAMS, sorted(set(codes))
    assert codes.count(429) == attempts - MAX_STREAMS
    # Closed views free their places, as soon as the server has seen them close (the
    # client's close reaches it a few ms later: measured 70 ms under load here).
    async def view_opens() -> bool:
        async with http.stream("GET", f"/chat/stream/{turn}") as response:
            return response.status_code == 200

    await wait_until(view_opens, 2.0, "closed views freeing their places")

    # Stops and confirmations for turns and calls that do not exist, many at once: each
    # refused, and the real turn goes on.
    # (Many clients: one httpx pool with a long queue spends its time on itself.)
    async def bogus_calls(first: int) -> list[int]:
        async with httpx.AsyncClient(base_url=running.base, headers=SAME_ORIGIN,
                                     timeout=60) as client:
            return [(await (client.post(f"/chat/stop/{n:016x}") if n % 2 else client.post(
                f"/chat/confirm/{n:016x}", data={"decision": "confirm"}))).status_code
                for n in range(first, first + 50)]

    bogus = [code for codes in await asyncio.gather(*(bogus_calls(50 * k) for k in range(20)))
             for code in codes]
    assert len(bogus) == 1000 and set(bogus) == {409}
    assert (await http.post(f"/chat/stop/{turn}")).status_code == 204
    held.set()
    assert "event: done" in await stream_text(http, turn)


def sleeping(sshd: Sshd) -> set[str]:
    """PIDs of the test's `sleep 31.25` processes on the host (its sshd's sessions' only)."""
    return {line.split()[0] for line in sshd.processes("sleep 31.25")
            if line.split()[1:2] == ["sleep"]}


async def test_stop_ends_the_remote_command(
    agent: Callable[..., Any], sshd: Sshd,
) -> None:
    served = await agent([
        Step(when="sleep", reply=[ToolUse("execute_command", {"command": "sleep_long"})]),
    ])
    http = served.http
    before = sleeping(sshd)
    turn = await start_turn(http, "sleep for a while")
    async with http.stream("GET", f"/chat/stream/{turn}") as view:
        chunks = view.aiter_text()
        await read_until(chunks, "Running sleep_long on test")
        # Stop only once the command really runs on the host.
        started = await wait_until(lambda: sleeping(sshd) - before)
        assert (await http.post(f"/chat/stop/{turn}")).status_code == 204
        await read_until(chunks, "event: done")
    await asyncio.to_thread(wait_until_sync, lambda: not sleeping(sshd) & started, 10,
                            f"the stopped command's processes {started} gone from the host")
