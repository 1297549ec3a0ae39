"""The real test tailnet (headscale + tailscaled on loopback) for these tests."""

from __future__ import annotations

from tests.support.tailnet import tailnet, tailnet_binaries  # noqa: F401
