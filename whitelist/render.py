"""Turning a catalog command plus arguments into the shell text the SSH layer sends.

Every function here is pure. `render` fills a template; `wrap_for_exec` and
`wrap_for_shell` are the only places that build the outer `timeout ...` text (the second
for the agent's persistent shells, with a process less for a plain command line, whose text
is `wrap_for_exec`'s otherwise); `kill_process_groups`
is the only line the agent sends to stop a command it gave up on. Keep it that way:
no other module builds command text.

Path parameters whose roots are narrower than `/` are checked twice: on their text
here (absolute, no `..`, under a root), and as the host resolves them, by a preamble
that runs `realpath` on the host before the command and refuses (exit status
PATH_REFUSED_STATUS, a line starting with PATH_REFUSED_MARKER on stderr) when a
symlink leads outside every root. The command then uses the resolved path, so what
was checked is what it opens (a symlink swapped between the two remains a race that
only the host's permissions close: keep roots where untrusted users cannot write, or
accept that window).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from .errors import ParameterError, shown
from .model import USER_NAME, Command, Parameter
from .param_types import ParamType
from .values import check_value, reject_non_finite

# The first line a wrapped command writes to stderr: the id of its process group, so
# that the agent can stop the whole group later (see kill_process_groups); for a
# command run through sudo, the pid of sudo instead (see StopTarget).
PGID_REPORT = "tailnet-agent-pgid:"
SUDO_REPORT = "tailnet-agent-sudo:"
# A stop looks at a sudo every SUDO_STOP_ROUND_SECONDS, at most SUDO_STOP_ROUNDS times (12 s):
# a sudo may take seconds to start its command on a loaded host (30 started at once here:
# p99 0.39 s, at most 0.46 s, on a machine whose speed varies up to 6x).
SUDO_STOP_ROUNDS = 240
SUDO_STOP_ROUND_SECONDS = 0.05
PATH_REFUSED_MARKER = "tailnet-agent: refused:"
PATH_REFUSED_STATUS = 125
# Linux's pid_max ceiling; a process group id is a process id.
MAX_PID = 4_194_304

# A placeholder is {identifier}. Anything else with braces is left alone: awk's
# `{print $1}` (space, dollar) and Go templates' `{{.Names}}` (doubled braces).
PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


def placeholders(template: str) -> list[str]:
    """Placeholder names in order of appearance (repeats kept)."""
    return PLACEHOLDER.findall(template)


def render(command: Command, arguments: Mapping[str, object]) -> str:
    """Fill `command.template` with validated, shell-quoted arguments (and, for paths
    under narrow roots, the host-side check of where they really lead)."""
    reject_non_finite(command.name, arguments)
    accepted = {p.name for p in command.parameters}
    unknown = sorted(name for name in arguments if name not in accepted)
    if unknown:
        names = ", ".join(sorted(accepted)) or "(none: this command takes no arguments)"
        listed = ", ".join(shown(name, 40) for name in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ParameterError(
            command.name, unknown[0], f"unknown argument(s) {listed}{more}; accepted: {names}"
        )
    quoted: dict[str, str] = {}
    checks: list[str] = []
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
        text = check_value(command.name, parameter, value)
        if parameter.type is ParamType.PATH and "/" not in parameter.roots:
            variable = f"tnagent_{parameter.name}"
            checks.append(_resolved_path_check(variable, text, parameter))
            quoted[parameter.name] = f'"${variable}"'
        else:
            quoted[parameter.name] = shlex.quote(text)

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in quoted:
            # Only reachable for a Command built in code, not loaded from YAML.
            raise ParameterError(
                command.name, name, "template placeholder names no parameter; fix the catalog"
            )
        return quoted[name]

    return "".join(checks) + PLACEHOLDER.sub(substitute, command.template)


def _resolved_path_check(variable: str, path: str, parameter: Parameter) -> str:
    """Shell text that sets `variable` to `path` as the host resolves it (symlinks
    followed), or refuses the whole command when that lies outside every root."""
    roots = [f"{variable}_root{index}" for index in range(len(parameter.roots))]
    steps = [f"{variable}=$(realpath -m -- {shlex.quote(path)})"]
    steps += [f"{name}=$(realpath -m -- {shlex.quote(root)})"
              for name, root in zip(roots, parameter.roots, strict=True)]
    # ${root%/}: a root that resolves to / itself must still match "/anything".
    patterns = "|".join(f'"${name}"|"${{{name}%/}}"/*' for name in roots)
    message = (f"{PATH_REFUSED_MARKER} path parameter {parameter.name!r}: %s resolves to %s "
               "on this host, outside the allowed roots (%s); nothing ran\\n")
    shown_roots = shlex.quote(", ".join(parameter.roots))
    return (
        " && ".join(steps)
        + f' && case "${variable}" in {patterns}) ;; *) false ;; esac'
        + f" || {{ printf {shlex.quote(message)} {shlex.quote(path)} \"${{{variable}:-?}}\" "
        + f"{shown_roots} >&2; exit {PATH_REFUSED_STATUS}; }}; "
    )


def path_refusal(exit_status: int | None, stderr: str) -> str | None:
    """The host-side path check's refusal message, if that is how the command ended."""
    if exit_status == PATH_REFUSED_STATUS and stderr.startswith(PATH_REFUSED_MARKER):
        return stderr.splitlines()[0]
    return None


