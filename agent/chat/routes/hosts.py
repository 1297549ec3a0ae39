"""The hosts panel: the hosts this caller may use, what is known of them, and a health
check per host.

GET  /chat/hosts?q=Q&tag=T&untagged=1&cursor=C   the panel's list (below)
POST /chat/hosts/check       run the health check on one host (form fields `host`, `scope`)

The list comes from `AgentService.host_page` (agent/hosts/query.py: the same filters
and pages as list_hosts). Up to FLAT_LIMIT hosts are listed as they are. A larger fleet
gets a search box (a name, or a glob like web-*) and, while nothing is searched, one
collapsed group per tailnet tag (and one for hosts without a tag) with its size and how
many are offline; a group's hosts load when it is opened, PAGE at a time, like a search's.
So 300 hosts are a handful of groups, not 300 rows. A host in two groups is two rows,
their element ids told apart by `scope` (the group).

The check is the catalog's `uptime` run through the same path as any call
(`execute_command` on our MCP server: policy, rate limit, audit log), so it shows whether
the host answers over SSH, how long it has been up, and its load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from agent.access.identity import Identity
from agent.core.service import AgentService
from agent.errors import ConfigError
from agent.hosts.query import MAX_PATTERN, HostPage, HostQuery, query_hosts
from agent.hosts.registry import HostView

from .. import views
from ..mcp_calls import run_catalog_command
from ..responses import forbidden, html
from ..state import ChatState

HEALTH_COMMAND = "uptime"
FLAT_LIMIT = 12  # up to this many hosts: all listed, no search, no groups
PAGE = 50  # rows a search or a group shows at a time


def host_panel(service: AgentService, identity: Identity,
               params: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What hosts.html and host_list.html show this caller (`params`: the list's query)."""
    hosts = service.host_views(identity)
    command = service.catalog.commands.get(HEALTH_COMMAND)
    checkable = {h.name for h in hosts if command is not None
                 and service.may_run(identity, command, service.hosts[h.name])}
    params = params or {}
    return panel(hosts, checkable, params.get("tag", ""), q=params.get("q", ""),
                 untagged=params.get("untagged") == "1", cursor=params.get("cursor", ""))


@dataclass(frozen=True)
class Group:
    tag: str  # "" for the hosts without a tag
    count: int
    offline: int
    url: str  # where its rows are loaded from
    scope: str


def panel(hosts: list[HostView], checkable: set[str], tag: str = "", *, q: str = "",
          untagged: bool = False, cursor: str = "") -> dict[str, Any]:
    """The list for one query: every host (a small fleet), the groups (a large one, nothing
    searched), or a page of rows (a search, a group, a tag chosen)."""
    searchable = len(hosts) > FLAT_LIMIT
    tags = sorted({t for h in hosts for t in h.tags})
    context: dict[str, Any] = {"host_total": len(hosts), "host_tags": tags,
                               "searchable": searchable, "checkable": checkable,
                               "host_online": sum(h.online is True for h in hosts),
                               "host_offline": sum(h.online is False for h in hosts),
                               "groups": [], "host_views": [], "more": None, "scope": "",
                               "searched": "", "found": None}
    if not searchable:  # as the inventory (and the tailnet) list them
        context["host_views"] = [h for h in hosts if not tag or tag in h.tags]
        return context
    q = q.strip()[:MAX_PATTERN]
    if tags and not (q or tag or untagged or cursor):
        context["groups"] = _groups(hosts, tags)
        return context
    try:
        query = HostQuery(tag=tag or None, name=q or None, untagged=untagged,
                          cursor=cursor or None, limit=PAGE)
    except ConfigError:  # only a hand-made URL gets here
        return context
    page = query_hosts(hosts, query)
    context["host_views"] = list(page.hosts)
    context["scope"] = _scope(tag, untagged)
    context["more"] = _more(page, q, tag, untagged)
    context["searched"] = q
    context["found"] = page.total if q and not cursor else None
    return context


def _groups(hosts: list[HostView], tags: list[str]) -> list[Group]:
    groups = []
    for tag in tags:
        members = [h for h in hosts if tag in h.tags]
        groups.append(Group(tag, len(members), sum(h.online is False for h in members),
                            "/chat/hosts?" + urlencode({"tag": tag}), _scope(tag, False)))
    bare = [h for h in hosts if not h.tags]
    if bare:
        groups.append(Group("", len(bare), sum(h.online is False for h in bare),
                            "/chat/hosts?untagged=1", _scope("", True)))
    return sorted(groups, key=lambda g: (-g.count, g.tag))


def _scope(tag: str, untagged: bool) -> str:
    return "untagged" if untagged else tag


def _more(page: HostPage, q: str, tag: str, untagged: bool) -> dict[str, Any] | None:
    """The "show more" button of a page that has more."""
    if page.next_cursor is None:
        return None
    params = {"q": q, "tag": tag, "untagged": "1" if untagged else "",
              "cursor": page.next_cursor}
    return {"left": page.more, "count": min(page.more, PAGE),
            "url": "/chat/hosts?" + urlencode({k: v for k, v in params.items() if v})}


class Hosts:
    def __init__(self, state: ChatState) -> None:
        self.state = state
        self.service = state.service

    async def list(self, request: Request) -> Response:
        identity, _ = self.state.session(request)
        return html(views.template("host_list.html").render(
            **host_panel(self.service, identity, request.query_params)))

    async def check(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        identity, _ = checked
        form = await self.state.form(request)
        host, scope = form.get("host", ""), form.get("scope", "")
        if host not in self.service.visible_hosts(identity):
            return html(_result(False, f"There is no host {host!r} you may use."))
        card = (await run_catalog_command(self.service, self.state.mcp_server, identity,
                                          HEALTH_COMMAND, {}, host))[0]
        if not card.ok:
            problem = card.error or card.stderr.strip() or card.status
            return html(_result(False, f"{card.status}: {problem}")
                        + views.host_state(host, "offline", "no answer", scope))
        took = f" · {card.duration_ms:.0f} ms" if card.duration_ms is not None else ""
        return html(_result(True, f"answers over SSH{took}", card.stdout.strip())
                    + views.host_state(host, "online", "answers", scope))


def _result(ok: bool, summary: str, detail: str = "") -> str:
    return str(Markup(
        '<p class="check-result {kind}"><span class="mark" aria-hidden="true">{mark}</span> '
        '{summary}</p>{detail}'
    ).format(kind="ok" if ok else "bad", mark="✓" if ok else "✕", summary=summary,
             detail=Markup('<p class="check-detail">{}</p>').format(detail) if detail else ""))
