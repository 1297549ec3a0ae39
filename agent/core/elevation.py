"""Commands that run as another user through `sudo -n`: telling why sudo refused.

The whitelist renders `sudo -n -u USER -- timeout ... /bin/sh -c RENDERED`; sudo never
prompts (-n), so a host without a matching sudoers rule answers at once with exit
status 1 and a `sudo:` line on stderr. That answer becomes one error saying what to
add on the host: the exact sudoers rule for this command line (whitelist.sudoers_line).
"""

from __future__ import annotations

import re

from agent.errors import ElevationRefused
from agent.hosts.inventory import HostConfig
from agent.output.results import CommandResult
from whitelist import Command, sudoers_line

# What sudo -n says when it will not run the command (sudo 1.8 and 1.9 wordings).
_REFUSAL = re.compile(
    r"^sudo: (?:a password is required|a terminal is required|sorry, you must have a tty"
    r"|unknown user|.*is not allowed to|.*is not in the sudoers file|no valid sudoers)",
    re.IGNORECASE | re.MULTILINE,
)
_MISSING = re.compile(r"sudo: (?:command )?not found", re.IGNORECASE)


def check_elevation(result: CommandResult, command: Command, host: HostConfig,
                    runs_as: str, *, timeout: float) -> None:
    """Raise ElevationRefused when sudo, not the command, produced this result."""
    stderr = result.stderr.lstrip()
    if result.exit_status == 127 and _MISSING.search(stderr):
        raise ElevationRefused(
            host.name,
            f"{command.name!r} runs as {runs_as} through sudo, but sudo is not installed on "
            f"host {host.name!r}; nothing ran. Install sudo there (apt-get install sudo) and "
            "run it again: the answer then names the sudoers rule to add.",
        )
    if result.exit_status != 1 or not _REFUSAL.match(stderr):
        return
    said = stderr.splitlines()[0].strip()
    line = sudoers_line(host.user, runs_as, result.rendered, timeout=timeout)
    raise ElevationRefused(
        host.name,
        f"{command.name!r} runs as {runs_as} and sudo on host {host.name!r} refused it without "
        f"a password ({said}); nothing ran. To allow exactly this command line, add this rule "
        f"on {host.name} with `visudo -f /etc/sudoers.d/tailnet-agent`:\n{line}",
    )
