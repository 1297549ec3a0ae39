"""Read-only shares of a finished chat turn: what a link shows another tailnet identity.

A share is a copy of one turn taken when its "Share" button is pressed: the question, the
answer, the tool cards with their output as the page showed it, each card's audit id
(its replay link), and the audit start records of those calls. Every text in the copy
goes through the agent's redactor once more, so a command whose output the catalog shows
unredacted (`redact: false`), or a secret typed into the question, is shared redacted.
It holds nothing that grants anything: no chat token, no API key, no form; its id is an
unguessable name, not a key.

Who may open it: the person who shared it, and anyone who may see the audit record of
every call in it (agent.audit.reader.may_see: an auditor, the person who
approved them all). A turn that ran no command opens for its author and auditors only.
The same rule answers the replay links inside it.

Kept in memory, like the conversation it comes from: a share is a view, while the
record (the audit log and the recordings on disk) outlives it. Bounded: each lasts
TAILNET_AGENT_SHARE_TTL seconds, at most MAX_PER_IDENTITY per person and MAX_SHARES in
all, MAX_BYTES of copies together; the oldest go first. A restart ends every share.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.access.identity import Identity
from agent.access.policy import Policy
from agent.audit.reader import may_see

from .cards import FanoutRow, ToolCard
from .history import DisplayItem, Turn

MAX_SHARES = 200
MAX_PER_IDENTITY = 20
MAX_BYTES = 32_000_000  # characters of all copies together

Redact = Callable[[str], str]


@dataclass
class Share:
    id: str
    owner: Identity
    created: datetime
    expires: float  # monotonic
    items: tuple[DisplayItem, ...]
    calls: tuple[dict[str, Any], ...]  # the start records of its calls, from the audit log
    size: int
    # Who opened it already (Identity.key -> allowed?): each is recorded in the audit log once.
    opened: dict[str, bool] = field(default_factory=dict)

    @property
    def audit_ids(self) -> list[str]:
        return [str(record.get("call")) for record in self.calls]

    def visible_to(self, viewer: Identity, policy: Policy) -> bool:
        if viewer.key == self.owner.key:
            return True
        if not self.calls:
            return policy.audits(viewer)
        return all(may_see(record, viewer, policy) for record in self.calls)


def redacted_items(items: Sequence[DisplayItem], redact: Redact) -> tuple[DisplayItem, ...]:
    """A copy of a turn's items in which every text has been through `redact`."""

    def row(r: FanoutRow) -> FanoutRow:
        return dataclasses.replace(r, stdout=redact(r.stdout), stderr=redact(r.stderr),
                                   error=redact(r.error), data=redact(r.data),
                                   note=redact(r.note))

    def card(c: ToolCard) -> ToolCard:
        return dataclasses.replace(c, rendered=redact(c.rendered), stdout=redact(c.stdout),
                                   stderr=redact(c.stderr), error=redact(c.error),
                                   output=redact(c.output),
                                   fanout=tuple(row(r) for r in c.fanout))

    return tuple(DisplayItem(i.kind, redact(i.text), card(i.card) if i.card else None)
                 for i in items)


class ShareStore:
    def __init__(self, ttl: float, *, max_shares: int = MAX_SHARES,
                 per_identity: int = MAX_PER_IDENTITY, max_bytes: int = MAX_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_shares, self.per_identity, self.max_bytes = max_shares, per_identity, max_bytes
        self._clock = clock
        self._shares: OrderedDict[str, Share] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def create(self, owner: Identity, turn: Turn, calls: Sequence[dict[str, Any]],
               redact: Redact) -> Share:
        items = redacted_items(turn.items, redact)
        share = Share(id=secrets.token_urlsafe(18), owner=owner, created=datetime.now(UTC),
                      expires=self._clock() + self.ttl, items=items, calls=tuple(calls),
                      size=sum(item.size for item in items))
        with self._lock:
            self._expire()
            mine = [s.id for s in self._shares.values() if s.owner.key == owner.key]
            for old in mine[: max(0, len(mine) - self.per_identity + 1)]:
                del self._shares[old]
            self._shares[share.id] = share
            while len(self._shares) > 1 and (
                    len(self._shares) > self.max_shares or self._bytes() > self.max_bytes):
                self._shares.popitem(last=False)
        return share

    def get(self, share_id: str) -> Share | None:
        with self._lock:
            self._expire()
            return self._shares.get(share_id)

    def forget(self, share_id: str) -> None:
        with self._lock:
            self._shares.pop(share_id, None)

    def _bytes(self) -> int:
        return sum(s.size for s in self._shares.values())

    def _expire(self) -> None:
        now = self._clock()
        for old in [k for k, s in self._shares.items() if s.expires <= now]:
            del self._shares[old]

    def __len__(self) -> int:
        return len(self._shares)