def wrap_for_exec(rendered: str, *, timeout: float, become: str | None = None) -> str:
    """The exact string to hand to an SSH exec request.

    `timeout` runs the command in its own process group and signals the whole
    group, so every stage of a pipeline dies; `-k 2` follows TERM with KILL for
    commands that ignore TERM. stdin comes from /dev/null so nothing can wait
    for input on the channel. /bin/sh is named explicitly so the template is
    interpreted by a POSIX shell whatever the remote login shell is (the login
    shell only has to parse this one quoted line).

    With `become`, the command runs under `sudo -n -u USER --`: never a password
    prompt (-n), and what sudo is asked to run is exactly `timeout ... /bin/sh -c
    RENDERED`, so a sudoers rule can name that one command line (`sudoers_line`).
    The group `timeout` makes then belongs to USER, which the login user cannot
    signal; so a small `/bin/sh` reports its own pid and `exec`s sudo, and a stop
    sends TERM to sudo, which relays it to `timeout` (see StopTarget).
    """
    if become is None:
        return f"{_timed(timeout)} /bin/sh -c {shlex.quote(shell_script(rendered))} </dev/null"
    elevated = f"sudo -n -u {_user(become)} -- {_elevated(rendered, timeout)}"
    report = f"printf '{SUDO_REPORT}%s\\n' \"$$\" >&2; exec {elevated}"
    return f"/bin/sh -c {shlex.quote(report)} </dev/null"


# The process a plain command's report names reads its own pid here (Linux): a subshell's
# `$$` is its parent's, and dash has no other way to learn it.
SELF_STAT = "/proc/self/stat"
# First words a POSIX shell runs itself (builtins and keywords of dash, bash, busybox ash and
# ksh): a command line starting with one needs the shell. Any other first word is a program.
SHELL_WORDS = frozenset((
    "!", ".", ":", "[", "[[", "{", "}", "alias", "autoload", "bg", "bind", "break",
    "builtin", "caller", "case", "cd", "chdir", "command", "compgen", "complete",
    "compopt", "continue", "declare", "dirs", "disown", "do", "done", "echo", "elif",
    "else", "enable", "esac", "eval", "exec", "exit", "export", "false", "fc", "fg",
    "fi", "for", "function", "getopts", "hash", "help", "history", "if", "in", "jobs",
    "kill", "let", "local", "logout", "mapfile", "popd", "print", "printf", "pushd",
    "pwd", "read", "readarray", "readonly", "return", "select", "set", "shift", "shopt",
    "source", "suspend", "test", "then", "time", "times", "trap", "true", "type",
    "typeset", "ulimit", "umask", "unalias", "unset", "until", "wait", "whence", "while",
))
# A program, then words with nothing a shell expands or splits: plain characters,
# single-quoted text, and the "'" that shlex.quote puts between quoted parts around a single
# quote; words separated by single spaces. (One character per step: linear, whatever comes.)
_PLAIN_LINE = re.compile(r"""([A-Za-z0-9_./+-]+)(?: (?:[A-Za-z0-9_./:,@%+=-]|'[^']*'|"'")+)*""")


