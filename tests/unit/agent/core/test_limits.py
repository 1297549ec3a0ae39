"""The rate limiter's refusal says when to retry, and is one line whatever the rate."""

from __future__ import annotations

import pytest

from agent.access.identity import Identity
from agent.core.limits import RateLimiter
from agent.errors import RateLimited

ALICE = Identity(login="alice@example.com", node="laptop")


def test_a_refusal_says_when_the_next_call_fits() -> None:
    limiter = RateLimiter(per_minute=30, burst=2)
    limiter.take(ALICE, now=0.0)
    limiter.take(ALICE, now=0.0)
    with pytest.raises(RateLimited, match=r"limit 30 per minute\); retry in 2 s\. "):
        limiter.take(ALICE, now=0.0)
    limiter.take(ALICE, now=2.0)  # one call's worth refilled


def test_a_bucket_that_never_refills_says_so_instead_of_failing() -> None:
    """Rate 0 (the rate-limit tests use it, so a slow flood earns nothing back): the
    refusal is still the message (it was an OverflowError from ceil(inf))."""
    limiter = RateLimiter(per_minute=0, burst=1)
    limiter.take(ALICE, now=0.0)
    with pytest.raises(RateLimited, match=r"limit 0 per minute\); it does not refill\. "):
        limiter.take(ALICE, now=3600.0)
    with pytest.raises(RateLimited, match="does not refill"):
        limiter.take(ALICE, now=0.0, cost=5, what="run_on_hosts over 40 hosts")
