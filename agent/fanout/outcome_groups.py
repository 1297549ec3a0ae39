"""Hosts of a fan-out that ended the same way, grouped: one output for many hosts.

Two hosts are in one group when their status, exit status, whether the output was cut or
timed out, their whole output (redacted, compared by its digest, agent.output.spool), the
agent's own error message, and what the output says as data are the same: its parse
note, the filter's verdict and note, and (where a filter's matching rows stand for the
output, which then has no digest) those rows. Where there is a digest, the data is not
compared again: it is parsed from the whole stdout the digest covers (agent.output.parsing),
so equal digests give equal rows, and comparing the rows themselves would cost a host's
whole parsed output in CPU. The verdict and the notes are compared whatever the digest:
identical outputs can differ there (the filter's time budget for a fan-out can run out
between two of them, agent.fanout.row_filter). The error message names the host ("cannot
reach web-2: ..."), so it is compared with the host's name in it replaced by `<host>`;
the output is data and is compared as it is. Groups of two hosts or more come largest
first; every other host is on its own, what needs a look first (failed, refused,
offline, skipped, then ok), each kind in the order the hosts were named.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .host_outcome import SEVERITY, HostOutcome

HOST_PLACEHOLDER = "<host>"


@dataclass(frozen=True)
class OutcomeGroup:
    hosts: tuple[str, ...]  # in the order they were named
    outcome: HostOutcome  # the first host's: its output stands for every host's
    error: str  # the error message, the host's name replaced by HOST_PLACEHOLDER
    # Each host's call in the audit log (its recording), in the order of `hosts`; the
    # first is `outcome`'s.
    audit_ids: tuple[str | None, ...] = ()

    @property
    def status(self) -> str:
        return self.outcome.status


def generic_error(outcome: HostOutcome) -> str:
    """`outcome.error` with the host's own name (alone, or leading a DNS name) replaced."""
    if not outcome.error or not outcome.host:
        return outcome.error
    pattern = rf"(?<![A-Za-z0-9_.-]){re.escape(outcome.host)}(?![A-Za-z0-9_-])"
    return re.sub(pattern, HOST_PLACEHOLDER, outcome.error)


def _key(outcome: HostOutcome) -> tuple[object, ...]:
    # The digest covers the whole output; without one (nothing ran, a runner that kept no
    # output, rows a filter matched standing for it), what is shown is all there is to
    # compare.
    output: tuple[object, ...] = ((outcome.digest,) if outcome.digest
                                  else (outcome.stdout, outcome.stderr, _rows(outcome.data)))
    return (outcome.status, outcome.exit_status, outcome.truncated, outcome.timed_out,
            generic_error(outcome), outcome.note, outcome.matched, *output)


def _rows(data: object) -> str | None:
    """Data, comparable: JSON with sorted keys (rows are JSON from the parser)."""
    if data is None:
        return None
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def group_outcomes(outcomes: Sequence[HostOutcome]
                   ) -> tuple[list[OutcomeGroup], list[HostOutcome]]:
    """(groups of two hosts or more, largest first; the hosts on their own, what needs a
    look first), each in the order `outcomes` names the hosts."""
    by_key: dict[tuple[object, ...], list[HostOutcome]] = {}
    for outcome in outcomes:
        by_key.setdefault(_key(outcome), []).append(outcome)
    groups: list[OutcomeGroup] = []
    alone: list[HostOutcome] = []
    for members in by_key.values():
        if len(members) == 1:
            alone.append(members[0])
        else:
            groups.append(OutcomeGroup(tuple(m.host for m in members), members[0],
                                       generic_error(members[0]),
                                       tuple(m.audit_id for m in members)))
    # Stable sorts: equal sizes (and kinds) stay in the order their first host was named.
    groups.sort(key=lambda g: (-len(g.hosts), SEVERITY.get(g.status, 0)))
    alone.sort(key=lambda o: SEVERITY.get(o.status, 0))
    return groups, alone
