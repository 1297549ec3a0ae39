"""The container image's tests: the test tailnet comes from tests/support."""

from tests.support.tailnet import tailnet, tailnet_binaries  # noqa: F401
