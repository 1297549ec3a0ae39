"""Async client for tailscaled's LocalAPI over its --socket unix socket.

tailscaled grants full (read/write) access to a unix-socket peer that is root or
the same user as the daemon, which is always the case for our own child. It
refuses requests carrying Origin or Referer (browser CSRF guard), so none are
sent; the Host must be `local-tailscaled.sock`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

import httpx

from .errors import LocalAPIError
from .whois import WhoIs

# ipn.NotifyWatchOpt bits (tailscale.com/ipn/backend.go).
NOTIFY_INITIAL_STATE = 1 << 1  # first message carries State and BrowseToURL
NOTIFY_INITIAL_NETMAP = 1 << 3
NOTIFY_RATE_LIMIT = 1 << 8
NOTIFY_PEER_CHANGES = 1 << 12  # peer deltas (online, ...) as PeerChanges, not a full NetMap

_HOST = "local-tailscaled.sock"


class LocalAPI:
    def __init__(self, socket_path: Path, *, timeout: float = 10.0) -> None:
        self.socket_path = Path(socket_path)
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket_path)),
            base_url=f"http://{_HOST}",
            timeout=timeout,
            # Never route the unix-socket API through an HTTP proxy from the environment.
            trust_env=False,
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        ok_statuses: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        url = f"/localapi/v0/{path}"
        try:
            response = await self._client.request(
                method,
                url,
                params=params,
                content=None if body is None else json.dumps(body).encode(),
                headers={"Content-Type": "application/json"} if body is not None else None,
            )
        except httpx.HTTPError as exc:
            raise LocalAPIError(
                f"tailscaled LocalAPI {method} {url} over {self.socket_path} failed: "
                f"{exc.__class__.__name__}: {exc}; is tailscaled running with "
                f"--socket={self.socket_path}?"
            ) from exc
        if response.status_code not in ok_statuses:
            raise LocalAPIError(
                f"tailscaled LocalAPI {method} {url} answered {response.status_code}: "
                f"{response.text.strip()[:300]}; see the tailscaled log for details",
                status=response.status_code,
            )
        return response

    async def status(self) -> dict[str, Any]:
        response = await self._request("GET", "status")
        result: dict[str, Any] = response.json()
        return result

    async def whois(self, addr: str, *, proto: str = "tcp") -> WhoIs | None:
        """Identify the tailnet peer behind `addr` ("ip:port" as seen by a local server).

        None when tailscaled did not forward that connection (a local, non-tailnet client).
        """
        response = await self._request(
            "GET", "whois", params={"addr": addr, "proto": proto}, ok_statuses=(200, 404)
        )
        if response.status_code == 404:
            return None
        return WhoIs.from_localapi(response.json())

    async def start(
        self, *, auth_key: str | None, control_url: str | None, hostname: str | None
    ) -> None:
        prefs: dict[str, Any] = {
            "WantRunning": True,
            # MagicDNS names must resolve for SOCKS5 dials.
            "CorpDNS": True,
            "RouteAll": False,
            # The default (true) would have tailscaled look for client updates.
            "AutoUpdate": {"Check": False},
        }
        if control_url:
            prefs["ControlURL"] = control_url
        if hostname:
            prefs["Hostname"] = hostname
        body: dict[str, Any] = {"UpdatePrefs": prefs}
        if auth_key:
            body["AuthKey"] = auth_key
        await self._request("POST", "start", body=body, ok_statuses=(200, 204))

    async def login_interactive(self) -> None:
        await self._request("POST", "login-interactive", ok_statuses=(200, 204))

    async def watch_ipn_bus(
        self, mask: int = NOTIFY_INITIAL_STATE | NOTIFY_RATE_LIMIT
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Stream ipn.Notify messages (state changes, BrowseToURL, ...); `aclose()` to stop."""
        url = "/localapi/v0/watch-ipn-bus"
        try:
            async with self._client.stream(
                "GET", url, params={"mask": str(mask)}, timeout=httpx.Timeout(10.0, read=None)
            ) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode(errors="replace").strip()
                    raise LocalAPIError(
                        f"tailscaled LocalAPI GET {url} answered {response.status_code}: "
                        f"{text[:300]}",
                        status=response.status_code,
                    )
                async for line in response.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.HTTPError as exc:
            raise LocalAPIError(
                f"watching tailscaled's IPN bus over {self.socket_path} failed: "
                f"{exc.__class__.__name__}: {exc}"
            ) from exc

    async def logout(self) -> None:
        await self._request("POST", "logout", ok_statuses=(200, 204))

    async def aclose(self) -> None:
        await self._client.aclose()
