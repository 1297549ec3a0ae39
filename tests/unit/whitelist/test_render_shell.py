"""Property tests against a real /bin/sh: a value is rejected, or it arrives as ONE argument.

The template `printf '[%s]' {v}` prints each argv element in brackets, so the
shell's output shows exactly how many words it made and what they contain.
"""

from __future__ import annotations

import importlib
import posixpath
import re
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whitelist import (
    Command,
    Parameter,
    ParameterError,
    ParamType,
    render,
    wrap_for_exec,
    wrap_for_shell,
)
from whitelist.render import plain_command

SH = "/bin/sh"
render_module = importlib.import_module("whitelist.render")  # (`whitelist.render` is the function)
SHELL_CHARS = [
    *";&|<>()$`\\\"' \t\n\r*?[]{}~!#=%^,:+-./@",
    "\x00",
    "\uff1b",
    "\u202e",
    "\u200b",
    "\u2028",
    "\u0085",
    "\uff0d",
]
SHELL_TOKENS = [*SHELL_CHARS, "$(", "${IFS}", "&&", "||", "--", "..", "a", "5", "nginx", "/tmp"]

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

values = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(SHELL_CHARS) | st.characters(), max_size=40),
    st.lists(st.sampled_from(SHELL_TOKENS), max_size=12).map("".join),
)
paths = st.one_of(
    values,
    st.lists(values, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts)),
)

STRING = Parameter("v", ParamType.STRING, "anything", pattern=r"(?s).+")
PATH = Parameter("v", ParamType.PATH, "a path", roots=("/",))
LOGS = Parameter("v", ParamType.PATH, "a log path", roots=("/var/log",))
UNIT = Parameter("v", ParamType.UNIT, "a unit")
CONTAINER = Parameter("v", ParamType.CONTAINER, "a container")


def probe(parameter: Parameter) -> Command:
    return Command(
        name="probe",
        description="prints its argument",
        category="Test",
        template="printf '[%s]' {v}",
        parameters=(parameter,),
    )


def two_arguments(template: str) -> Command:
    """A command that prints its two string arguments (`template` says how)."""
    return Command(
        name="two",
        description="prints two arguments",
        category="Test",
        template=template,
        parameters=(
            Parameter("a", ParamType.STRING, "a", pattern=r"(?s).+"),
            Parameter("b", ParamType.STRING, "b", pattern=r"(?s).+"),
        ),
    )


