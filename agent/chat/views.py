"""HTML for the page and its fragments (Jinja2, autoescaped)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template, select_autoescape
from markupsafe import Markup, escape

from .cards import ToolCard
from .events import ToolStarted
from .history import DisplayItem
from .markdown import render_markdown

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
    env.globals["host_id"] = host_id
    return env


def host_id(name: str, scope: str = "") -> str:
    """An element id for a host, whatever characters its name holds; `scope` (the hosts
    panel's group) tells apart two rows of one host."""
    key = f"{scope}\0{name}" if scope else name
    return hashlib.blake2s(key.encode(), digest_size=6).hexdigest()


def host_state(name: str, state: str, text: str, scope: str = "") -> str:
    """A host's state in the hosts panel, replacing the one shown (out-of-band)."""
    return str(_macro("host_state_view")(host_id(name, scope), state, text, True))


def template(name: str) -> Template:
    return _env().get_template(name)


def _macro(name: str) -> Any:
    return getattr(template("macros.html").module, name)


@dataclass(frozen=True)
class Mode:
    label: str
    explanation: str


MODES = {
    "tailnet": Mode("tailnet", "Served to your tailnet; you are who tailscale says you are"),
    "local": Mode("local", "serve --local: only this machine reaches this page"),
    "demo": Mode("demo", "The demo: commands run on this machine through an embedded SSH server"),
}


def mode(name: str) -> Mode:
    return MODES.get(name, Mode(name, ""))


def page(**context: Any) -> str:
    context["headers_json"] = json.dumps(context.pop("headers"))
    return template("page.html").render(**context)


def turn(turn_id: str, question: str, status: Any) -> str:
    """A turn's element: the question, the segments its stream fills, its status line."""
    return str(_macro("turn_view")(turn_id, question, status))


_FIRST_TAG = re.compile(r"^(\s*<[a-z]+)")


def with_attribute(html: str, name: str, value: str) -> str:
    """`html` (our own fragment, one element) with an attribute added to its element."""
    return _FIRST_TAG.sub(lambda m: f'{m.group(1)} {name}="{escape(value)}"', html, count=1)


def item(display: DisplayItem, *, id: str | None = None) -> str:
    html = str(_macro("item_view")(display))
    return html if id is None else with_attribute(html, "id", id)


def cards(items: Sequence[ToolCard], *, id: str | None = None,
          open_output: bool | None = None) -> str:
    return str(_macro("cards_view")(list(items), id, open_output))


def running(id: str, event: ToolStarted, output: str = "", heartbeat: str = "") -> str:
    """The card of a command still running, with what it printed so far."""
    return str(_macro("running_view")(id, event.label, event.host, event.rendered, output,
                                      heartbeat))


def confirm(id: str, host: str, command: str, rendered: str, post_url: str,
            *, replace_self: bool, runs_as: str | None = None, hosts: int | None = None,
            strategy: str | None = None) -> str:
    """A confirmation box; for a fan-out `hosts` counts the hosts `host` names (compacted)
    and `strategy` says how it goes through them."""
    return str(_macro("confirm_view")(id, host, command, rendered, post_url, replace_self,
                                      runs_as, hosts, strategy))


def status(turn_id: str, status: Any, *, oob: bool = False) -> str:
    """The turn's status line (`status`: a turn_view.Status)."""
    return str(_macro("status_view")(turn_id, status, oob))


def share_control(turn_id: str) -> str:
    """The Share button under a finished turn."""
    return str(_macro("share_control")(turn_id))


def share_link(turn_id: str, url: str, lasts: str) -> str:
    """What replaces the Share button once pressed: the read-only link."""
    return str(_macro("share_link")(turn_id, url, lasts))


def message_fragment(kind: str, text: str) -> str:
    return str(Markup('<div class="msg {}" role="alert">{}</div>').format(kind, text))


def busy_fragment(turn_id: str, status_text: str) -> str:
    """The answer to a question sent while another turn runs: what it does, and the way out."""
    return str(template("busy.html").render(turn_id=turn_id, status=status_text))
