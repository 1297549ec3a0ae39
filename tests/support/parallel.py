"""The suite on several pytest-xdist workers: `make pytest` runs
`-n 4 --dist loadscope --no-loadscope-reorder`.

The suite mostly waits (on sshd, tailscaled, headscale, Chromium, timeouts), so workers
beyond the core count pay off. `loadscope` sends a test module whole to one worker, so
its module fixtures (a tailnet topology, a browser, an agent) are made once, as in a
serial run; session fixtures (sshd, headscale, ...) are made once per worker, each on
free ports of its own. Modules are handed out in collection order, which `longest_first`
makes start with the longest ones (`SLOW`, from `--durations` of a full run), so no long
module begins last and keeps one worker busy after the others are done.

What the workers share is made safe where it is: the commands tests look for on the test
sshd carry names of their own, artifacts are updated under a lock
(tests/support/artifacts.py), and all workers share the loopback-only network namespace
of tests/run-isolated.sh, where the fleet's bridge and veth names belong to one module.
"""

from __future__ import annotations

import pytest

# The modules that take longest in a full run (4 workers, 2 cores), longest first.
SLOW = (
    "tests/e2e/build/test_build_script.py",
    "tests/e2e/hostile/test_audit_flood.py",
    "tests/e2e/mcp/test_big_output.py",
    "tests/e2e/tailnet/test_policy.py",
    "tests/e2e/tailnet/test_fleet.py",
    "tests/e2e/commands/test_first_run.py",
    "tests/e2e/hostile/test_orphans.py",
    "tests/e2e/mcp/test_operations.py",
    "tests/e2e/chat/test_chat_states.py",
    "tests/e2e/chat/test_turn_control.py",
    "tests/e2e/container/test_image.py",
    "tests/e2e/mcp/test_demo.py",
    "tests/e2e/hostile/test_sessions.py",
    "tests/e2e/mcp/test_fuzz.py",
    "tests/e2e/mcp/test_confirmation.py",
    "tests/e2e/build/test_executable.py",
    "tests/e2e/ssh/test_doctor_trust.py",
    "tests/e2e/tailnet/test_agent.py",
    "tests/unit/agent/chat/test_warmup.py",
    "tests/e2e/tailnet/test_two_person.py",
    "tests/e2e/hostile/test_small_defects.py",
    "tests/e2e/tailnet/test_operations.py",
    # Added since that run, measured alone (3 workers): 69 s and 46 s.
    "tests/e2e/audit/test_shipping.py",
    "tests/e2e/tailnet/test_share.py",
)


def _rank(item: pytest.Item) -> int:
    module = item.nodeid.split("::", 1)[0]
    return SLOW.index(module) if module in SLOW else len(SLOW)


def longest_first(items: list[pytest.Item]) -> None:
    """The `SLOW` modules first, in that order; the rest in collection order."""
    items.sort(key=_rank)
