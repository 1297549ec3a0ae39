"""Readiness: can this agent take calls now? Its tailnet node is Running, and at least
one SSH host is reachable.

A host with an open SSH connection counts as reachable. When none has one, a few
hosts are probed (connect and shell check, the pool keeps the connection for the
first call): at most PROBE_AT_ONCE at a time, those that answered before first, then
the others in turn from where the last round stopped; the round ends at the first that
answers. So with 1,000 hosts and every connection closed idle, readiness opens one to
eight connections, not a thousand, and one unreachable host costs at most one connect
timeout. Any tailnet peer may ask, so the answer is shared: one evaluation at a time,
reused for `fresh_for` seconds, and a failed probe round is not repeated for
`reprobe_after` seconds, so a flood of readiness requests costs one LocalAPI call and
at most PROBE_AT_ONCE SSH connection attempts per interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .service import AgentService

CONNECTED = "connected"
REACHABLE = "reachable"
# Hosts probed at once (and at most per round) when no host has a connection.
PROBE_AT_ONCE = 8


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str  # "ready", or what is missing, in one line
    tailnet: str | None = None  # the node's state; None without a tailnet (local mode)
    hosts: Mapping[str, str] = field(default_factory=dict)  # host -> connected/reachable/error

    def summary(self) -> dict[str, Any]:
        """What any caller is told: no host names (a caller may not be allowed to see them)."""
        return {"ready": self.ready, "reason": self.reason, "tailnet": self.tailnet}

    def details(self) -> dict[str, Any]:
        """What the operator (and callers granted the metrics) is told."""
        return {**self.summary(), "hosts": dict(self.hosts)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class ReadinessCheck:
    def __init__(
        self, service: AgentService, *, fresh_for: float = 2.0, reprobe_after: float = 10.0
    ) -> None:
        self.service = service
        self.fresh_for = fresh_for
        self.reprobe_after = reprobe_after
        self.last: Readiness | None = None
        self._last_at = 0.0
        self._probed: dict[str, str] = {}  # the last probe round's answers
        self._answered: dict[str, None] = {}  # hosts seen reachable, most recent last
        self._turn = 0  # where the next round starts among the others
        self._next_probe_at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> Readiness | None:
        if self.last is not None and time.monotonic() - self._last_at < self.fresh_for:
            return self.last
        return None

    async def check(self) -> Readiness:
        if (fresh := self._fresh()) is not None:
            return fresh
        async with self._lock:  # one evaluation at a time; the others take its answer
            if (fresh := self._fresh()) is not None:
                return fresh
            self.last = await self._evaluate()
            self._last_at = time.monotonic()
            return self.last

    async def _evaluate(self) -> Readiness:
        tailnet: str | None = None
        if self.service.tailnet_status is not None:
            tailnet = str((await self.service.tailnet_status()).get("state") or "NoState")
            if tailnet != "Running":
                return Readiness(False, f"the tailnet node is {tailnet}, not Running", tailnet)
        registry = self.service.hosts  # the file's hosts and the tailnet's
        if not registry:
            return Readiness(False, "no SSH host is configured", tailnet)
        # A host the tailnet says is offline is not probed: it cannot answer.
        names = [n for n in registry if registry.presence(n).online is not False]
        if not names:
            return Readiness(False, f"all {len(registry)} SSH hosts are offline in the "
                             "tailnet", tailnet, dict.fromkeys(registry, "offline"))
        status = await self.service.pool.connection_status()
        hosts = {n: CONNECTED if status.get(n, {}).get("connected") else "not connected"
                 for n in names}
        for name, state in hosts.items():
            if state == CONNECTED:
                self._seen(name)
        if CONNECTED not in hosts.values():
            if time.monotonic() >= self._next_probe_at:
                self._probed = await self._probe(names)
                if REACHABLE not in self._probed.values():
                    self._next_probe_at = time.monotonic() + self.reprobe_after
            hosts.update(self._probed)
        reachable = sum(1 for v in hosts.values() if v in (CONNECTED, REACHABLE))
        if reachable == 0:
            return Readiness(False, f"none of the {len(names)} SSH hosts is reachable", tailnet,
                             hosts)
        return Readiness(True, "ready", tailnet, hosts)

    def _seen(self, name: str) -> None:
        self._answered.pop(name, None)
        self._answered[name] = None
        while len(self._answered) > PROBE_AT_ONCE:
            del self._answered[next(iter(self._answered))]

    def _candidates(self, names: list[str]) -> list[str]:
        """This round's hosts: those that answered before (most recent first), then the
        others in turn."""
        present = set(names)
        chosen = [n for n in reversed(self._answered) if n in present][:PROBE_AT_ONCE]
        others = [n for n in names if n not in chosen]
        if others and len(chosen) < PROBE_AT_ONCE:
            start = self._turn % len(others)
            turn = (others[start:] + others[:start])[:PROBE_AT_ONCE - len(chosen)]
            self._turn = start + len(turn)
            chosen += turn
        return chosen

    async def _probe(self, names: list[str]) -> dict[str, str]:
        """Probe this round's hosts at once; stop at the first that answers (the others'
        connection attempts go on in the pool, which keeps what they open)."""
        async def one(name: str) -> str:
            try:
                await self.service.pool.check_host(name)
            except Exception as exc:  # unreachable, refused, bad key: all mean "not ready"
                return _first_line(exc)
            return REACHABLE

        probes = {asyncio.create_task(one(n)): n for n in self._candidates(names)}
        answers: dict[str, str] = {}
        pending = set(probes)
        try:
            while pending and REACHABLE not in answers.values():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    answers[probes[task]] = task.result()
        finally:
            for task in pending:
                task.cancel()
        for name, answer in answers.items():
            if answer == REACHABLE:
                self._seen(name)
        return answers