def shell_output(script: str) -> bytes:
    result = subprocess.run([SH, "-c", script], capture_output=True, timeout=10, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def check_one_argument(parameter: Parameter, value: str, expected: str | None = None) -> None:
    try:
        rendered = render(probe(parameter), {"v": value})
    except ParameterError:
        return
    intended = value if expected is None else expected
    assert not intended.startswith("-")
    assert "\n" not in intended and "\x00" not in intended
    assert shell_output(rendered) == b"[" + intended.encode() + b"]"


@PROPERTY_SETTINGS
@given(values)
def test_string_value_is_one_literal_argument(value: str) -> None:
    check_one_argument(STRING, value)


def normalized(value: str) -> str:
    return "/" + posixpath.normpath(value).lstrip("/")


@PROPERTY_SETTINGS
@given(paths)
def test_path_value_is_one_normalized_argument(value: str) -> None:
    check_one_argument(PATH, value, normalized(value) if value.startswith("/") else value)


@PROPERTY_SETTINGS
@given(st.one_of(paths, paths.map(lambda p: "/var/log" + p)))
def test_path_never_escapes_its_root(value: str) -> None:
    try:
        rendered = render(probe(LOGS), {"v": value})
    except ParameterError:
        return
    out = shell_output(rendered).decode()
    assert out.startswith("[") and out.endswith("]")
    path = out[1:-1]
    assert path == "/var/log" or path.startswith("/var/log/")
    assert ".." not in path.split("/")


@PROPERTY_SETTINGS
@given(values)
def test_unit_value_is_one_literal_argument(value: str) -> None:
    check_one_argument(UNIT, value)


@PROPERTY_SETTINGS
@given(st.one_of(values, st.from_regex(r"[A-Za-z0-9_:][A-Za-z0-9:_.@-]{0,30}", fullmatch=True)))
def test_unit_names_are_accepted_exactly_when_they_match(value: str) -> None:
    spec = re.fullmatch(r"[A-Za-z0-9_:][A-Za-z0-9:_.@-]*", value, re.ASCII)
    try:
        rendered = render(probe(UNIT), {"v": value})
    except ParameterError:
        assert spec is None or len(value) > UNIT.max_length
        return
    assert spec is not None
    assert shell_output(rendered) == b"[" + value.encode() + b"]"


@PROPERTY_SETTINGS
@given(values)
def test_container_value_is_one_literal_argument(value: str) -> None:
    check_one_argument(CONTAINER, value)


@PROPERTY_SETTINGS
@given(values, values, st.floats(min_value=0.01, max_value=100))
def test_wrap_for_exec_round_trips_under_sh(first: str, second: str, timeout: float) -> None:
    command = two_arguments("printf '[%s]' {a} {b}")
    try:
        rendered = render(command, {"a": first, "b": second})
    except ParameterError:
        return
    direct = shell_output(rendered)
    assert direct == b"[" + first.encode() + b"][" + second.encode() + b"]"
    assert shell_output(wrap_for_exec(rendered, timeout=timeout)) == direct


def test_wrap_for_exec_kills_the_whole_pipeline() -> None:
    # Both stages of the pipeline must be gone once timeout fires, or the SSH
    # channel would stay open waiting for them.
    script = wrap_for_exec("sleep 30 | sleep 30; echo never", timeout=1)
    result = subprocess.run([SH, "-c", script], capture_output=True, timeout=10, check=False)
    assert result.returncode == 124
    assert b"never" not in result.stdout


def test_wrap_for_exec_gives_no_stdin() -> None:
    script = wrap_for_exec("cat; echo done", timeout=5)
    result = subprocess.run(
        [SH, "-c", script], input=b"secret input", capture_output=True, timeout=10, check=False
    )
    assert result.stdout == b"done\n"


@pytest.mark.parametrize("value", ["a'b", "$(id)", "`id`", "a\\", "*", "~", "!x", "%s"])
def test_examples_round_trip(value: str) -> None:
    check_one_argument(STRING, value)


# -- the persistent shell's text (wrap_for_shell) ---------------------------------------

# A program with quoted words: a plain command line.
PLAIN_PROBE = two_arguments("/usr/bin/printf '[%s]' {a} {b}")


def report_and_rest(stderr: bytes) -> tuple[int, bytes]:
    """The process-group report the wrapper writes first on stderr, and what follows it."""
    first, _, rest = stderr.partition(b"\n")
    assert first.startswith(b"tailnet-agent-pgid:"), stderr
    return int(first.removeprefix(b"tailnet-agent-pgid:")), rest


@PROPERTY_SETTINGS
@given(values, values)
def test_a_plain_command_means_the_same_under_the_shell_wrapper(first: str, second: str) -> None:
    """Whatever the arguments, a plain command line run by `timeout` itself prints exactly
    what it prints under `wrap_for_exec`'s `/bin/sh -c`, and reports its group first."""
    try:
        rendered = render(PLAIN_PROBE, {"a": first, "b": second})
    except ParameterError:
        return
    assert plain_command(rendered)  # quoted values keep a line plain
    wrapped = wrap_for_shell(rendered, timeout=5)
    assert wrapped != wrap_for_exec(rendered, timeout=5)
    through_shell = subprocess.run([SH, "-c", wrapped], capture_output=True, timeout=10,
                                   check=False)
    assert through_shell.returncode == 0, through_shell.stderr
    assert through_shell.stdout == shell_output(wrap_for_exec(rendered, timeout=5))
    assert through_shell.stdout == b"[" + first.encode() + b"][" + second.encode() + b"]"
    _, rest = report_and_rest(through_shell.stderr)
    assert rest == b""


@pytest.mark.parametrize("self_stat", ["/proc/self/stat", "/nonexistent/stat"])
def test_the_report_names_the_commands_process_group(
    self_stat: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id reported is the group `timeout` made for the command, and the command is its
    child: /proc/self/stat of the command (cat) says so. Without /proc/self/stat the text
    falls back to wrap_for_exec's, which reports the same group (where the command is the
    child of the `/bin/sh -c` that timeout runs)."""
    monkeypatch.setattr(render_module, "SELF_STAT", self_stat)
    result = subprocess.run([SH, "-c", wrap_for_shell("cat /proc/self/stat", timeout=5)],
                            capture_output=True, timeout=10, check=False)
    assert result.returncode == 0, result.stderr
    group, rest = report_and_rest(result.stderr)
    fields = result.stdout.rsplit(b")", 1)[1].split()
    parent, process_group = int(fields[1]), int(fields[2])
    assert process_group == group
    assert (parent == group) is (self_stat == "/proc/self/stat")
    assert rest == b""


def test_the_shell_wrapper_keeps_timeout_and_no_stdin() -> None:
    timed_out = subprocess.run([SH, "-c", wrap_for_shell("sleep 30", timeout=1)],
                               capture_output=True, timeout=10, check=False)
    assert timed_out.returncode == 124
    reads = subprocess.run([SH, "-c", wrap_for_shell("cat", timeout=5)], input=b"secret",
                           capture_output=True, timeout=10, check=False)
    assert reads.returncode == 0 and reads.stdout == b""
