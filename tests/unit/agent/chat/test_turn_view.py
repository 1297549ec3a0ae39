"""A turn as the page shows it: rebuilt from its event log, whenever a view joins."""

from __future__ import annotations

import asyncio
import re

import pytest

from agent.chat.cards import ToolCard
from agent.chat.events import (
    ConfirmNeeded,
    Event,
    EventLog,
    TextDelta,
    TextFinished,
    TextStarted,
    ToolFinished,
    ToolStarted,
    TurnFinished,
    TurnStopped,
)
from agent.chat.turn_view import READING, THINKING, WRITING, TurnView, status_of

TURN = "t1"
EVENTS: list[Event] = [
    TextStarted("t1-t1"),
    TextDelta("t1-t1", "Let me **che"),
    TextDelta("t1-t1", "ck** the disk."),
    TextFinished("t1-t1", "Let me **check** the disk."),
    ConfirmNeeded("t1-c1", "execute_command", "web-1", "remove_marker", "rm -f -- /m"),
    ToolStarted("t1-c1", "execute_command", "web-1", {"command": "remove_marker"}),
    ToolFinished("t1-c1", (ToolCard(tool="execute_command", host="web-1",
                                    command="remove_marker", rendered="rm -f -- /m",
                                    exit_status=0, duration_ms=12),)),
    TextStarted("t1-t2"),
    TextDelta("t1-t2", "| a | b |\n"),
    TextDelta("t1-t2", "|---|--:|\n| 1 | 2 |\n"),
    TextFinished("t1-t2", "| a | b |\n|---|--:|\n| 1 | 2 |\n"),
    TurnStopped("You stopped this turn."),
    TurnFinished(),
]


def view() -> TurnView:
    return TurnView(TURN, "/chat/confirm/{call}")


def segments(view: TurnView) -> dict[str, str]:
    return {id: view._html(id) for id in view._segments}


@pytest.mark.parametrize("joined_at", range(len(EVENTS) + 1))
def test_a_view_that_joins_late_ends_like_one_that_saw_everything(joined_at: int) -> None:
    whole = view()
    whole.snapshot([])
    for event in EVENTS:
        whole.update([event])
    late = view()
    late.snapshot(EVENTS[:joined_at])
    late.update(EVENTS[joined_at:])
    assert segments(late) == segments(whole)
    assert list(segments(whole)) == ["b-t1-t1", "c-t1-c1", "b-t1-t2", "s-t1",
                                     "share-t1"]


def test_messages_append_new_segments_and_replace_changed_ones_by_id() -> None:
    v = view()
    snapshot = v.snapshot(EVENTS[:2]).decode()
    assert snapshot.startswith("event: seg\n")
    assert 'id="seg-t1" hx-swap-oob="innerHTML"' in snapshot
    # A block still streaming: rendered Markdown, bold already, no raw syntax, busy.
    assert "<strong>che</strong>" in snapshot and "**" not in snapshot
    assert 'aria-busy="true"' in snapshot
    assert WRITING.text in snapshot

    grown = v.update([EVENTS[2]]).decode()
    assert re.search(r'<div hx-swap-oob="true" class="msg assistant md streaming" id="b-t1-t1"',
                     grown.replace("data: ", "")), grown
    assert "status-t1" not in grown  # still writing: the status line is unchanged

    confirm = v.update(EVENTS[3:5]).decode()
    assert 'hx-post="/chat/confirm/t1-c1"' in confirm
    assert "Waiting for you: run remove_marker on web-1?" in confirm
    assert 'class="warn-mark small"' in confirm

    ran = v.update(EVENTS[5:7]).decode()
    assert 'hx-swap-oob="true"' in ran and "exit 0" in ran and READING.text in ran

    end = v.update(EVENTS[7:]).decode()
    assert 'class="align-right"' in end and "style=" not in end
    assert '<div id="status-t1" hx-swap-oob="delete"></div>' in end
    assert "You stopped this turn." in end
    # The turn is over and in the history: it may be shared.
    assert 'hx-post="/chat/share/t1"' in end


def test_the_status_says_what_the_turn_is_doing() -> None:
    assert status_of([]) == THINKING
    assert status_of(EVENTS[:2]) == WRITING
    assert status_of(EVENTS[:5]).waiting
    assert status_of(EVENTS[:6]).text == "Running remove_marker on web-1…"
    assert status_of(EVENTS[:7]) == READING


async def test_the_log_wakes_every_reader_and_keeps_every_event() -> None:
    log = EventLog()
    seen: list[list[Event]] = []

    async def reader() -> None:
        await log.wait_past(0)
        seen.append(list(log.events))

    readers = [asyncio.create_task(reader()) for _ in range(50)]
    await asyncio.sleep(0)
    log.append(EVENTS[0])
    await asyncio.gather(*readers)
    assert seen == [[EVENTS[0]]] * 50
    await asyncio.wait_for(log.wait_past(0), 1)  # already past: returns at once
    assert not log.finished
    log.append(TurnFinished())
    assert log.finished
