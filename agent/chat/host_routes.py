"""The hosts panel: the hosts this caller may use, what is known of them, and a health
check per host.

GET  /chat/hosts?tag=T       the panel's list, only hosts with tag T (all without it)
POST /chat/hosts/check       run the health check on one host (form field `host`)

The list comes from `AgentService.host_views` (a file's hosts and, with the fleet,
the tailnet's). The check is the catalog's `uptime` run through the same path as
any call (`execute_command` on our MCP server: policy, rate limit, audit log), so it
shows whether the host answers over SSH, how long it has been up, and its load.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from agent.core.hosts import HostView
from agent.core.identity import Identity
from agent.core.service import AgentService

from . import views
from .mcp_calls import run_catalog_command
from .responses import forbidden, html
from .state import ChatState

HEALTH_COMMAND = "uptime"


def host_panel(service: AgentService, identity: Identity, tag: str = "") -> dict[str, Any]:
    """What hosts.html and host_list.html show this caller."""
    hosts = service.host_views(identity)
    command = service.catalog.commands.get(HEALTH_COMMAND)
    checkable = {h.name for h in hosts if command is not None
                 and service.may_run(identity, command, service.hosts[h.name])}
    return panel(hosts, checkable, tag)


def panel(hosts: list[HostView], checkable: set[str], tag: str = "") -> dict[str, Any]:
    return {
        "host_views": [h for h in hosts if not tag or tag in h.tags],
        "host_tags": sorted({t for h in hosts for t in h.tags}),
        "checkable": checkable,
    }


class Hosts:
    def __init__(self, state: ChatState) -> None:
        self.state = state
        self.service = state.service

    async def list(self, request: Request) -> Response:
        identity, _ = self.state.session(request)
        tag = request.query_params.get("tag", "")
        return html(views.template("host_list.html").render(
            **host_panel(self.service, identity, tag)))

    async def check(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        identity, _ = checked
        host = (await self.state.form(request)).get("host", "")
        if host not in self.service.visible_hosts(identity):
            return html(_result(False, f"There is no host {host!r} you may use."))
        card = (await run_catalog_command(self.service, self.state.mcp_server, identity,
                                          HEALTH_COMMAND, {}, host))[0]
        if not card.ok:
            problem = card.error or card.stderr.strip() or card.status
            return html(_result(False, f"{card.status}: {problem}")
                        + views.host_state(host, "offline", "no answer"))
        took = f" · {card.duration_ms:.0f} ms" if card.duration_ms is not None else ""
        return html(_result(True, f"answers over SSH{took}", card.stdout.strip())
                    + views.host_state(host, "online", "answers"))


def _result(ok: bool, summary: str, detail: str = "") -> str:
    return str(Markup(
        '<p class="check-result {kind}"><span class="mark" aria-hidden="true">{mark}</span> '
        '{summary}</p>{detail}'
    ).format(kind="ok" if ok else "bad", mark="✓" if ok else "✕", summary=summary,
             detail=Markup('<p class="check-detail">{}</p>').format(detail) if detail else ""))
