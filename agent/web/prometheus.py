"""`/metrics` in the Prometheus text format, with the reference client (prometheus-client).

`AgentMetrics` is the service's recorder (agent.core.metrics.Recorder): counters and
a latency histogram fed by every call. Gauges that describe the present (SSH
connections and fast-path shells per host, the tailnet state) are read when a
scrape arrives, so they can never go stale. Each agent has its own registry: several
agents in one process (the tests) do not mix their numbers.

Labels are bounded: tool names, catalog commands, configured hosts, fixed outcome
and reason vocabularies, and route names. No parameter value, identity or secret is
ever a label (identities are in the audit log).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent import __version__
from agent.audit.ship import ShipStatus
from agent.core.metrics import REFUSAL_REASONS
from agent.core.service import AgentService
from agent.web.middleware.identity import request_identity

log = logging.getLogger(__name__)

# From a 2 ms warm call on loopback to a command near its catalog timeout.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 120.0)
# ipn.State values as tailscaled reports them, so every state has a series (0 or 1).
TAILNET_STATES = ("NoState", "NeedsLogin", "NeedsMachineAuth", "Stopped", "Starting", "Running")
ROUTES = {"/mcp": "mcp", "/healthz": "healthz", "/readyz": "readyz", "/metrics": "metrics"}

# A `_created` timestamp series per counter doubles what a scrape carries for nothing
# Prometheus needs (it detects counter resets itself).
disable_created_metrics()  # type: ignore[no-untyped-call]


class _Present(Collector):
    """Gauges of the present, from a snapshot taken (asynchronously) just before a scrape."""

    def __init__(self) -> None:
        self.hosts: Mapping[str, Mapping[str, Any]] = {}
        self.connections: Mapping[str, float | int] = {}
        self.tailnet: Mapping[str, Any] | None = None
        self.shipping: ShipStatus | None = None

    def describe(self) -> Iterable[Metric]:
        return ()  # nothing to check at registration; the families vary with the snapshot

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("tailnet_agent_info", "The agent's version.",
                                 labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        families = {
            "connected": GaugeMetricFamily(
                "tailnet_agent_ssh_connected", "1 while the host's SSH connection is open.",
                labels=["host"]),
            "channels_in_use": GaugeMetricFamily(
                "tailnet_agent_ssh_channels_in_use",
                "SSH channels in use on the host's connection (exec and busy shells).",
                labels=["host"]),
            "idle_shells": GaugeMetricFamily(
                "tailnet_agent_fast_path_shells_idle",
                "Persistent shells (the fast path) open and waiting for a command.",
                labels=["host"]),
        }
        connects = CounterMetricFamily("tailnet_agent_ssh_connects",
                                       "SSH connection attempts to the host.", labels=["host"])
        for host, status in self.hosts.items():
            families["connected"].add_metric([host], 1 if status.get("connected") else 0)
            families["channels_in_use"].add_metric([host], status.get("channels_in_use", 0))
            families["idle_shells"].add_metric([host], status.get("idle_shells", 0))
            connects.add_metric([host], status.get("connects", 0))
        yield from families.values()
        yield connects
        if self.connections:
            yield GaugeMetricFamily(
                "tailnet_agent_ssh_connections_open", "SSH connections open or being opened, "
                "in all.", value=self.connections.get("open", 0))
            yield GaugeMetricFamily(
                "tailnet_agent_ssh_connections_max", "The cap on open SSH connections "
                "(TAILNET_AGENT_SSH_MAX_CONNECTIONS).", value=self.connections.get("cap", 0))
            closed = CounterMetricFamily(
                "tailnet_agent_ssh_connections_closed", "SSH connections the agent closed: "
                "idle (TAILNET_AGENT_SSH_IDLE), or the least recently used at the cap.",
                labels=["reason"])
            closed.add_metric(["idle"], self.connections.get("closed_idle", 0))
            closed.add_metric(["cap"], self.connections.get("closed_for_cap", 0))
            yield closed
            yield CounterMetricFamily(
                "tailnet_agent_ssh_refused_at_cap", "Calls refused because every SSH "
                "connection the cap allows had a call running.",
                value=self.connections.get("refused_at_cap", 0))
        if self.tailnet is not None:
            current = str(self.tailnet.get("state") or "NoState")
            state = GaugeMetricFamily("tailnet_agent_tailnet_state",
                                      "1 for the state the agent's tailnet node is in.",
                                      labels=["state"])
            for name in dict.fromkeys((*TAILNET_STATES, current)):
                state.add_metric([name], 1 if name == current else 0)
            yield state
            yield CounterMetricFamily("tailnet_agent_tailscaled_restarts",
                                      "Times the agent restarted a tailscaled that died.",
                                      value=int(self.tailnet.get("restarts") or 0))
        if self.shipping is not None:
            yield from _shipping_metrics(self.shipping)


def _shipping_metrics(status: ShipStatus) -> Iterable[Metric]:
    """The audit log's shipping to the syslog receiver (agent/audit/ship.py)."""
    yield GaugeMetricFamily("tailnet_agent_audit_receiver_up",
                            "1 while the syslog receiver of the audit log is connected.",
                            value=1 if status.connected else 0)
    yield GaugeMetricFamily("tailnet_agent_audit_ship_backlog",
                            "Audit records written and not yet delivered to the receiver.",
                            value=status.backlog)
    yield CounterMetricFamily("tailnet_agent_audit_shipped",
                              "Audit records delivered to the syslog receiver since start.",
                              value=status.shipped)
    yield CounterMetricFamily("tailnet_agent_audit_not_shipped",
                              "Audit records never sent (more waited than "
                              "TAILNET_AGENT_AUDIT_SHIP_BACKLOG, or removed before they "
                              "could be sent); a not-shipped record names them.",
                              value=status.not_shipped)


