"""Claude's fan-out in the chat: run_on_hosts is among its tools, the result is a table of
groups of hosts that ended the same way and hosts on their own, failures first, and a
destructive fan-out waits for one click naming the hosts (compacted), how many and the
strategy; on a fleet of 64 hosts (tests/bench/scale_hosts.py) the card shows the groups at a
laptop's and a phone's width."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from tests.bench.scale_hosts import LoopbackFleet
from tests.support.browser import PHONE, TIMEOUT, PageFactory, ask, check_state, wait_idle
from tests.support.chat import ServedChat, chat_options
from tests.support.fake_anthropic import FakeAnthropic, Step, Text, ToolUse, tool_results
from tests.support.sshd import Sshd, login_writable
from whitelist import load_catalog


@pytest.fixture
def marks() -> Iterator[Path]:
    with login_writable("tnagent-chat-fanout-") as directory:
        yield directory


def serving(hosts: dict[str, HostConfig], catalog: str, folder: Path
            ) -> Iterator[Callable[[FakeAnthropic], ServedChat]]:
    """`start(fake)`: the chat app over `hosts` (the first is the default) with the extra
    `catalog`, asking `fake`; every app started is stopped afterwards."""
    (folder / "extra.yaml").write_text(catalog)
    served: list[ServedChat] = []

    def start(fake: FakeAnthropic) -> ServedChat:
        settings = Settings(hosts=hosts, default_host=next(iter(hosts)),
                            anthropic_model="claude-test",
                            anthropic_api_key="sk-ant-test-not-a-real-key",
                            anthropic_base_url=fake.base_url)
        app = ServedChat(settings, load_catalog([folder / "extra.yaml"]), chat_options()).start()
        served.append(app)
        return app

    yield start
    for app in served:
        app.stop()


@pytest.fixture
def fanout_chat(sshd: Sshd, marks: Path, tmp_path: Path, fake_api: Any) -> Iterator[Any]:
    """The chat app over three hosts: the test sshd as web-1 and web-2, and web-3 where
    nothing listens."""
    hosts = {name: sshd.host_config(name) for name in ("web-1", "web-2")}
    hosts["web-3"] = dataclasses.replace(sshd.host_config("web-3"), port=1)
    yield from serving(hosts, f"""
commands:
  mark_all:
    description: Leave a mark (test command, destructive).
    category: Test
    destructive: true
    template: "touch -- {marks}/mark"
""", tmp_path)


def test_claude_fans_out_and_the_card_puts_failures_first(
    fanout_chat: Any, fake_api: Any, page: Any, open_page: PageFactory
) -> None:
    fake = fake_api([
        Step(when="hostnames", reply=[Text("Asking every host."),
                                      ToolUse("run_on_hosts", {"command": "hostname",
                                                               "hosts": ["all"]})]),
        Step(when="summary", reply=[Text("Two of three hosts answered; web-3 is unreachable.")]),
    ])
    app = fanout_chat(fake)
    page.goto(app.url + "/")
    ask(page, "what are the hostnames of all hosts?")
    page.wait_for_selector("text=web-3 is unreachable", timeout=TIMEOUT)
    wait_idle(page, 1)

    card = page.locator("article.card.fanout").last
    assert "2 of 3 hosts ok" in card.locator(".card-head").inner_text()
    assert "on 3 hosts" in card.locator(".card-head").inner_text()
    rows = card.locator("tr.fanout-row")
    # web-1 and web-2 are the same machine: one group, one copy of its name.
    assert [rows.nth(i).get_attribute("data-host") for i in range(2)] == ["web-3", "web-[1-2]"]
    assert rows.nth(0).locator(".badge").inner_text() == "failed"
    assert "cannot reach web-3" in rows.nth(0).inner_text()
    assert "2 hosts, same output" in rows.nth(1).inner_text()
    # The group links to its first host's recording (the output it shows); every host that
    # ran has its own audit id, in the result the model got too.
    replays = [rows.nth(i).locator("a.replay") for i in range(2)]
    assert [r.count() for r in replays] == [0, 1]
    assert replays[1].inner_text() == "Replay web-1"
    # Claude had the tool, and got the structured result, grouped.
    assert "run_on_hosts" in {tool["name"] for tool in fake.requests[0]["tools"]}
    sent = json.loads(tool_results(fake.requests[-1])[-1]["content"])
    assert sent["summary"] == {"total": 3, "ok": 2, "failed": 1, "offline": 0, "refused": 0,
                               "skipped": 0}
    assert [g["hosts"] for g in sent["groups"]] == ["web-[1-2]"]
    assert sent["groups"][0]["audit_host"] == "web-1"
    assert replays[1].get_attribute("href") == f"/audit/{sent['groups'][0]['audit_id']}/replay"
    check_state(page, app.url, "chat-fanout")
    # On a phone the table scrolls sideways inside its card instead of squeezing.
    phone = open_page(PHONE, "dark")
    phone.goto(app.url + "/")
    wrap = phone.locator("article.card.fanout .table-wrap").last
    wrap.wait_for(timeout=TIMEOUT)
    assert wrap.evaluate("e => e.scrollWidth > e.clientWidth"), "the table squeezes"
    wrap.scroll_into_view_if_needed()
    check_state(phone, app.url, "phone-dark-chat-fanout")


def test_a_destructive_fan_out_in_chat_waits_for_one_click_naming_every_host(
    fanout_chat: Any, fake_api: Any, page: Any, marks: Path
) -> None:
    fake = fake_api([
        Step(when="mark the web", reply=[Text("Marking."),
                                 ToolUse("run_on_hosts", {"command": "mark_all",
                                                          "hosts": "web-1, web-2"})]),
        Step(when="summary", reply=[Text("Both hosts are marked.")]),
    ])
    app = fanout_chat(fake)
    page.goto(app.url + "/")
    ask(page, "mark the web hosts")
    confirm = page.wait_for_selector(".confirm", timeout=TIMEOUT)
    text = confirm.inner_text()
    assert "on 2 hosts" in text and "web-[1-2]" in text
    assert "canary: web-1 first, then the other host only if it succeeded" in text
    assert f"touch -- {marks}/mark" in text
    assert not (marks / "mark").exists()
    page.click(".confirm button[value=confirm]")
    page.wait_for_selector("text=Both hosts are marked", timeout=TIMEOUT)
    wait_idle(page, 1)
    assert (marks / "mark").exists()
    sent = json.loads(tool_results(fake.requests[-1])[-1]["content"])
    assert [(g["hosts"], g["status"]) for g in sent["groups"]] == [("web-[1-2]", "ok")]
    assert sent["strategy"]["name"] == "canary"


# -- a fleet ------------------------------------------------------------------------------

FLEET = 60  # real hosts: web-001.., app-..., db-...; 4 more where nothing listens


@pytest.fixture(scope="module")
def loopback_fleet() -> Iterator[LoopbackFleet]:
    with LoopbackFleet(FLEET, servers=1) as made:
        yield made


@pytest.fixture
def fleet_chat(loopback_fleet: LoopbackFleet, marks: Path, tmp_path: Path) -> Iterator[Any]:
    hosts = loopback_fleet.host_configs(FLEET, tmp_path / "fleet")
    down = next(iter(hosts.values()))
    for n in range(1, 5):  # the same address and a closed port: the same failure
        hosts[f"old-{n}"] = dataclasses.replace(down, name=f"old-{n}", port=1)
    yield from serving(hosts, f"""
