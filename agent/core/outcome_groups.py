"""Hosts of a fan-out that ended the same way, grouped: one output for many hosts.

Two hosts are in one group when their status, exit status, whether the output was cut or
timed out, their whole output (redacted, compared by its digest, agent.core.spool) and
the agent's own error message are the same. The error message names the host ("cannot
reach web-2: ..."), so it is compared with the host's name in it replaced by `<host>`;
the output is data and is compared as it is. Groups of two hosts or more come largest
first; every other host is on its own, what needs a look first (failed, refused,
offline, skipped, then ok), each kind in the order the hosts were named.
"""

from __future__ import annotations

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
    # The digest covers the whole output; without one (nothing ran, or a runner that kept
    # no output), what is shown is all there is to compare.
    output: tuple[str, ...] = ((outcome.digest,) if outcome.digest
                               else (outcome.stdout, outcome.stderr))
    return (outcome.status, outcome.exit_status, outcome.truncated, outcome.timed_out,
            generic_error(outcome), *output)


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
                                       generic_error(members[0])))
    # Stable sorts: equal sizes (and kinds) stay in the order their first host was named.
    groups.sort(key=lambda g: (-len(g.hosts), SEVERITY.get(g.status, 0)))
    alone.sort(key=lambda o: SEVERITY.get(o.status, 0))
    return groups, alone