class AgentMetrics:
    """The Recorder the service reports to, and everything `/metrics` shows."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter(
            "tailnet_agent_calls", "Tool calls that would run a catalog command, by outcome "
            "(ok, nonzero_exit, timed_out, refused, limited, invalid, not-confirmed, failed, "
            "offline, cancelled).", ["tool", "command", "host", "outcome"], registry=self.registry)
        self.latency = Histogram(
            "tailnet_agent_call_duration_seconds", "Time from the audit start record to the "
            "command's end, for calls whose command ran.", ["command", "host"],
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self._counted: dict[tuple[str, str, str, str], Any] = {}  # calls' series, by labels
        self._timed: dict[tuple[str, str], Any] = {}  # latency's series, by labels
        self.refusals = Counter(
            "tailnet_agent_refusals", "Calls refused before anything ran, by reason.",
            ["reason"], registry=self.registry)
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)  # every reason has a series from the start
        self.audit_failures = Counter(
            "tailnet_agent_audit_write_failures", "Audit records that could not be written "
            "(a failed start record means the call was refused).", registry=self.registry)
        self.responses = Counter(
            "tailnet_agent_http_responses", "HTTP responses by route and status code "
            "(403: not a tailnet peer or not allowed; 413: body too large).",
            ["route", "code"], registry=self.registry)
        self.present = _Present()
        self.registry.register(self.present)
        ProcessCollector(registry=self.registry)  # the agent's own memory, CPU, open files

    # -- agent.core.metrics.Recorder --------------------------------------------------

    def call_finished(
        self, *, tool: str, command: str, host: str, outcome: str, seconds: float | None
    ) -> None:
        # The series by their labels, looked up here: `labels()` checks and locks on every
        # call (7.5 us for the two; a fan-out over 1,000 hosts makes 1,000 calls).
        key = (tool, command, host, outcome)
        counted = self._counted.get(key)
        if counted is None:
            counted = self._counted[key] = self.calls.labels(*key)
        counted.inc()
        if seconds is not None:
            timed = self._timed.get((command, host))
            if timed is None:
                timed = self._timed[command, host] = self.latency.labels(command, host)
            timed.observe(seconds)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def audit_write_failed(self) -> None:
        self.audit_failures.inc()

    # -- exposition -----------------------------------------------------------------

    async def exposition(self, service: AgentService, accept: str | None) -> Response:
        """Snapshot the present, then render every metric in the format the scraper asked
        for (OpenMetrics or the classic text format)."""
        self.present.hosts = await service.pool.connection_status()
        self.present.connections = service.pool.connections()
        self.present.tailnet = (await service.tailnet_status()
                                if service.tailnet_status is not None else None)
        self.present.shipping = (service.shipper.status() if service.shipper is not None
                                 else None)
        encoder, content_type = choose_encoder(accept or "")
        return Response(encoder(self.registry), media_type=content_type)

    def count_responses(self, app: ASGIApp) -> ASGIApp:
        """Wrap `app` so every HTTP response is counted by route and status code."""

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            route = ROUTES.get(scope.get("path", ""), "chat")

            async def send_counted(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self.responses.labels(route, str(message["status"])).inc()
                await send(message)

            await app(scope, receive, send_counted)

        return counted


async def metrics_endpoint(request: Request, service: AgentService,
                           metrics: AgentMetrics) -> Response:
    """GET /metrics: the local operator and callers the policy grants `metrics` only."""
    identity = request_identity(request)
    decision = service.policy.decide_metrics(identity)
    if not decision.allowed:
        log.warning("refused /metrics to %s: %s", identity.display, decision.reason,
                    extra={"identity": identity.principal})
        return PlainTextResponse(
            f"403 Forbidden: {identity.principal} may not read this agent's metrics: "
            f"{decision.reason} [rule: {decision.rule}]. Ask the agent's operator for a grant.\n",
            status_code=403,
        )
    return await metrics.exposition(service, request.headers.get("accept"))
