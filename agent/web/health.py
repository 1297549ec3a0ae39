"""The routes for the people who run the agent: /healthz, /readyz and /metrics.

They sit behind the same identity gate as everything else, on the tailnet app and on
the local operator's unix socket (agent.web.asgi.build_ops_app):

- /healthz (liveness): the process answers; the tailnet node's state. Any caller the
  gate let in.
- /readyz (readiness): tailnet Running and at least one SSH host reachable; 200 or
  503. Any caller gets the verdict and its reason; the operator and callers granted
  `metrics` also see each host's state.
- /metrics: Prometheus text, for the operator and callers granted `metrics` only.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agent.core.readiness import ReadinessCheck
from agent.core.service import AgentService

from .middleware.identity import request_identity
from .prometheus import AgentMetrics, metrics_endpoint


def health_routes(
    service: AgentService, readiness: ReadinessCheck, metrics: AgentMetrics
) -> list[BaseRoute]:
    async def healthz(request: Request) -> JSONResponse:
        status: dict[str, Any] = {"status": "ok", "mode": service.mode}
        if service.tailnet_status is not None:
            tailnet = await service.tailnet_status()
            status["tailnet"] = tailnet
            if tailnet.get("state") != "Running":
                status["status"] = "degraded"
        status["you"] = request_identity(request).display
        return JSONResponse(status, status_code=200 if status["status"] == "ok" else 503)

    async def readyz(request: Request) -> JSONResponse:
        verdict = await readiness.check()
        identity = request_identity(request)
        detailed = service.policy.decide_metrics(identity).allowed
        body = verdict.details() if detailed else verdict.summary()
        return JSONResponse(body, status_code=200 if verdict.ready else 503)

    async def metrics_route(request: Request) -> Response:
        return await metrics_endpoint(request, service, metrics)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
