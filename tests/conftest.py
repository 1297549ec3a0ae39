"""Shared fixtures. Component fixtures live in tests/support/ and are imported here."""

from __future__ import annotations

from tests.support.sshd import ssh_host, sshd, sshd_factory  # noqa: F401
