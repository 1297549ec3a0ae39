"""Fixtures shared by the end-to-end tests (sshd fixtures come from tests/conftest.py)."""

from tests.support.services import make_service, marker_dir  # noqa: F401