commands:
  mark_each:
    description: Leave a mark named after the host (test command, destructive).
    category: Test
    destructive: true
    template: 'touch -- {marks}/"$(hostname)"'
""", tmp_path)


def test_a_fleets_disks_are_a_few_groups_on_a_laptop_and_a_phone(
    fleet_chat: Any, fake_api: Any, page: Any, open_page: PageFactory
) -> None:
    fake = fake_api([
        Step(when="disks", reply=[Text("Checking every disk."),
                                  ToolUse("run_on_hosts", {"command": "disk_usage",
                                                           "hosts": "all"})]),
        Step(when="summary", reply=[Text("Two hosts are over 90 % full.")]),
    ])
    app = fleet_chat(fake)
    page.goto(app.url + "/")
    ask(page, "how full are the disks?")
    page.wait_for_selector("text=Two hosts are over 90 % full", timeout=TIMEOUT)
    wait_idle(page, 1)
    card = page.locator("article.card.fanout").last
    assert "60 of 64 hosts ok" in card.locator(".card-head").inner_text()
    rows = card.locator("tr.fanout-row")
    shown = [(rows.nth(i).get_attribute("data-host"), rows.nth(i).get_attribute("data-count"))
             for i in range(rows.count())]
    # Failures first; then the groups of the result, largest first: 4 rows for 64 hosts.
    assert shown == [
        ("old-[1-4]", "4"),
        ("web-[001-004,006-007,009,011-014,016-019,021-024,026-029,031-034,036], "
         "app-[001-003,005-008,010-013,015-018], db-[002-003,005]", "46"),
        ("web-[005,010,015,020,025,030,035], app-[004,009,014], db-[001,006]", "12"),
        ("web-008, db-004", "2")], shown
    assert "&amp;lt;" not in card.inner_html()  # escaped once, shown as text
    assert "<host>" in rows.nth(0).inner_text()
    check_state(page, app.url, "chat-fanout-groups")
    phone = open_page(PHONE)
    phone.goto(app.url + "/")
    wrap = phone.locator("article.card.fanout .table-wrap").last
    wrap.wait_for(timeout=TIMEOUT)
    wrap.scroll_into_view_if_needed()
    check_state(phone, app.url, "phone-chat-fanout-groups")


def test_a_fleet_wide_destructive_command_confirms_hosts_and_strategy_then_runs_a_canary(
    fleet_chat: Any, fake_api: Any, page: Any, open_page: PageFactory, marks: Path
) -> None:
    fake = fake_api([
        Step(when="mark every", reply=[Text("Marking every host."),
                                       ToolUse("run_on_hosts", {"command": "mark_each",
                                                                "hosts": "all"})]),
        Step(when="summary", reply=[Text("Marked.")]),
    ])
    app = fleet_chat(fake)
    page.goto(app.url + "/")
    ask(page, "mark every host")
    confirm = page.wait_for_selector(".confirm", timeout=TIMEOUT)
    text = " ".join(confirm.inner_text().split())
    assert "Run mark_each on 64 hosts?" in text
    assert "web-[001-036], app-[001-018], db-[001-006], old-[1-4]" in text
    assert "canary: web-001 first, then the other 63 only if it succeeded" in text
    check_state(page, app.url, "chat-fanout-confirm")
    phone = open_page(PHONE)
    phone.goto(app.url + "/")
    phone.wait_for_selector(".confirm", timeout=TIMEOUT).scroll_into_view_if_needed()
    check_state(phone, app.url, "phone-chat-fanout-confirm")
    assert list(marks.iterdir()) == []
    page.click(".confirm button[value=confirm]")
    page.wait_for_selector("text=Marked.", timeout=TIMEOUT)
    wait_idle(page, 1)
    assert len(list(marks.iterdir())) == FLEET
    sent = json.loads(tool_results(fake.requests[-1])[-1]["content"])
    assert sent["summary"]["ok"] == FLEET and sent["summary"]["failed"] == 4
