"""The hosts panel as it renders what the service knows of each host."""

from __future__ import annotations

from agent.chat import views
from agent.chat.host_routes import panel
from agent.core.hosts import HostView

HOSTS = [
    HostView(name="web-1", address="web-1.tail.ts.net", user="ops", port=22, default=True,
             source="tailnet", online=True, os="linux", tags=("tag:web", "tag:prod")),
    HostView(name="db-1", address="100.64.0.7", user="ops", port=2222, source="tailnet",
             online=False, os="linux", tags=("tag:db", "tag:prod"),
             last_seen="2026-01-05T10:00:00Z"),
    HostView(name="lab", address="10.0.0.9", user="me", port=22),
    HostView(name="web-4", address="web-4.tail.ts.net", user="ops", port=22, source="tailnet",
             online=None, os="linux", tags=("tag:web",)),
]


def render(tag: str = "", checkable: set[str] | None = None) -> str:
    context = panel(HOSTS, checkable if checkable is not None else {"web-1", "lab"}, tag)
    return views.template("host_list.html").render(**context)


def test_each_host_says_whether_it_is_online_and_what_it_is() -> None:
    html = render()
    assert html.count('class="host-row"') == 4
    assert 'class="host-state online"' in html and 'class="host-state offline"' in html
    assert "offline, last seen 2026-01-05T10:00:00Z" in html
    assert "not checked yet" in html  # a host from a file: nobody knows before a check
    assert "not seen yet" in html  # a tailnet node that has just joined: not offline
    assert "ops@100.64.0.7:2222 · linux" in html and "ops@web-1.tail.ts.net · linux" in html
    assert '<li class="tag">tag:prod</li>' in html


def test_the_tag_filter_and_the_check_follow_the_caller() -> None:
    assert panel(HOSTS, set())["host_tags"] == ["tag:db", "tag:prod", "tag:web"]
    def names(html: str) -> list[str]:
        return [part.split("<", 1)[0] for part in html.split('class="host-name">')[1:]]

    assert names(render()) == ["web-1", "db-1", "lab", "web-4"]
    assert names(render("tag:prod")) == ["web-1", "db-1"]
    assert names(render("tag:web")) == ["web-1", "web-4"]
    # A check button only where the policy lets this caller run the check.
    html = render(checkable={"web-1"})
    assert html.count("hx-post=\"/chat/hosts/check\"") == 1
    assert """hx-vals='{"host": "web-1"}'""" in html
    assert "No host you may use" in render("tag:none")