def plain_command(rendered: str) -> bool:
    """Whether `rendered` is one program with its arguments and nothing else for a shell to
    do: a first word that names a program (no builtin, keyword or assignment), then words
    with no operator, redirection, expansion or glob outside quotes. Its words then mean the
    same to any POSIX shell, so `timeout` can run it without a `/bin/sh -c` of its own
    (`wrap_for_shell`). Anything else is not plain."""
    line = _PLAIN_LINE.fullmatch(rendered)
    return line is not None and line.group(1) not in SHELL_WORDS


def wrap_for_shell(rendered: str, *, timeout: float, become: str | None = None) -> str:
    """The text a persistent `/bin/sh` runs for a call (agent/ssh/shell.py puts it in its
    frame); it means what `wrap_for_exec` means, with one process less for a plain command.

    `wrap_for_exec` starts a `/bin/sh -c` under `timeout`, which reports the group and then
    runs the command: a shell started per call only for that. The persistent shell is a
    POSIX shell already, so a plain command (`plain_command`: a program and quoted words,
    the default catalog's disk, memory, uptime and hostname commands) is run by `timeout`
    directly, from a subshell that first reports its own pid (read from SELF_STAT) and then
    becomes `timeout` (exec keeps the pid; GNU timeout then leads a group of that id). The
    report precedes the command, as before; a stop that comes before `timeout` has made its
    group still finds the process (kill_process_groups signals the id as a pid too).
    Without SELF_STAT, a command run through sudo, or any other command line: the text of
    `wrap_for_exec`. (One exec less per call: on a fleet of 1,000 loopback hosts, about a
    seventh of the hosts' CPU for a warm `hostname` everywhere.)"""
    wrapped = wrap_for_exec(rendered, timeout=timeout, become=become)
    if become is not None or not plain_command(rendered):
        return wrapped
    return (f"( if {{ read -r p _ <{SELF_STAT}; }} 2>/dev/null; then "
            f"printf '{PGID_REPORT}%s\\n' \"$p\" >&2; "
            f"exec {_timed(timeout)} {rendered} </dev/null; fi; exec {wrapped} )")


def _elevated(rendered: str, timeout: float) -> str:
    """What sudo runs for a command with `become` (and what its sudoers rule names)."""
    return f"{_timed(timeout)} /bin/sh -c {shlex.quote(rendered)}"


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


def shell_script(rendered: str) -> str:
    """What /bin/sh -c runs (one place, so the sudoers rule always names exactly what
    wrap_for_exec sends): first the report of the process group `timeout` made for the
    command (GNU timeout leads its own group, so the group id is the shell's parent's
    pid; that first stderr line is how the agent can kill the whole tree after a cancel,
    see kill_process_groups), then the rendered command."""
    return f"printf '{PGID_REPORT}%s\\n' \"$PPID\" >&2; {rendered}"


def _timed(timeout: float) -> str:
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return f"timeout -k 2 {max(1, math.ceil(timeout))}"


def _user(name: str) -> str:
    if not USER_NAME.fullmatch(name):
        raise ValueError(f"not a user name sudo may switch to: {name!r}")
    return name


class StopTarget(NamedTuple):
    """What the agent signals to stop a wrapped command it gave up on.

    A plain command reports the process group `timeout` leads: it is killed whole
    (SIGKILL). A command run through sudo reports the pid of sudo: the login user
    may signal sudo (it keeps the login user as its real uid) but not the target
    user's processes, and sudo relays TERM to `timeout`, which sends it to the
    command's group and KILL two seconds later (`-k 2`).
    """

    number: int
    through_sudo: bool = False

    def __str__(self) -> str:
        return f"sudo (pid {self.number})" if self.through_sudo else f"process group {self.number}"


def parse_pgid_report(line: bytes) -> StopTarget | None:
    """What a wrapped command's first stderr line (without its newline) says to
    signal, or None when the line is not such a report."""
    for prefix, through_sudo in ((PGID_REPORT.encode(), False), (SUDO_REPORT.encode(), True)):
        if line.startswith(prefix):
            digits = line[len(prefix):]
            if digits.isdigit() and len(digits) <= 7 and 1 < int(digits) <= MAX_PID:
                return StopTarget(int(digits), through_sudo)
    return None


