"""Exceptions raised by tailscale_userspace; every message says what to do next."""

from __future__ import annotations


class TailscaleError(Exception):
    """Something about the tailscaled child or its LocalAPI failed.

    The message is one line a person can act on; `details` (tailscaled's last log
    lines, when there are any) is for a verbose view.
    """

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class TailscaledNotFound(TailscaleError):
    """No tailscaled executable could be found."""


class LocalAPIError(TailscaleError):
    """tailscaled's LocalAPI answered with an error or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SocksError(TailscaleError):
    """A SOCKS5 CONNECT through tailscaled's proxy failed."""
