"""Limits: calls per identity over time, calls in flight per host, bytes per request body.

The rate limit is a token bucket per identity (`Identity.key`): `burst` calls at
once, refilled at `per_minute`. It applies to tailnet callers; the person at the
machine (local mode, stdio) holds the SSH keys anyway. The host limit bounds how
many calls may be in flight (running or waiting for an SSH channel) for one host,
so one caller's flood cannot queue without end; beyond it calls are refused at once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .identity import Identity
from .policy import CallRefused

# Beyond this many bytes of an oversized body we stop reading and close the connection.
DRAIN_LIMIT = 16 * 1024 * 1024


class LimitExceeded(CallRefused):
    pass


@dataclass(frozen=True)
class Limits:
    calls_per_minute: float = 120.0
    burst: int = 60
    max_in_flight_per_host: int = 32


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def take(self, identity: Identity, now: float | None = None) -> None:
        """Use one call of `identity`'s budget, or raise LimitExceeded."""
        if identity.source != "tailnet":
            return
        now = time.monotonic() if now is None else now
        bucket = self._buckets.setdefault(identity.key, _Bucket(float(self.burst), now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / self.rate if self.rate > 0 else float("inf")
            raise LimitExceeded(
                f"rate limit: {identity.principal} made more than {self.burst} calls in a "
                f"burst (limit {self.rate * 60:g} per minute); retry in {wait:.0f} s. The "
                "operator sets it with TAILNET_AGENT_RATE_PER_MINUTE / TAILNET_AGENT_RATE_BURST."
            )
        bucket.tokens -= 1


class HostGate:
    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self._in_flight: dict[str, int] = {}

    @contextlib.contextmanager
    def enter(self, host: str) -> Iterator[None]:
        count = self._in_flight.get(host, 0)
        if count >= self.max_in_flight:
            raise LimitExceeded(
                f"host {host!r} already has {count} calls in flight (limit "
                f"{self.max_in_flight}); retry when some have finished. The operator sets it "
                "with TAILNET_AGENT_HOST_CONCURRENCY."
            )
        self._in_flight[host] = count + 1
        try:
            yield
        finally:
            self._in_flight[host] -= 1


class BodyLimitMiddleware:
    """Refuse request bodies over a per-path-prefix limit with 413 and a message.

    Checks Content-Length up front and counts the bytes of chunked bodies as they
    arrive, so a client cannot get past it by leaving the header out.
    """

    def __init__(self, app: ASGIApp, limits: Sequence[tuple[str, int]], default: int) -> None:
        self.app = app
        self.limits = sorted(limits, key=lambda item: len(item[0]), reverse=True)
        self.default = default

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.default

    async def _refuse(self, send: Send, limit: int) -> None:
        body = (f"413 Request Entity Too Large: this endpoint accepts at most {limit} bytes "
                "per request body; send less.\n").encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def _drain(self, receive: Receive, received: int) -> None:
        """Read (and drop) the rest of a body sent without Content-Length, up to a bound.

        A client still sending when we answer would see a reset instead of our 413.
        """
        while received < DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            received += len(message.get("body", b""))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(send, limit)
                    return
        # Read the whole body first (it is small by definition), so the app never
        # sees part of an oversized request and cannot turn the refusal into its own error.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await self._drain(receive, received)
                await self._refuse(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
