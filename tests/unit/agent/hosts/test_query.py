"""Filtering and paging the hosts (agent/hosts/query.py): what list_hosts, the hosts
resource and the chat's hosts panel are built on."""

from __future__ import annotations

import pytest

from agent.errors import ConfigError
from agent.hosts.query import HostQuery, page_note, query_hosts
from agent.hosts.registry import HostView

VIEWS = [
    HostView(name="web-10", address="a", user="u", port=22, online=True, tags=("tag:web",)),
    HostView(name="web-2", address="a", user="u", port=22, online=False, tags=("tag:web",)),
    HostView(name="db-1", address="a", user="u", port=22, online=True,
             tags=("tag:db", "tag:prod")),
    HostView(name="Lab", address="a", user="u", port=22, default=True),
]


def names(query: HostQuery) -> list[str]:
    return [v.name for v in query_hosts(VIEWS, query).hosts]


def again(cursor: str) -> str:
    return f"ask again after {cursor}"


def test_pages_are_in_name_order_and_the_cursor_is_the_last_name() -> None:
    page = query_hosts(VIEWS, HostQuery(limit=2))
    assert [v.name for v in page.hosts] == ["Lab", "db-1"]
    assert (page.total, page.start, page.more, page.next_cursor) == (4, 0, 2, "db-1")
    assert page.default == "Lab"
    assert names(HostQuery(limit=2, cursor="db-1")) == ["web-10", "web-2"]
    assert names(HostQuery(cursor="zzz")) == []
    # A cursor that is no host's name still means "after it".
    assert names(HostQuery(cursor="e")) == ["web-10", "web-2"]


def test_filters_and_what_the_whole_selection_holds() -> None:
    assert names(HostQuery(tag="web")) == names(HostQuery(tag="tag:web")) == ["web-10", "web-2"]
    assert names(HostQuery(online=True)) == ["db-1", "web-10"]
    assert names(HostQuery(online=False)) == ["web-2"]  # not known is neither
    assert names(HostQuery(name="web-?")) == ["web-2"]  # a glob matches the whole name
    assert names(HostQuery(name="LAB")) == ["Lab"]  # without wildcards: part of it, any case
    page = query_hosts(VIEWS, HostQuery(tag="web"))
    assert page.online == {"online": 1, "offline": 1, "unknown": 0}
    assert page.tags == {"tag:web": 2}
    assert query_hosts(VIEWS, HostQuery()).untagged == 1


def test_what_the_note_says() -> None:
    everything = HostQuery()
    assert page_note(query_hosts(VIEWS, everything), everything, again) == "All 4 host(s)."
    two = HostQuery(limit=2, tag="web", online=True)
    note = page_note(query_hosts(VIEWS, HostQuery(limit=1, tag="web")),
                     HostQuery(limit=1, tag="web"), again)
    assert note.startswith("Hosts 1-1 of 2 matching tag=tag:web, by name. 1 more: ask again "
                           "after web-10, or narrow")
    assert page_note(query_hosts(VIEWS, two), two, again) == (
        "All 1 host(s) matching tag=tag:web, online=true.")
    nothing = HostQuery(name="x*")
    assert page_note(query_hosts(VIEWS, nothing), nothing, again) == "No host matching name=x*."
    assert page_note(query_hosts([], everything), everything, again) == (
        "No host you may use is configured.")


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": 201}, {"name": "*" * 201}])
def test_a_page_is_bounded(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        HostQuery(**bad)  # type: ignore[arg-type]
