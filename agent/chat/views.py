"""HTML for the page, its fragments and its stream events (Jinja2, autoescaped)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template, select_autoescape
from markupsafe import Markup, escape

from agent.mcp.progress import HEARTBEAT_PREFIX

from .agent_loop import (
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
)
from .cards import ToolCard
from .history import DisplayItem
from .markdown import render_markdown
from .sse import sse_message

TEMPLATES = Path(__file__).parent / "templates"


@cache
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        # Everything is escaped, .html or not: command output and model text are hostile.
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=False,
    )
    env.globals["markdown"] = render_markdown
    return env


def template(name: str) -> Template:
    return _env().get_template(name)


def _macro(name: str) -> Any:
    return getattr(template("macros.html").module, name)


def page(**context: Any) -> str:
    context["headers_json"] = json.dumps(context.pop("headers"))
    return template("page.html").render(**context)


def turn_start(turn_id: str, question: str) -> str:
    return template("turn.html").render(turn_id=turn_id, question=DisplayItem("user", question))


def item(display: DisplayItem) -> str:
    return str(_macro("item_view")(display))


def cards(items: Sequence[ToolCard], *, id: str | None = None, oob: bool = False) -> str:
    return str(_macro("cards_view")(list(items), id, oob))


def confirm(id: str, host: str, command: str, rendered: str, post_url: str,
            *, replace_self: bool, runs_as: str | None = None) -> str:
    return str(_macro("confirm_view")(id, host, command, rendered, post_url, replace_self,
                                      runs_as))


def _running(event: ToolStarted, id: str, oob: bool) -> str:
    swap = Markup(' hx-swap-oob="true"') if oob else ""
    return str(Markup(
        '<div class="cards" id="{id}"{swap}><div class="card running">'
        '<span class="tool">{tool}</span> <span class="host">{host}</span> '
        '<span class="status" id="st-{id}">running…</span>'
        '<pre class="out live" id="live-{id}"></pre></div></div>'
    ).format(id=id, swap=swap, tool=event.tool, host=event.host))


def _live(event: ToolOutput, id: str) -> str:
    """New lines of a running command, appended to its card; a heartbeat replaces the
    card's status instead."""
    if event.text.startswith(HEARTBEAT_PREFIX):
        return str(Markup('<span class="status" id="st-{id}" hx-swap-oob="true">{text}</span>'
                          ).format(id=id, text=event.text.strip("[]")))
    return str(Markup('<pre hx-swap-oob="beforeend:#live-{id}">{text}\n</pre>').format(
        id=id, text=event.text))


class StreamRenderer:
    """Turns loop events into SSE messages for one turn's `<div class="turn">`.

    Remembers which calls already have an element on the page, so a later event for
    the same call replaces it (out-of-band swap) instead of adding a second one.
    """

    def __init__(self, confirm_url: str) -> None:
        self._confirm_url = confirm_url  # "{call}" is replaced by the call id
        self._shown: set[str] = set()

    def _card_slot(self, call: str) -> tuple[str, bool]:
        id = f"c-{call}"
        oob = call in self._shown
        self._shown.add(call)
        return id, oob

    def render(self, event: Event) -> bytes:
        if isinstance(event, TextStarted):
            return sse_message("seg", str(Markup(
                '<div class="msg assistant streaming" id="b-{b}" sse-swap="{b}" '
                'hx-swap="beforeend"></div>').format(b=event.block)))
        if isinstance(event, TextDelta):
            # A span per delta keeps each delta's whitespace as text, never as markup.
            return sse_message(event.block, str(Markup("<span>{}</span>").format(event.text)))
        if isinstance(event, TextFinished):
            return sse_message("seg", str(Markup(
                '<div class="msg assistant md" id="b-{b}" hx-swap-oob="true">{html}</div>'
            ).format(b=event.block, html=render_markdown(event.text))))
        if isinstance(event, ConfirmNeeded):
            id, _ = self._card_slot(event.call)
            url = self._confirm_url.format(call=event.call)
            return sse_message("seg", confirm(id, event.host, event.command, event.rendered, url,
                                              replace_self=False, runs_as=event.runs_as))
        if isinstance(event, ToolStarted):
            id, oob = self._card_slot(event.call)
            return sse_message("seg", _running(event, id, oob))
        if isinstance(event, ToolOutput):
            return sse_message("seg", _live(event, f"c-{event.call}"))
        if isinstance(event, ToolFinished):
            id, oob = self._card_slot(event.call)
            return sse_message("seg", cards(event.cards, id=id, oob=oob))
        if isinstance(event, TurnFailed):
            return sse_message("seg", item(DisplayItem("error", event.message)))
        if isinstance(event, TurnFinished):
            return sse_message("done", "")
        raise TypeError(f"no rendering for {event!r}")


def message_fragment(kind: str, text: str) -> str:
    return f'<div class="msg {kind}" role="alert">{escape(text)}</div>'
