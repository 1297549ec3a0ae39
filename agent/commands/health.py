"""`tailnet-agent health`: ask the running agent, over its local socket, whether it is ready.

The container image's HEALTHCHECK runs it (the image has no curl). It prints one line
and exits 0 (ready, or alive with --live) or 1 (anything else, as Docker and podman
expect: 2 is reserved there, so even a configuration error exits 1). HTTP over the
unix socket is the standard library's http.client with the socket swapped in: this
runs every 30 s, so it stays light.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.settings import Settings


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def ask(path: Path, route: str, timeout: float) -> tuple[int, dict[str, Any]]:
    """GET `route` on the agent's socket: (status, JSON body)."""
    connection = _UnixConnection(path, timeout)
    try:
        connection.request("GET", route)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    try:
        data = json.loads(body)
    except ValueError:
        data = {"reason": body.decode(errors="replace").strip()[:300]}
    return response.status, data if isinstance(data, dict) else {}


def describe(status: int, data: dict[str, Any], *, live: bool) -> str:
    if live:
        tailnet = (data.get("tailnet") or {}).get("state", "no tailnet")
        return f"{'alive' if status == 200 else 'degraded'}: tailnet {tailnet}"
    hosts = data.get("hosts") or {}
    shown = ", ".join(f"{name}: {state}" for name, state in hosts.items())
    verdict = "ready" if status == 200 else f"not ready: {data.get('reason', status)}"
    return verdict + (f" (tailnet {data['tailnet']})" if data.get("tailnet") else "") + (
        f"; hosts: {shown}" if shown else "")


def run_health(args: argparse.Namespace, load: Callable[[argparse.Namespace], Settings]) -> int:
    try:
        settings = load(args)
    except ConfigError as exc:
        print(f"unhealthy: {exc}", flush=True)
        return 1
    path = settings.socket
    if path is None:
        print("unhealthy: no socket to ask: set TAILNET_AGENT_SOCKET (or --socket) to the path "
              "the agent serves on (the container image sets it)", flush=True)
        return 1
    try:
        status, data = ask(path, "/healthz" if args.live else "/readyz", args.timeout)
    except (OSError, http.client.HTTPException) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (
            getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        print(f"unhealthy: no answer on {path} ({reason}); is `tailnet-agent serve` running "
              "with this TAILNET_AGENT_SOCKET?", flush=True)
        return 1
    print(describe(status, data, live=args.live), flush=True)
    return 0 if status == 200 else 1
