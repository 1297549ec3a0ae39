"""The real test tailnet (headscale + tailscaled on loopback) for these tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_internet_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients here dial through a node's SOCKS5 proxy; a proxy from the environment would
    send them elsewhere."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
