"""A fleet a page at a time: the hosts a caller may use, filtered (by tag, online state,
name) and cut into pages, with what the whole selection holds.

list_hosts, the hosts resource and the chat's hosts panel all answer from here, so a
fleet of 1,000 hosts costs a model one page (50 hosts by default, about 12 KB) plus a
summary (how many match, how many are online, the tags and their counts), and a person
a search box and groups instead of 1,000 rows.

Pages are in name order and the cursor is the last name shown: the next page is the
hosts after it. Tailnet hosts come and go between two pages; a cursor never skips or
repeats a host that stayed, whatever joined or left meanwhile.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.errors import ConfigError

from .registry import HostView

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_TAGS = 30  # tags listed in a page's summary, most hosts first
MAX_PATTERN = 200
TAG_PREFIX = "tag:"
WILDCARDS = "*?["


@dataclass(frozen=True)
class HostQuery:
    tag: str | None = None  # a tailnet tag, with or without its `tag:` prefix
    online: bool | None = None  # True: online in the tailnet; False: offline
    name: str | None = None  # a glob (web-*), or part of the name (case-insensitive)
    cursor: str | None = None  # the last name of the previous page
    limit: int = DEFAULT_LIMIT
    untagged: bool = False  # only hosts without any tag (the chat's "no tag" group)

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ConfigError(f"limit must be between 1 and {MAX_LIMIT} hosts a page")
        if self.name is not None and len(self.name) > MAX_PATTERN:
            raise ConfigError(f"a name pattern is at most {MAX_PATTERN} characters")

    @property
    def wanted_tag(self) -> str | None:
        if not self.tag:
            return None
        tag = self.tag.strip()
        return tag if tag.startswith(TAG_PREFIX) else TAG_PREFIX + tag

    def matches(self, host: HostView) -> bool:
        tag = self.wanted_tag
        if tag is not None and tag not in host.tags:
            return False
        if self.untagged and host.tags:
            return False
        if self.online is not None and host.online is not self.online:
            return False
        return not self.name or _name_matches(self.name, host.name)

    def filters(self) -> str:
        """The filters, as a caller would write them back ("tag=web, online=true")."""
        shown = [f"tag={self.wanted_tag}" if self.tag else "",
                 f"online={str(self.online).lower()}" if self.online is not None else "",
                 f"name={self.name}" if self.name else ""]
        return ", ".join(s for s in shown if s)


def _name_matches(pattern: str, name: str) -> bool:
    if any(ch in pattern for ch in WILDCARDS):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern.lower() in name.lower()


@dataclass(frozen=True)
class HostPage:
    hosts: tuple[HostView, ...]
    total: int  # hosts matching the filters, on every page
    start: int  # how many matching hosts come before this page
    next_cursor: str | None  # None: this is the last page
    default: str | None = None  # the default host, if among the caller's (whatever the filters)
    online: dict[str, int] = field(default_factory=dict)  # online / offline / unknown
    tags: dict[str, int] = field(default_factory=dict)  # tag -> matching hosts with it
    untagged: int = 0  # matching hosts without any tag

    @property
    def more(self) -> int:
        return self.total - self.start - len(self.hosts)


def query_hosts(views: Sequence[HostView], query: HostQuery) -> HostPage:
    """The page `query` asks for among `views` (the hosts a caller may use)."""
    matching = sorted((v for v in views if query.matches(v)), key=lambda v: v.name)
    start = 0
    if query.cursor:
        start = next((i for i, v in enumerate(matching) if v.name > query.cursor),
                     len(matching))
    page = tuple(matching[start:start + query.limit])
    more = start + len(page) < len(matching)
    tags = Counter(t for v in matching for t in v.tags)
    return HostPage(
        hosts=page, total=len(matching), start=start,
        next_cursor=page[-1].name if more and page else None,
        default=next((v.name for v in views if v.default), None),
        online={"online": sum(v.online is True for v in matching),
                "offline": sum(v.online is False for v in matching),
                "unknown": sum(v.online is None for v in matching)},
        tags=dict(tags.most_common(MAX_TAGS)),
        untagged=sum(not v.tags for v in matching))


def page_note(page: HostPage, query: HostQuery, next_page: Callable[[str], str]) -> str:
    """What a model is told about the page: where it is in the selection, how to get the
    rest (`next_page(cursor)` says how), and that run_on_hosts needs no list."""
    where = f" matching {query.filters()}" if query.filters() else ""
    if not page.total:
        return f"No host{where}." if where else "No host you may use is configured."
    if page.start == 0 and not page.more:
        return f"All {page.total} host(s){where}."
    first, last = page.start + 1, page.start + len(page.hosts)
    note = f"Hosts {first}-{last} of {page.total}{where}, by name."
    if page.next_cursor is not None:
        note += (f" {page.more} more: {next_page(page.next_cursor)}, or narrow "
                 "with tag, online or name (a glob like web-*). run_on_hosts takes "
                 "tag:<name>, globs and 'all' itself: no need to list every host first.")
    return note
