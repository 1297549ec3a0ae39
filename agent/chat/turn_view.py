"""A running turn as the page shows it, rebuilt from the turn's event log.

A view turns events into page segments (an answer block, a call's card, a
confirmation, an error) and a status line. Each SSE connection has its own view:
it first sends a snapshot of everything so far (replacing whatever that page
showed of the turn, so a reload, a second tab and a reconnect all end up alike),
then one message per batch of new events, in which a new segment is appended and
a changed one replaces its old self (an out-of-band swap by id).

An answer block still streaming is re-rendered whole from its text so far
(agent.chat.markdown_stream), so Markdown never shows as raw syntax.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from markupsafe import Markup

from agent.mcp.progress import HEARTBEAT_PREFIX

from . import views
from .events import (
    ConfirmNeeded,
    Event,
    TextDelta,
    TextFinished,
    TextStarted,
    ToolFinished,
    ToolOutput,
    ToolStarted,
    TurnFailed,
    TurnFinished,
    TurnStopped,
)
from .history import DisplayItem
from .markdown import render_markdown
from .markdown_stream import render_partial_markdown
from .sse import sse_message


@dataclass(frozen=True)
class Status:
    text: str
    waiting: bool = False  # for the person's answer, not for Claude or a host


THINKING = Status("Claude is thinking…")
WRITING = Status("Claude is writing…")
READING = Status("Claude is reading the result…")


def status_of(events: Iterable[Event]) -> Status:
    """What the turn is doing now, in words (the status line and the busy notice)."""
    status = THINKING
    pending: dict[str, ConfirmNeeded] = {}
    for event in events:
        if isinstance(event, TextStarted | TextDelta):
            status = WRITING
        elif isinstance(event, TextFinished):
            status = THINKING
        elif isinstance(event, ConfirmNeeded):
            pending[event.call] = event
        elif isinstance(event, ToolStarted):
            pending.pop(event.call, None)
            status = Status(f"Running {event.label} on {event.host}…" if event.host
                            else f"Running {event.label}…")
        elif isinstance(event, ToolFinished):
            pending.pop(event.call, None)
            status = READING
    if pending:
        waiting = next(iter(pending.values()))
        return Status(f"Waiting for you: run {waiting.command} on "
                      f"{waiting.host or 'the default host'}? Confirm or cancel above.",
                      waiting=True)
    return status


@dataclass
class _Text:
    parts: list[str] = field(default_factory=list)
    done: bool = False


# A running command's card shows this much of what it printed so far (the finished card
# has all of it).
LIVE_LIMIT = 64_000


@dataclass
class _Running:
    started: ToolStarted
    output: str = ""
    heartbeat: str = ""  # "12 s, 40 lines so far" while the command prints nothing


class TurnView:
    def __init__(self, turn_id: str, confirm_url: str) -> None:
        self.turn_id = turn_id
        self._confirm_url = confirm_url  # "{call}" is replaced by the call id
        self._segments: dict[str, str | _Text | _Running] = {}  # by element id, in page order
        self._events: list[Event] = []
        self._sent: set[str] = set()
        self._status = THINKING
        self._failures = 0

    # -- events -> segments ------------------------------------------------------------

    def _apply(self, event: Event) -> str | None:
        """Record `event`; returns the id of the segment it adds or changes."""
        self._events.append(event)
        if isinstance(event, TextStarted):
            self._segments[f"b-{event.block}"] = _Text()
            return f"b-{event.block}"
        if isinstance(event, TextDelta | TextFinished):
            text = self._segments.setdefault(f"b-{event.block}", _Text())
            assert isinstance(text, _Text)
            if isinstance(event, TextDelta):
                text.parts.append(event.text)
            else:
                text.parts, text.done = [event.text], True
            return f"b-{event.block}"
        if isinstance(event, ConfirmNeeded):
            url = self._confirm_url.format(call=event.call)
            return self._set(f"c-{event.call}", views.confirm(
                f"c-{event.call}", event.host, event.command, event.rendered, url,
                replace_self=False, runs_as=event.runs_as, hosts=event.hosts,
                strategy=event.strategy))
        if isinstance(event, ToolStarted):
            self._segments[f"c-{event.call}"] = _Running(event)
            return f"c-{event.call}"
        if isinstance(event, ToolOutput):
            running = self._segments.get(f"c-{event.call}")
            if not isinstance(running, _Running):
                return None
            if event.text.startswith(HEARTBEAT_PREFIX):
                running.heartbeat = event.text.removeprefix(HEARTBEAT_PREFIX).strip("[] ")
            else:
                running.output = (running.output + event.text.rstrip("\n") + "\n")[-LIVE_LIMIT:]
                running.heartbeat = ""
            return f"c-{event.call}"
        if isinstance(event, ToolFinished):
            return self._set(f"c-{event.call}", views.cards(event.cards, id=f"c-{event.call}"))
        if isinstance(event, TurnFailed):
            self._failures += 1
            id = f"f-{self.turn_id}-{self._failures}"
            return self._set(id, views.item(DisplayItem("error", event.message), id=id))
        if isinstance(event, TurnStopped):
            id = f"s-{self.turn_id}"
            return self._set(id, views.item(DisplayItem("notice", event.message), id=id))
        if isinstance(event, TurnFinished):  # the turn is in the history: it may be shared
            return self._set(f"share-{self.turn_id}", views.share_control(self.turn_id))
        return None

    def _set(self, id: str, html: str) -> str:
        self._segments[id] = html
        return id

    def _html(self, id: str) -> str:
        segment = self._segments[id]
        if isinstance(segment, str):
            return segment
        if isinstance(segment, _Running):
            return views.running(id, segment.started, segment.output, segment.heartbeat)
        text = "".join(segment.parts)
        if segment.done:
            return str(Markup('<div class="msg assistant md" id="{}">{}</div>').format(
                id, render_markdown(text)))
        # aria-busy: screen readers wait for the finished block instead of reading
        # every re-render.
        return str(Markup(
            '<div class="msg assistant md streaming" id="{}" aria-busy="true">{}</div>'
        ).format(id, render_partial_markdown(text)))

    def _status_html(self, *, oob: bool) -> str:
        if self._events and isinstance(self._events[-1], TurnFinished):
            return f'<div id="status-{self.turn_id}" hx-swap-oob="delete"></div>' if oob else ""
        return views.status(self.turn_id, self._status, oob=oob)

    # -- SSE messages ------------------------------------------------------------------

    def snapshot(self, events: Iterable[Event]) -> bytes:
        """The whole turn so far, replacing what the page shows of it."""
        for event in events:
            self._apply(event)
        self._sent = set(self._segments)
        self._status = status_of(self._events)
        body = "".join(self._html(id) for id in self._segments)
        return sse_message("seg", f'<div id="seg-{self.turn_id}" hx-swap-oob="innerHTML">'
                                  f"{body}</div>" + self._status_html(oob=True))

    def update(self, events: Iterable[Event]) -> bytes:
        changed: dict[str, None] = {}  # ordered set
        for event in events:
            id = self._apply(event)
            if id is not None:
                changed[id] = None
        new = [id for id in changed if id not in self._sent]
        self._sent.update(new)
        parts = [self._html(id) for id in new]
        # A changed segment replaces its old self wherever it is (an out-of-band swap).
        parts += [views.with_attribute(self._html(id), "hx-swap-oob", "true")
                  for id in changed if id not in new]
        status = status_of(self._events)
        finished = bool(self._events) and isinstance(self._events[-1], TurnFinished)
        if status != self._status or finished:
            self._status = status
            parts.append(self._status_html(oob=True))
        return sse_message("seg", "".join(parts))
