"""Hostile callers, at volume, against the real sshd and the real HTTP server.

Every test plays a tailnet peer that wants to erase the audit trail, lock others out,
leave commands running, or learn what the policy hides; each loop is bounded in count
and time, and everything stays on loopback (several peers are several 127.0.0.x
source addresses, see tests/support/peers.py).
"""

from tests.support.services import make_service, marker_dir  # noqa: F401
