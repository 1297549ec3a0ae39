"""The hosts panel as it renders what the service knows of each host."""

from __future__ import annotations

from agent.chat import views
from agent.chat.routes.hosts import panel
from agent.hosts.registry import HostView

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
    assert """hx-vals='{"host": "web-1", "scope": ""}'""" in html
    assert "No host you may use" in render("tag:none")


def fleet(n: int) -> list[HostView]:
    """`n` tailnet hosts: web-001... with tag:web, every third also tag:db; every tenth
    offline; and one host from a file, without tags."""
    hosts = [HostView(name=f"web-{i:03d}", address=f"web-{i:03d}.ts.net", user="ops", port=22,
                      source="tailnet", online=i % 10 != 0,
                      tags=("tag:web", "tag:db") if i % 3 == 0 else ("tag:web",))
             for i in range(1, n + 1)]
    return [*hosts, HostView(name="lab", address="10.0.0.9", user="me", port=22)]


def test_a_large_fleet_is_groups_by_tag_not_rows() -> None:
    context = panel(fleet(300), set())
    assert context["searchable"] and context["host_total"] == 301
    assert [(g.tag, g.count, g.offline) for g in context["groups"]] == [
        ("tag:web", 300, 30), ("tag:db", 100, 10), ("", 1, 0)]
    html = views.template("host_list.html").render(**context)
    assert html.count('class="host-row"') == 0 and html.count('class="host-group"') == 3
    assert 'hx-get="/chat/hosts?tag=tag%3Aweb"' in html and "30 offline" in html
    assert 'hx-get="/chat/hosts?untagged=1"' in html and ">no tag<" in html


def test_a_search_or_a_group_is_a_page_of_rows_with_more_to_show() -> None:
    hosts = fleet(300)
    found = panel(hosts, set(), q="web-1*")
    assert [h.name for h in found["host_views"]][:2] == ["web-100", "web-101"]
    assert len(found["host_views"]) == 50 and found["more"]["left"] == 50
    assert found["more"]["url"] == "/chat/hosts?q=web-1%2A&cursor=web-149"
    rest = panel(hosts, set(), q="web-1*", cursor="web-149")
    assert [h.name for h in rest["host_views"]][-1] == "web-199" and rest["more"] is None
    db = panel(hosts, set(), "tag:db")
    assert len(db["host_views"]) == 50 and db["scope"] == "tag:db"
    html = views.template("host_list.html").render(**panel(hosts, set(), q="nothing-like-it"))
    assert "No host matches “nothing-like-it”." in html
    # The same host in two groups is two rows with ids of their own.
    web, db3 = (panel(hosts, {"web-003"}, tag, q="web-003") for tag in ("tag:web", "tag:db"))
    ids = [views.template("host_list.html").render(**c).split('id="host-')[1][:12]
           for c in (web, db3)]
    assert ids[0] != ids[1]


def test_claude_is_told_a_large_fleet_in_a_few_lines() -> None:
    from agent.chat.prompt import PROMPT_HOSTS, system_prompt
    from whitelist import load_catalog

    catalog = load_catalog([])
    small = system_prompt(catalog, HOSTS)
    assert "  - web-1 (default): tags tag:web tag:prod" in small
    large = system_prompt(catalog, fleet(300))
    hosts_part = large.split("Catalog commands")[0]
    assert "web-001" not in hosts_part and len(hosts_part) < 800
    assert "  301 hosts, 30 of them OFFLINE." in hosts_part
    assert "  Tags: tag:web (300), tag:db (100); 1 without a tag." in hosts_part
    assert "find hosts with list_hosts" in hosts_part
    assert len(system_prompt(catalog, fleet(PROMPT_HOSTS - 1)).split("Catalog")[0]) > 1000
