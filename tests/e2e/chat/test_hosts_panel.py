"""The hosts panel with 301 hosts, in Chromium at laptop and phone width: a search box and
one collapsed group per tag instead of 301 rows; a group's hosts load when it opens, a
search shows 50 at a time with a button for more, a host is checked from inside a group.

The 300 tailnet hosts reach the host registry as agent/tailnet/fleet.py hands it the netmap's
peers (HostRegistry.set_tailnet); they all log in to the test sshd, so a check is real.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from agent.chat import ChatOptions
from agent.hosts.registry import Presence
from agent.settings import Settings
from tests.support.browser import DESKTOP, PHONE, TIMEOUT, PageFactory, check_state
from tests.support.chat import ServedChat
from tests.support.sshd import Sshd
from whitelist import load_catalog

ROLES = (("web", 180, ("tag:web",)), ("app", 90, ("tag:app",)), ("db", 30, ("tag:db",)))


@pytest.fixture
def fleet_chat(sshd: Sshd) -> Iterator[ServedChat]:
    test = sshd.host_config("test")
    fleet = {}
    for role, count, tags in ROLES:
        for n in range(1, count + 1):
            name = f"{role}-{n:03d}"
            prod = ("tag:prod",) if role == "db" or n % 4 == 0 else ()
            host = dataclasses.replace(test, name=name, source="tailnet", tags=tags + prod)
            fleet[name] = host, Presence(online=n % 30 != 7, os="linux")
    settings = Settings(hosts={"test": test}, default_host="test")
    app = ServedChat(settings, load_catalog([]), ChatOptions())
    app.service.hosts.set_tailnet(fleet)
    app.start()
    yield app
    app.stop()


def groups(page: Any) -> list[str]:
    summaries = page.locator("#hosts .host-group summary")
    return [" ".join(summaries.nth(i).inner_text().split()) for i in range(summaries.count())]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["laptop", "phone"])
def test_three_hundred_hosts_are_a_search_box_and_groups(
    fleet_chat: ServedChat, open_page: PageFactory, viewport: dict[str, int],
) -> None:
    width = "laptop" if viewport == DESKTOP else "phone"
    page = open_page(viewport)
    page.goto(fleet_chat.url + "/")
    panel = page.locator("#hosts")
    assert " ".join(panel.locator(".section-head").inner_text().split()) == (
        "Hosts 301 · 10 offline")
    assert panel.locator(".host-row").count() == 0  # not 301 rows
    assert groups(page) == ["tag:web 180 hosts 6 offline", "tag:prod 97 hosts 1 offline",
                            "tag:app 90 hosts 3 offline", "tag:db 30 hosts 1 offline",
                            "no tag 1 host"]
    panel.scroll_into_view_if_needed()
    check_state(page, fleet_chat.url, f"hosts-300-groups-{width}")

    # A group's hosts load when it opens; a host is checked from there.
    db = panel.locator(".host-group", has_text="tag:db")
    db.locator("summary").click()
    rows = db.locator(".host-row")
    rows.first.wait_for(timeout=TIMEOUT)
    assert rows.count() == 30 and db.locator(".host-more").count() == 0
    assert rows.nth(6).locator(".host-state").inner_text() == "offline"  # db-007
    row = rows.nth(2)
    assert row.locator(".host-name").inner_text() == "db-003"
    row.locator("button", has_text="Check").click()
    row.locator(".check-result").wait_for(timeout=TIMEOUT)
    assert "answers over SSH" in row.locator(".check-result").inner_text()
    assert row.locator(".host-state.online").inner_text() == "answers"
    row.scroll_into_view_if_needed()
    check_state(page, fleet_chat.url, f"hosts-300-group-open-{width}")

    # A search: 50 rows at a time, then the rest on demand; clearing it brings the groups back.
    page.fill("#host-q", "web-1")
    page.wait_for_function("() => document.querySelectorAll('#host-list > .host-row')"
                           ".length === 50", timeout=TIMEOUT)
    more = panel.locator(".host-more button")
    assert " ".join(more.inner_text().split()) == "Show 31 more (31 left)"
    names = panel.locator("#host-list > .host-row .host-name")
    assert names.first.inner_text() == "web-100"
    assert panel.locator(".host-found").inner_text() == "81 hosts match “web-1”"
    more.click()
    page.wait_for_function("() => document.querySelectorAll('#host-list > .host-row')"
                           ".length === 81", timeout=TIMEOUT)
    assert names.last.inner_text() == "web-180" and panel.locator(".host-more").count() == 0
    page.locator("#host-q").scroll_into_view_if_needed()
    check_state(page, fleet_chat.url, f"hosts-300-search-{width}")
    page.select_option("#host-tag", "tag:prod")
    page.wait_for_function("() => document.querySelectorAll('#host-list > .host-row')"
                           ".length === 21", timeout=TIMEOUT)  # web-1xx with tag:prod
    page.fill("#host-q", "")
    page.select_option("#host-tag", "")
    page.wait_for_function("() => document.querySelectorAll('#host-list > .host-group')"
                           ".length === 5", timeout=TIMEOUT)
    assert not page.console_errors, page.console_errors


def test_a_small_fleet_is_listed_as_it_is(sshd: Sshd, open_page: PageFactory) -> None:
    """Up to 12 hosts: every row, no search box, no groups (what the other tests see)."""
    settings = Settings(hosts={n: sshd.host_config(n) for n in ("b-host", "a-host")},
                        default_host="b-host")
    app = ServedChat(settings, load_catalog([]), ChatOptions()).start()
    try:
        page = open_page(DESKTOP)
        page.goto(app.url + "/")
        names = page.locator("#hosts .host-row .host-name")
        assert [names.nth(i).inner_text() for i in range(names.count())] == ["b-host",
                                                                             "a-host"]
        assert page.locator("#host-q").count() == 0
        assert page.locator("#hosts .host-group").count() == 0
    finally:
        app.stop()
