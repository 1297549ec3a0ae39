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
from .model import USER_NAME, Command
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


def wrap_for_exec(rendered: str, *, timeout: float, become: str | None = None) -> str:
    """The exact string to hand to an SSH exec request.

    `timeout` runs the command in its own process group and signals the whole
    group, so every stage of a pipeline dies; `-k 2` follows TERM with KILL for
    commands that ignore TERM. stdin comes from /dev/null so nothing can wait
    for input on the channel. /bin/sh is named explicitly so the template is
    interpreted by a POSIX shell whatever the remote login shell is (the login
    shell only has to parse this one quoted line).

    With `become`, the same line runs under `sudo -n -u USER --`: never a password
    prompt (-n), and what sudo is asked to run is exactly `timeout ... /bin/sh -c
    RENDERED`, so a sudoers rule can name that one command line (`sudoers_line`).
    `timeout` runs as that user too, so it can still kill what it started; a TERM
    sent to sudo from the login user's side is relayed to the command.
    """
    line = f"{_timed(timeout)} /bin/sh -c {shlex.quote(_script(rendered))}"
    if become is not None:
        line = f"sudo -n -u {_user(become)} -- {line}"
    return f"{line} </dev/null"


# Where sudoers must name `timeout` (coreutils; /usr/bin on Debian, Ubuntu, RHEL, Alpine).
TIMEOUT_PATH = "/usr/bin/timeout"
# Characters sudoers treats specially in a command's arguments: its own separators and
# comment sign, and the glob characters it matches arguments with. Whitespace is escaped
# too: sudoers folds runs of blanks, the command line does not.
_SUDOERS_SPECIAL = frozenset(",:=#*?[] \t")


def sudoers_line(login: str, become: str, rendered: str, *, timeout: float) -> str:
    """The sudoers rule that lets `login` run exactly this command line as `become`.

    Everything in the rendered command is escaped, so the rule matches this command
    line and nothing wider: no wildcard, no other arguments. A backslash is doubled
    twice: once for the sudoers parser, once for its argument matching.
    """
    escaped = "".join(
        "\\\\\\\\" if c == "\\" else f"\\{c}" if c in _SUDOERS_SPECIAL else c
        for c in rendered
    )
    who = login if USER_NAME.fullmatch(login) else f'"{login}"'
    seconds = _timed(timeout).removeprefix("timeout ")
    return (f"{who} ALL=({_user(become)}) NOPASSWD: {TIMEOUT_PATH} {seconds} /bin/sh -c "
            f"{escaped}")


def _script(rendered: str) -> str:
    """What /bin/sh -c runs: the rendered command (one place, so the sudoers rule always
    names exactly what wrap_for_exec sends)."""
    return rendered


def _timed(timeout: float) -> str:
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return f"timeout -k 2 {max(1, math.ceil(timeout))}"


def _user(name: str) -> str:
    if not USER_NAME.fullmatch(name):
        raise ValueError(f"not a user name sudo may switch to: {name!r}")
    return name
