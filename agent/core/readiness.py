"""Readiness: can this agent take calls now? Its tailnet node is Running, and at least
one SSH host is reachable.

A host with an open SSH connection counts as reachable. When none has one, the
hosts are probed (connect and shell check, the pool keeps the connection for the
first call). Any tailnet peer may ask, so the answer is shared: one evaluation at a
time, reused for `fresh_for` seconds, and a failed probe round is not repeated for
`reprobe_after` seconds, so a flood of readiness requests costs one LocalAPI call
and at most one SSH connection attempt per host per interval.
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

    async def _probe(self, names: list[str]) -> dict[str, str]:
        async def one(name: str) -> str:
            try:
                await self.service.pool.check_host(name)
            except Exception as exc:  # unreachable, refused, bad key: all mean "not ready"
                return _first_line(exc)
            return REACHABLE

        answers = await asyncio.gather(*(one(n) for n in names))
        return dict(zip(names, answers, strict=True))
