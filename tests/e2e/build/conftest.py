"""Smoke tests of the built executable; the test tailnet comes from tests/support."""

from collections.abc import Iterator

import pytest

from tests.support.tailnet import tailnet, tailnet_binaries  # noqa: F401

from .frozen import FIGURES


@pytest.fixture(scope="session", autouse=True)
def fresh_figures() -> Iterator[None]:
    """Figures in test-artifacts/build-figures.json come from this run only."""
    FIGURES.unlink(missing_ok=True)
    yield