def kill_process_groups(targets: Iterable[StopTarget | int], *,
                        sudo_rounds: int = SUDO_STOP_ROUNDS) -> str:
    """The line that stops what these reports named: KILL to each process group,
    TERM to each sudo (a bare int is a process group), looking at the sudos at most
    `sudo_rounds` times. Only numbers a wrapped command reported belong here; 0, 1 and
    negative numbers would mean "my group" or "every process" to kill(1), so they are
    refused outright."""
    stops = sorted({t if isinstance(t, StopTarget) else StopTarget(t) for t in targets})
    if not stops:
        raise ValueError("no process group to kill")
    for stop in stops:
        number = stop.number
        if isinstance(number, bool) or not isinstance(number, int) or not 1 < number <= MAX_PID:
            raise ValueError(f"not a process group id a command reported: {number!r}")
    # A group's id is also the pid of its leader (`timeout`): signalled as a pid too, for a
    # stop that comes between a plain command's report and its group (wrap_for_shell), and
    # first: once it has KILL pending it can fork nothing more, and the group's KILL then
    # reaches what it forked before (the other order leaves a child forked between the two).
    groups = " ".join(f"{stop.number} -{stop.number}" for stop in stops
                      if not stop.through_sudo)
    sudos = " ".join(str(stop.number) for stop in stops if stop.through_sudo)
    line = ""
    if groups:
        # `kill` goes on past a group that is already gone; the status says nothing useful.
        line += f"kill -s KILL -- {groups} 2>/dev/null; "
    if sudos:
        line += _sudo_stop(sudos, sudo_rounds)
    return line + "exit 0"


def _sudo_stop(sudos: str, rounds: int) -> str:
    """The stop of commands run through sudo (`sudos`: their sudos' pids, checked numbers).

    sudo relays TERM to the command, `timeout`, which sends it to its group. But GNU timeout
    installs its TERM handler before it forks the command and learns the command's pid only when
    fork returns: a TERM that lands in between makes it exit and leave the command running, as
    root, with no timeout left (coreutils 9.1, and its 2025 source; 105 of 3,000 TERMs in
    timeout's first 4 ms). And sudo relays a TERM that came while it was starting the command as
    soon as that exists. The login user cannot signal root's command afterwards, so the stop
    must not race it: a sudo is sent TERM only from the round after the command under it was
    seen started, then every round until sudo has ended (with the command). Started: a process
    below sudo, any sudo monitor and `timeout` runs something else, and its parent sleeps.
    `timeout` sleeps (in sigsuspend) only after it has stored the child's pid; a parent still in
    fork's tail is runnable, and under CI's load it can wait there longer than a round (one CI
    run left a root command so, when only the child's exec was checked). A sudo that has not
    started its command after `rounds` rounds gets no TERM: its command, if it ever starts, ends
    at its own timeout, and the line exits 1. Where /proc does not list children (no
    CONFIG_PROC_CHILDREN, or hidepid), every sudo counts as started.

    While sudo starts it switches its real uid to root at moments, and the login user's kill
    then fails as if sudo had gone: a sudo counts as gone only once /proc no longer has it
    either (with hidepid, where /proc hides it, once kill says so).
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"not a number of rounds: {rounds!r}")
    return (
        f"n=0; started=; while [ $n -lt {rounds} ]; do alive=; for p in {sudos}; do "
        '{ kill -s 0 -- "$p" || [ -d "/proc/$p" ]; } 2>/dev/null || continue; alive=1; '
        'case " $started " in *" $p "*) kill -s TERM -- "$p" 2>/dev/null; continue;; esac; '
        "c=$p; d=0; while [ $d -lt 4 ]; do f=/proc/$c/task/$c/children; "
        '[ -r "$f" ] || { started="$started $p"; break; }; '
        'k=; { read -r k _; } <"$f" 2>/dev/null; [ -n "$k" ] || break; '
        'm=; { read -r m; } </proc/$k/comm 2>/dev/null; '
        'case $m in sudo|timeout) c=$k; d=$((d + 1));; '
        '*) s=; { read -r _ _ s _; } </proc/$c/stat 2>/dev/null; '
        '[ "$s" != S ] || started="$started $p"; break;; esac; done; done; '
        '[ -n "$alive" ] || break; '
        f"n=$((n + 1)); sleep {SUDO_STOP_ROUND_SECONDS}; done; "
        '[ -z "$alive" ] || exit 1; '
    )
