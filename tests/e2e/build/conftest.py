"""Smoke tests of the built executable; the test tailnet comes from tests/support.

The figures they record (test-artifacts/build-figures.json) come from this run only: a
run that includes these or the container tests starts without the file (tests/conftest.py).
"""

from tests.support.tailnet import tailnet, tailnet_binaries  # noqa: F401
