"""The service with a recording Runner (tests/support/recording.py) as a fixture."""

from tests.support.recording import service  # noqa: F401
