"""Naming hosts in a catalog (a command's `hosts:`) and in policy rules: one syntax.

A pattern is `tag:<name>` (a host carrying that tailnet tag) or a glob on the host's
name (`db-*`, `web-1`, `*`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable

TAG = re.compile(r"^tag:[A-Za-z0-9][A-Za-z0-9_-]*$")


def host_matches(patterns: Iterable[str], name: str, tags: Collection[str] = ()) -> bool:
    """Whether any pattern names the host `name` with tailnet tags `tags`."""
    for pattern in patterns:
        if pattern.startswith("tag:"):
            if pattern in tags:
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def pattern_problem(pattern: object) -> str | None:
    """Why `pattern` is not a host pattern, or None when it is one."""
    if not isinstance(pattern, str) or not pattern.strip():
        return f"expected a host name, glob or tag:<name>, got {pattern!r}"
    if pattern.startswith("tag:") and not TAG.match(pattern):
        return f"{pattern!r} is not a tag (tag:<letters, digits, '-' or '_'>)"
    return None
