"""Shared fixtures. Component fixtures live in tests/support/ and are imported here."""

from __future__ import annotations
