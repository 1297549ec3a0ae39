"""Limits: calls per identity over time, calls in flight per host and per identity.

The rate limit is a token bucket per identity (`Identity.key`): `burst` calls at
once, refilled at `per_minute`. Every call takes a token before anything else
happens, refused and invalid ones included, so a flood of refusals is limited like
any other. It applies to tailnet callers; the person at the machine (local mode,
stdio) holds the SSH keys anyway.

A fan-out (run_on_hosts) is one call that runs on many hosts: it is charged once, before
any host runs, `fanout_cost` tokens: one for the call and one per `HOSTS_PER_TOKEN`
hosts, at most a whole burst. The hosts' own calls take nothing more. One token per host
(as before) made any fan-out over more hosts than the burst (60) refuse the rest host by
host, however patient the caller; at most a burst, every fan-out can run on a full
budget, and a caller's fan-outs over hundreds of hosts come at most once per burst's
refill (30 s at the defaults). The per-host part keeps the charge growing with the work
up to there, and a fan-out's own concurrency bound (TAILNET_AGENT_FANOUT_CONCURRENCY)
and the per-host bounds below hold whatever it paid.

The host gate bounds how many calls may be in flight (running or waiting for an SSH
channel) for one host, so a flood cannot queue without end, and gives each identity
at most `per_identity` of those places, so one caller's flood refuses that caller,
not everyone else. The local operator is never refused by the host-wide bound.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

from agent.access.identity import Identity
from agent.errors import HostBusy, RateLimited

HOSTS_PER_TOKEN = 10  # a fan-out's charge grows by one token per this many hosts


def fanout_cost(hosts: int, burst: int) -> float:
    """The tokens a fan-out over `hosts` hosts takes: 1 + hosts / HOSTS_PER_TOKEN, at most
    `burst` (the module docstring says why)."""
    return min(float(burst), 1 + hosts / HOSTS_PER_TOKEN)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def take(self, identity: Identity, now: float | None = None, *, cost: float = 1.0,
             what: str = "") -> None:
        """Use `cost` calls of `identity`'s budget (at most the burst), or raise
        RateLimited; `what` names a call that costs more than one (a fan-out)."""
        if identity.is_operator:
            return
        now = time.monotonic() if now is None else now
        cost = min(cost, float(self.burst))
        bucket = self._buckets.setdefault(identity.key, _Bucket(float(self.burst), now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < cost:
            # A bucket that never refills (rate 0: tests only, settings need 1 a minute).
            retry = (f"retry in {max(1, math.ceil((cost - bucket.tokens) / self.rate))} s"
                     if self.rate > 0 else "it does not refill")
            spent = (f"{what} costs {cost:g} calls of a budget of {self.burst} at once "
                     f"({bucket.tokens:.0f} left)" if what
                     else f"made more than {self.burst} calls in a burst")
            raise RateLimited(
                f"rate limit: {identity.principal} {spent} (limit {self.rate * 60:g} per "
                f"minute); {retry}. The operator sets it with "
                "TAILNET_AGENT_RATE_PER_MINUTE / TAILNET_AGENT_RATE_BURST."
            )
        bucket.tokens -= cost


class HostGate:
    def __init__(self, max_in_flight: int, per_identity: int | None = None) -> None:
        self.max_in_flight = max_in_flight
        self.per_identity = per_identity if per_identity is not None else max_in_flight
        self._in_flight: dict[str, int] = {}
        self._by_identity: dict[tuple[str, str], int] = {}

    def in_flight(self, host: str) -> int:
        return self._in_flight.get(host, 0)

    @contextlib.contextmanager
    def enter(self, host: str, identity: Identity) -> Iterator[None]:
        count = self._in_flight.get(host, 0)
        key = (host, identity.key)
        mine = self._by_identity.get(key, 0)
        if mine >= self.per_identity and not identity.is_operator:
            raise HostBusy(
                f"you already have {mine} calls in flight on host {host!r} (limit "
                f"{self.per_identity} per caller); retry when some have finished. The operator "
                "sets it with TAILNET_AGENT_IDENTITY_CONCURRENCY."
            )
        if count >= self.max_in_flight and not identity.is_operator:
            raise HostBusy(
                f"host {host!r} already has {count} calls in flight (limit "
                f"{self.max_in_flight}); retry when some have finished. The operator sets it "
                "with TAILNET_AGENT_HOST_CONCURRENCY."
            )
        self._in_flight[host] = count + 1
        self._by_identity[key] = mine + 1
        try:
            yield
        finally:
            self._in_flight[host] -= 1
            left = self._by_identity[key] - 1
            if left:
                self._by_identity[key] = left
            else:
                del self._by_identity[key]
