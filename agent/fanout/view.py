"""What a caller is shown of a fan-out: grouped outcomes, within a byte budget, whatever
the number of hosts; the rest behind one handle.

The result lists the groups of hosts that ended the same way (agent.fanout.outcome_groups:
largest first, each with its hosts in the compact notation of agent.fanout.hostlist and one
copy of the output, its data, its notes and its first host's audit id, `audit_host`'s
recording) and then the hosts on their own, with their own output, data, notes and audit
id. A command's rows (`data`, agent.output.parsing; with a filter, the rows that matched)
are cut like its text: the rows that fit, and how many were left out (`rows_not_shown`,
read whole at `rows_handle`). Its size, as
compact JSON (what MCP sends as the text content, and again as the structured content),
stays within `budget` bytes (TAILNET_AGENT_FANOUT_RESULT_BYTES): if everything does not
fit as it is, long host lists and outputs are cut shorter, step by step, until it does;
if no step makes everything fit (hundreds of hosts with outputs of their own), the result
shows, in order, the entries that fit with outputs of up to a thirty-second of the budget
each (`SAMPLE_STEP`), and counts what it left out in `not_shown`.

Nothing is lost: whenever something was cut or left out, the whole of it (every group
with its full host list, every host with its output as a single call would have shown
it) is kept as one document behind a paging handle (agent.output.store), one JSON line
per group (with every host's audit id, `audit_ids`, in the order of `hosts`) and per
host. `read_output(handle)` pages through it; `read_output(handle/
<host>)` reads one host's line (for a host in a group: its group's), and
`read_output(handle/group-<n>)` a group's. The result says how.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .host_outcome import HostOutcome
from .hostlist import compact, compact_within
from .outcome_groups import OutcomeGroup, group_outcomes

MIN_CUT = 200  # bytes: the last step's output and host-list length per entry
# When no step fits everything, the result is a sample: the entries that fit at this step
# (outputs of up to a thirty-second of the budget each, 1 KB at the default), in order.
SAMPLE_STEP = 2


def compact_json(value: Any) -> str:
    """`value` as the result is sent (MCP's text content) and measured: compact JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def size(value: Any) -> int:
    """Bytes of `value` as compact JSON (UTF-8, as MCP sends it)."""
    return len(compact_json(value).encode())


@dataclass(frozen=True)
class Part:
    """One line of the kept document, and the names that read it (`handle/<name>`)."""

    names: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class View:
    fields: dict[str, Any]  # groups, hosts and, when something was cut, listing/not_shown
    document: tuple[Part, ...] = field(default=())  # to keep behind the handle; () if none

    @property
    def cut(self) -> bool:
        return bool(self.document)


def steps(budget: int) -> list[tuple[int | None, int]]:
    """(output cut, host-list cut) per entry, from the most generous to the last resort."""
    return [(None, max(MIN_CUT, budget // 4)), (max(MIN_CUT, budget // 8),) * 2,
            (max(MIN_CUT, budget // 32),) * 2, (MIN_CUT, MIN_CUT)]


def _clipped(text: str, limit: int | None, where: str) -> tuple[str, bool]:
    data = text.encode()
    if limit is None or len(data) <= limit:
        return text, False
    head = data[:limit]
    line_end = head.rfind(b"\n")
    if line_end >= limit // 2:
        head = head[:line_end + 1]
    hidden = len(data) - len(head)
    return (head.decode(errors="ignore")
            + f"\n[... {hidden} more bytes: read_output(handle=\"{where}\") ...]\n"), True


def _outputs(outcome: HostOutcome, limit: int | None, where: str) -> tuple[dict[str, Any], bool]:
    """Its text and its rows, each cut at `limit` bytes (None: whole)."""
    shown: dict[str, Any] = {}
    cut = False
    for stream in ("stdout", "stderr"):
        text, clipped = _clipped(getattr(outcome, stream), limit, where)
        if text:
            shown[stream] = text
        cut |= clipped
    rows, clipped = _rows(outcome.data, limit, where)
    return {**shown, **rows}, cut or clipped


def _rows(data: Any, limit: int | None, where: str) -> tuple[dict[str, Any], bool]:
    """`data` (a list of rows, or one object) as the rows that fit in `limit` bytes of
    JSON, in order, and how many did not (read whole at `where`)."""
    if data is None:
        return {}, False
    if limit is None or size(data) <= limit:
        return {"data": data}, False
    shown: list[Any] = []
    if isinstance(data, list):
        used = 2
        for row in data:
            used += size(row) + 1
            if used > limit:
                break
            shown.append(row)
    total = len(data) if isinstance(data, list) else 1
    return ({"data": shown} if shown else {}) | {
        "rows_not_shown": total - len(shown), "rows_handle": where}, True


def _longest(outcome: HostOutcome) -> int:
    """Bytes of its longest text, or of its rows as JSON: what a cut could shorten."""
    data = size(outcome.data) if outcome.data is not None else 0
    return max(len(outcome.stdout.encode()), len(outcome.stderr.encode()), data)


def _group_line(group: OutcomeGroup, number: int) -> dict[str, Any]:
    """A group as the kept document has it: every host named, the output whole."""
    data = group.outcome.to_dict()
    for name in ("host", "duration_ms", "batch", "audit_id"):
        data.pop(name, None)
    if group.error:
        data["error"] = group.error
    line = {"group": number, "count": len(group.hosts), "hosts": list(group.hosts), **data}
    if any(group.audit_ids):
        line["audit_ids"] = list(group.audit_ids)
    return line


def _group_entry(group: OutcomeGroup, number: int, limits: tuple[int | None, int],
                 handle: str) -> tuple[dict[str, Any], bool]:
    where = f"{handle}/group-{number}"
    hosts = compact_within(group.hosts, limits[1])
    entry: dict[str, Any] = {"hosts": hosts.text, "count": len(group.hosts)}
    if hosts.more:
        entry.update(hosts_not_listed=hosts.more, hosts_handle=where)
    line = _group_line(group, number)
    for name in ("status", "exit_status", "truncated", "timed_out", "error", "output_handle",
                 "note", "matched"):
        if name in line:
            entry[name] = line[name]
    if group.outcome.audit_id:  # the first host's recording: its output is the group's
        entry.update(audit_id=group.outcome.audit_id, audit_host=group.outcome.host)
    outputs, clipped = _outputs(group.outcome, limits[0], where)
    return {**entry, **outputs}, clipped or bool(hosts.more)


def _host_entry(outcome: HostOutcome, limit: int | None, handle: str
                ) -> tuple[dict[str, Any], bool]:
    entry = outcome.to_dict()
    outputs, clipped = _outputs(outcome, limit, f"{handle}/{outcome.host}")
    for name in ("stdout", "stderr", "data"):
        entry.pop(name, None)
    entry.update(outputs)
    return entry, clipped


class Fitted(NamedTuple):
    groups: list[dict[str, Any]]  # the groups' entries shown
    hosts: list[dict[str, Any]]  # the entries of the hosts on their own shown
    cut: bool  # something was cut or left out

    def complete(self, groups: Sequence[OutcomeGroup], alone: Sequence[HostOutcome]) -> bool:
        return len(self.groups) == len(groups) and len(self.hosts) == len(alone)


def _fit(groups: Sequence[OutcomeGroup], alone: Sequence[HostOutcome],
         limits: tuple[int | None, int], handle: str, room: int) -> Fitted:
    """The entries that fit in `room` bytes with outputs and host lists cut at `limits`:
    the groups, then the hosts on their own, in order, up to the first that does not."""
    used = 0
    shown_groups: list[dict[str, Any]] = []
    shown_alone: list[dict[str, Any]] = []
    cut = False
    for number, group in enumerate(groups, start=1):
        entry, clipped = _group_entry(group, number, limits, handle)
        used += size(entry) + 1
        if used > room:
            return Fitted(shown_groups, shown_alone, True)
        shown_groups.append(entry)
        cut |= clipped
    for outcome in alone:
        entry, clipped = _host_entry(outcome, limits[0], handle)
        used += size(entry) + 1
        if used > room:
            return Fitted(shown_groups, shown_alone, True)
        shown_alone.append(entry)
        cut |= clipped
    return Fitted(shown_groups, shown_alone, cut)


def how_to_read(handle: str) -> str:
    return (f"read_output(handle=\"{handle}\") pages through every group and host, one JSON "
            f"line each; read_output(handle=\"{handle}/<host name>\") reads one host, "
            f"read_output(handle=\"{handle}/group-<n>\") one group with all its hosts")


def present(head: dict[str, Any], outcomes: Sequence[HostOutcome], *, budget: int,
            handle: str) -> View:
    """The groups and hosts of `outcomes` to show with `head` (the result's other fields),
    the whole within `budget` bytes; `handle` is the one the kept document will have."""
    groups, alone = group_outcomes(outcomes)
    listing = {"handle": handle, "read": how_to_read(handle)}
    # Room for what a cut adds: the listing, and the counts of what is not shown.
    most = {"groups": len(groups), "alone": len(alone), "hosts": len(outcomes),
            "by_status": dict(Counter(o.status for o in outcomes))}
    reserve = size({"listing": listing, "not_shown": most}) + 2
    room = budget - size({**head, "groups": [], "hosts": []}) - reserve
    tried = steps(budget)
    # A step shows something else than the one before only if it cuts something more.
    longest_output = max((_longest(o) for o in [*(g.outcome for g in groups), *alone]),
                         default=0)
    longest_list = max((len(compact(g.hosts)) for g in groups), default=0)
    fitted: list[Fitted] = []
    for number, (output_cut, list_cut) in enumerate(tried):
        if number and longest_output <= (output_cut or 0) and longest_list <= list_cut:
            fitted.append(fitted[-1])
            continue
        fitted.append(_fit(groups, alone, (output_cut, list_cut), handle, room))
        if fitted[-1].complete(groups, alone):
            break
    chosen = fitted[-1] if fitted[-1].complete(groups, alone) else fitted[SAMPLE_STEP]
    shown_groups, shown_alone, cut = chosen
    fields: dict[str, Any] = {"groups": shown_groups, "hosts": shown_alone}
    if not cut:
        return View(fields)
    left_groups = groups[len(shown_groups):]
    left_alone = alone[len(shown_alone):]
    fields["listing"] = listing
    if left_groups or left_alone:
        left = [o for g in left_groups for o in g.hosts] + [o.host for o in left_alone]
        statuses = Counter(g.status for g in left_groups for _ in g.hosts)
        statuses.update(o.status for o in left_alone)
        fields["not_shown"] = {"groups": len(left_groups), "alone": len(left_alone),
                               "hosts": len(left), "by_status": dict(statuses)}
    return View(fields, _document(head, groups, alone))


def _document(head: dict[str, Any], groups: Sequence[OutcomeGroup],
              alone: Sequence[HostOutcome]) -> tuple[Part, ...]:
    def line(value: dict[str, Any]) -> str:
        return compact_json(value) + "\n"

    parts = [Part((), line(head))]
    parts += [Part((f"group-{n}", *g.hosts), line(_group_line(g, n)))
              for n, g in enumerate(groups, start=1)]
    parts += [Part((o.host,), line(o.to_dict())) for o in alone]
    return tuple(parts)
