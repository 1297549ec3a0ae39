"""Turning a catalog command plus arguments into the shell text the SSH layer sends.

Both functions are pure. `wrap_for_exec` is the only place that builds the
outer `timeout ... /bin/sh -c ...` string; keep it that way.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping

from .errors import ParameterError
from .model import Command
from .values import check_value

# A placeholder is {identifier}. Anything else with braces is left alone: awk's
# `{print $1}` (space, dollar) and Go templates' `{{.Names}}` (doubled braces).
PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


def placeholders(template: str) -> list[str]:
    """Placeholder names in order of appearance (repeats kept)."""
    return PLACEHOLDER.findall(template)


def render(command: Command, arguments: Mapping[str, object]) -> str:
    """Fill `command.template` with validated, shell-quoted arguments."""
    accepted = {p.name for p in command.parameters}
    unknown = sorted(name for name in arguments if name not in accepted)
    if unknown:
        names = ", ".join(sorted(accepted)) or "(none: this command takes no arguments)"
        raise ParameterError(
            command.name, unknown[0], f"unknown argument(s) {unknown}; accepted: {names}"
        )
    quoted: dict[str, str] = {}
    for parameter in command.parameters:
        if parameter.name in arguments:
            value = arguments[parameter.name]
        elif parameter.default is not None:
            value = parameter.default
        else:
            raise ParameterError(
                command.name,
                parameter.name,
                f"required argument is missing: {parameter.description}",
            )
        # Quote always, integers included: the template author must never have
        # to reason about which values are "safe".
        quoted[parameter.name] = shlex.quote(check_value(command.name, parameter, value))

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in quoted:
            # Only reachable for a Command built in code, not loaded from YAML.
            raise ParameterError(
                command.name, name, "template placeholder names no parameter; fix the catalog"
            )
        return quoted[name]

    return PLACEHOLDER.sub(substitute, command.template)


def wrap_for_exec(rendered: str, *, timeout: float) -> str:
    """The exact string to hand to an SSH exec request.

    `timeout` runs the command in its own process group and signals the whole
    group, so every stage of a pipeline dies; `-k 2` follows TERM with KILL for
    commands that ignore TERM. stdin comes from /dev/null so nothing can wait
    for input on the channel. /bin/sh is named explicitly so the template is
    interpreted by a POSIX shell whatever the remote login shell is (the login
    shell only has to parse this one quoted line).
    """
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    seconds = max(1, math.ceil(timeout))
    return f"timeout -k 2 {seconds} /bin/sh -c {shlex.quote(rendered)} </dev/null"
