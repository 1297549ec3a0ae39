"""A small guard in front of uvicorn's HTTP protocol: connection caps and read timeouts.

uvicorn (which the design names, and which stays) closes an idle keep-alive connection
after a response, but never one that sends nothing at all, a partial header or a
partial body: at a 256-descriptor limit, 300 such sockets made every legitimate request
time out. Its `limit_concurrency` answers 503 to requests but still holds every idle
socket. So instead of configuring around it, we subclass its h11 protocol (passed as
`uvicorn.Config(http=...)`, a supported hook) and add:

- a header timeout: a connection must send a complete request head within
  `header_timeout` seconds of opening (or of its previous response), idle ones included;
- a body timeout: the body must be complete within `body_timeout` of the head;
- a cap per peer (its tailnet node, resolved with WhoIs; its address in local mode) and
  a cap in all, below the process's descriptor limit. At a cap, the oldest connection
  of that peer (or of the peer holding the most) that is not inside a request is
  closed; only when there is none is the new connection refused. So one peer holding
  its maximum of idle sockets cannot keep anyone else out.

While a request is being answered (long tool calls, SSE streams) no timer runs.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# A peer's key for the per-peer cap; None: use the address.
PeerKey = Callable[[tuple[str, int]], Awaitable[str | None]]
# Descriptors kept free for everything that is not an HTTP connection (SSH, files, pipes).
RESERVED_DESCRIPTORS = 64


@dataclass(frozen=True)
class ConnectionLimits:
    total: int = 1000
    per_peer: int = 64
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    # Connections accepted in one go (the listen backlog, and asyncio's accept burst).
    backlog: int = 128


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def fitting(limits: ConnectionLimits, descriptors: int) -> ConnectionLimits:
    """`limits` kept below the descriptor limit. asyncio accepts up to `backlog`
    connections before the loop runs again (and before the sockets of connections closed
    to make room are really closed), so the cap leaves room for one such burst."""
    room = max(descriptors - RESERVED_DESCRIPTORS, descriptors // 2, 16)
    backlog = max(8, min(limits.backlog, room // 8))
    total = max(8, min(limits.total, room - backlog))
    return ConnectionLimits(total, min(limits.per_peer, total), limits.header_timeout,
                            limits.body_timeout, backlog)


class _Conn:
    __slots__ = ("deadline", "opened", "peer", "phase")

    def __init__(self, peer: str, opened: float) -> None:
        self.peer = peer
        self.opened = opened
        self.phase = ""  # "head", "body" or "busy"
        self.deadline: asyncio.TimerHandle | None = None


class ConnectionGuard:
    """The caps and timers shared by every connection of one server."""

    def __init__(self, limits: ConnectionLimits, peer_key: PeerKey | None = None) -> None:
        self.limits = limits
        self.peer_key = peer_key
        self._conns: dict[H11Protocol, _Conn] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def open(self) -> int:
        return len(self._conns)

    def held_by(self, peer: str) -> int:
        return sum(1 for c in self._conns.values() if c.peer == peer)

    def protocol(self) -> type[H11Protocol]:
        """uvicorn's h11 protocol with this guard in front (for `Config(http=...)`)."""
        guard = self

        class GuardedH11Protocol(H11Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)  # type: ignore[arg-type]
                guard.opened(self)

            def connection_lost(self, exc: Exception | None) -> None:
                guard.closed(self)
                super().connection_lost(exc)

            def data_received(self, data: bytes) -> None:
                super().data_received(data)
                guard.progress(self)

            def on_response_complete(self) -> None:
                super().on_response_complete()
                guard.progress(self)

        return GuardedH11Protocol

    # -- connections come and go -----------------------------------------------------------

    def opened(self, proto: H11Protocol) -> None:
        address = proto.client or ("?", 0)
        loop = asyncio.get_running_loop()
        conn = self._conns[proto] = _Conn(address[0], loop.time())
        self.progress(proto)
        if self.peer_key is not None:
            # Tailnet peers all arrive from 127.0.0.1 (tailscaled): ask who is behind it.
            task = loop.create_task(self._classify(proto, address))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._enforce(proto, conn.peer, self.limits.per_peer)
        if proto in self._conns and len(self._conns) > self.limits.total:
            self._make_room(proto)

    async def _classify(self, proto: H11Protocol, address: tuple[str, int]) -> None:
        assert self.peer_key is not None
        try:
            key = await self.peer_key(address)
        except Exception:  # tailscaled restarting: the address is all we know
            key = None
        conn = self._conns.get(proto)
        if conn is not None:
            conn.peer = key or f"local {address[0]}"
            self._enforce(proto, conn.peer, self.limits.per_peer)

    def _enforce(self, newcomer: H11Protocol, peer: str, cap: int) -> None:
        if self.held_by(peer) > cap:
            self._close_idle_of(peer, newcomer, why=f"peer {peer} holds {cap} connections")

    def _make_room(self, newcomer: H11Protocol) -> None:
        counts: dict[str, int] = {}
        for conn in self._conns.values():
            counts[conn.peer] = counts.get(conn.peer, 0) + 1
        biggest = max(counts, key=lambda p: counts[p])
        self._close_idle_of(biggest, newcomer,
                            why=f"{self.limits.total} connections are open; {biggest} holds "
                                f"{counts[biggest]}")

    def _close_idle_of(self, peer: str, newcomer: H11Protocol, *, why: str) -> None:
        """Close the oldest connection of `peer` that is not inside a request; the newcomer
        itself when there is none."""
        idle = [(c.opened, p) for p, c in self._conns.items()
                if c.peer == peer and c.phase != "busy" and p is not newcomer]
        victim = min(idle, key=lambda item: item[0])[1] if idle else newcomer
        log.warning("closed an HTTP connection from %s: %s", peer, why)
        self._drop(victim)

    def shutdown(self) -> None:
        """The server stops: close the connections that are not inside a request at once
        (a graceful exit waits only for requests being answered)."""
        for proto, conn in list(self._conns.items()):
            if conn.phase != "busy":
                self._drop(proto)

    def closed(self, proto: H11Protocol) -> None:
        conn = self._conns.pop(proto, None)
        if conn is not None and conn.deadline is not None:
            conn.deadline.cancel()

    def _drop(self, proto: H11Protocol) -> None:
        self.closed(proto)
        if not proto.transport.is_closing():
            proto.transport.close()

    # -- timers ------------------------------------------------------------------------------

    def progress(self, proto: H11Protocol) -> None:
        """Re-arm the connection's timer for the phase its request is in."""
        conn = self._conns.get(proto)
        if conn is None or proto.transport.is_closing():
            return
        state: Any = proto.conn.their_state
        waiting = proto.cycle is None or proto.cycle.response_complete
        if state is h11.IDLE and waiting:
            phase, seconds = "head", self.limits.header_timeout
        elif state is h11.SEND_BODY:
            phase, seconds = "body", self.limits.body_timeout
        else:
            phase, seconds = "busy", 0.0
        if phase == conn.phase:
            return
        conn.phase = phase
        if conn.deadline is not None:
            conn.deadline.cancel()
            conn.deadline = None
        if seconds:
            conn.deadline = asyncio.get_running_loop().call_later(
                seconds, self._expire, proto, phase)

    def _expire(self, proto: H11Protocol, phase: str) -> None:
        conn = self._conns.get(proto)
        if conn is None or conn.phase != phase:
            return
        what = "request head" if phase == "head" else "request body"
        seconds = self.limits.header_timeout if phase == "head" else self.limits.body_timeout
        log.warning("closed an HTTP connection from %s: no complete %s within %g s",
                    conn.peer, what, seconds)
        self._drop(proto)
