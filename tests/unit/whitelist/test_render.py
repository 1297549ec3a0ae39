"""Rendering: per-type accept/reject rules, defaults, argument names, quoting, schemas."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest

from whitelist import Command, Parameter, ParameterError, ParamType, load_catalog, render
from whitelist.render import (
    PATH_REFUSED_STATUS,
    StopTarget,
    parse_pgid_report,
    path_refusal,
    plain_command,
    sudoers_line,
    wrap_for_exec,
    wrap_for_shell,
)


def single(parameter: Parameter, template: str | None = None) -> Command:
    return Command(
        name="probe",
        description="test command",
        category="Test",
        template=template or f"echo {{{parameter.name}}}",
        parameters=(parameter,),
    )


def value_of(parameter: Parameter, value: object) -> str:
    """The single shell word the value became, unquoted again."""
    rendered = render(single(parameter), {parameter.name: value})
    if parameter.type is ParamType.PATH and "/" not in parameter.roots:
        # Narrow roots: the value reaches the command as the host resolves it; run it.
        done = subprocess.run(["/bin/sh", "-c", rendered], capture_output=True, text=True,
                              check=True, timeout=10)
        return done.stdout.removesuffix("\n")
    words = shlex.split(rendered)
    assert words[0] == "echo" and len(words) == 2, rendered
    return words[1]


STRING = Parameter("s", ParamType.STRING, "s", pattern=r"[\w.]+")
ENUM = Parameter("e", ParamType.ENUM, "e", choices=("all", "ext4", "a b"))
INTEGER = Parameter("n", ParamType.INTEGER, "n", minimum=1, maximum=100)
PATH = Parameter("p", ParamType.PATH, "p", roots=("/var/log", "/tmp"))
ANYPATH = Parameter("p", ParamType.PATH, "p", roots=("/",))
UNIT = Parameter("u", ParamType.UNIT, "u")
CONTAINER = Parameter("c", ParamType.CONTAINER, "c")

ACCEPT = [
    (STRING, "abc_1.2", "abc_1.2"),
    (ENUM, "ext4", "ext4"),
    (ENUM, "a b", "a b"),
    (INTEGER, 5, "5"),
    (INTEGER, "5", "5"),
    (INTEGER, "007", "7"),
    (INTEGER, 100, "100"),
    (PATH, "/var/log", "/var/log"),
    (PATH, "/var/log/", "/var/log"),
    (PATH, "/var/log/nginx/access.log", "/var/log/nginx/access.log"),
    (PATH, "/var//log/./nginx", "/var/log/nginx"),
    (PATH, "//tmp/x", "/tmp/x"),
    (PATH, "/tmp/a b;c$(d)*", "/tmp/a b;c$(d)*"),
    (ANYPATH, "/", "/"),
    (ANYPATH, "/etc/ssh", "/etc/ssh"),
    (UNIT, "nginx", "nginx"),
    (UNIT, "nginx.service", "nginx.service"),
    (UNIT, "getty@tty1.service", "getty@tty1.service"),
    (UNIT, "sys-kernel-debug.mount", "sys-kernel-debug.mount"),
    (UNIT, "apt-daily.timer", "apt-daily.timer"),
    (UNIT, "systemd-fsck@dev-disk-by-uuid.service", None),
    (CONTAINER, "web-1", "web-1"),
    (CONTAINER, "3f4e2a1b9c0d", "3f4e2a1b9c0d"),
    (CONTAINER, "my_app.db", "my_app.db"),
]


@pytest.mark.parametrize(("parameter", "value", "expected"), ACCEPT)
def test_accepted_values(parameter: Parameter, value: object, expected: str | None) -> None:
    assert value_of(parameter, value) == (expected if expected is not None else value)


REJECT = [
    # Rules for every type.
    (STRING, "", "empty"),
    (STRING, "-rf", "must not start with '-'"),
    (STRING, "a" * 257, "at most 256"),
    (STRING, "a\nb", "U+000A"),
    (STRING, "a\rb", "U+000D"),
    (STRING, "a\x00b", "U+0000"),
    (STRING, "a\tb", "U+0009"),
    (STRING, "a\x1bb", "U+001B"),
    (STRING, "a\u202eb", "U+202E"),
    (STRING, "a\u200bb", "U+200B"),
    (STRING, "a\u2028b", "U+2028"),
    (STRING, "\ufeffa", "U+FEFF"),
    (STRING, 5, "expected a string"),
    (STRING, None, "expected a string"),
    # STRING: pattern, ASCII classes only.
    (STRING, "a;b", "does not match"),
    (STRING, "a b", "does not match"),
    (STRING, "\u0430bc", "does not match"),  # Cyrillic a
    (STRING, "\uff41bc", "does not match"),  # fullwidth a
    # ENUM
    (ENUM, "ALL", "not one of"),
    (ENUM, "all ", "not one of"),
    (ENUM, "ext", "not one of"),
    # INTEGER
    (INTEGER, 0, "out of range"),
    (INTEGER, 101, "out of range"),
    (INTEGER, -1, "negative"),
    (INTEGER, "-1", "must not start with '-'"),
    (INTEGER, True, "expected an integer"),
    (INTEGER, 5.0, "expected an integer"),
    (INTEGER, "5.0", "not a decimal number"),
    (INTEGER, " 5", "not a decimal number"),
    (INTEGER, "+5", "not a decimal number"),
    (INTEGER, "1_0", "not a decimal number"),
    (INTEGER, "\uff15", "not a decimal number"),
    (INTEGER, "\u0665", "not a decimal number"),
    (INTEGER, "0x10", "not a decimal number"),
    (INTEGER, 10**400, "too large"),
    # PATH
    (PATH, "var/log", "must be absolute"),
    (PATH, "/var/log/../../etc/shadow", "'..'"),
    (PATH, "/var/log/..", "'..'"),
    (PATH, "/tmp/x/../y", "'..'"),
    (PATH, "/var/logx", "not under an allowed root"),
    (PATH, "/var", "not under an allowed root"),
    (PATH, "/etc/passwd", "not under an allowed root"),
    (PATH, "~/x", "must be absolute"),
    (PATH, "/tmp/\x00", "U+0000"),
    (PATH, "/tmp/\n", "U+000A"),
    # UNIT
    (UNIT, "-nginx", "must not start with '-'"),
    (UNIT, "nginx*", "not a systemd unit name"),
    (UNIT, "ngin?", "not a systemd unit name"),
    (UNIT, "nginx service", "not a systemd unit name"),
    (UNIT, ".service", "not a systemd unit name"),
    (UNIT, "@x.service", "not a systemd unit name"),
    (UNIT, "nginx;reboot", "not a systemd unit name"),
    (UNIT, "ngi\u0578x", "not a systemd unit name"),
    (UNIT, "nginx\uff0eservice", "not a systemd unit name"),
    (UNIT, "a/b", "not a systemd unit name"),
    # CONTAINER
    (CONTAINER, "-web", "must not start with '-'"),
    (CONTAINER, "_web", "not a docker container name"),
    (CONTAINER, ".web", "not a docker container name"),
    (CONTAINER, "web:latest", "not a docker container name"),
    (CONTAINER, "web/1", "not a docker container name"),
    (CONTAINER, "we b", "not a docker container name"),
    (CONTAINER, "w\u0435b", "not a docker container name"),
]


@pytest.mark.parametrize(("parameter", "value", "reason"), REJECT)
def test_rejected_values(parameter: Parameter, value: object, reason: str) -> None:
    with pytest.raises(ParameterError) as caught:
        render(single(parameter), {parameter.name: value})
    assert caught.value.command == "probe"
    assert caught.value.parameter == parameter.name
    assert reason in str(caught.value)


def test_max_length_is_per_parameter() -> None:
    short = Parameter("s", ParamType.STRING, "s", pattern="[a-z]+", max_length=3)
    assert value_of(short, "abc") == "abc"
    with pytest.raises(ParameterError, match="at most 3"):
        value_of(short, "abcd")


def test_string_without_pattern_is_refused() -> None:
    with pytest.raises(ParameterError, match="no pattern"):
        value_of(Parameter("s", ParamType.STRING, "s"), "x")


def test_defaults_fill_missing_arguments() -> None:
    catalog = load_catalog()
    assert render(catalog.get("largest_files"), {}) == (
        "find / -xdev -type f -printf '%s %p\\n' 2>/dev/null | sort -rn | head -n 20"
        " | numfmt --to=iec --field=1"
    )
    assert render(catalog.get("largest_files"), {"count": 3, "path": "/var/log/"}).startswith(
        "find /var/log -xdev"
    )
    assert render(catalog.get("disk_usage_path"), {"path": "/var/lib/my dir"}) == (
        "du -shx -- '/var/lib/my dir'"
    )


def test_missing_required_argument() -> None:
    command = load_catalog().get("service_logs")
    with pytest.raises(ParameterError) as caught:
        render(command, {"lines": 5})
    assert caught.value.parameter == "unit"
    assert "required argument is missing" in str(caught.value)


def test_unknown_argument_lists_accepted_names() -> None:
    command = load_catalog().get("service_logs")
    with pytest.raises(ParameterError) as caught:
        render(command, {"unit": "nginx", "since": "yesterday"})
    assert caught.value.parameter == "since"
    assert "accepted: lines, priority, unit" in str(caught.value)
    with pytest.raises(ParameterError, match="takes no arguments"):
        render(load_catalog().get("uptime"), {"x": 1})


def test_values_are_always_quoted() -> None:
    command = Command(
        name="q",
        description="d",
        category="c",
        template="echo {n} {s} {n}",
        parameters=(
            Parameter("n", ParamType.INTEGER, "n"),
            Parameter("s", ParamType.STRING, "s", pattern=".+"),
        ),
    )
    assert render(command, {"n": 7, "s": "it's $HOME"}) == "echo 7 'it'\"'\"'s $HOME' 7"
    assert render(command, {"n": "12", "s": "a"}) == "echo 12 a 12"


def test_literal_braces_survive_rendering() -> None:
    rendered = render(load_catalog().get("docker_ps"), {})
    assert "{{.ID}}\\t{{.Names}}" in rendered
    command = Command(
        name="awk",
        description="d",
        category="c",
        template="awk '{print $1}' {f} | head -n {n}",
        parameters=(
            Parameter("f", ParamType.PATH, "f", roots=("/",)),
            Parameter("n", ParamType.INTEGER, "n", default=2),
        ),
    )
    assert render(command, {"f": "/etc/x y"}) == "awk '{print $1}' '/etc/x y' | head -n 2"


def test_wrap_for_exec_format() -> None:
    report = "printf 'tailnet-agent-pgid:%s\\n' \"$PPID\" >&2; "
    assert wrap_for_exec("uptime", timeout=10) == (
        f"timeout -k 2 10 /bin/sh -c {shlex.quote(report + 'uptime')} </dev/null")
    assert wrap_for_exec("a; b", timeout=2.1) == (
        f"timeout -k 2 3 /bin/sh -c {shlex.quote(report + 'a; b')} </dev/null")
    assert wrap_for_exec("x", timeout=0.2).startswith("timeout -k 2 1 ")
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="positive number of seconds"):
            wrap_for_exec("x", timeout=bad)


def test_input_schema() -> None:
    catalog = load_catalog()
    schema = catalog.get("service_logs").input_schema()
    del schema["properties"]["priority"]
    assert schema == {
        "type": "object",
        "properties": {
            "unit": {
                "type": "string",
                "description": catalog.get("service_logs").parameter("unit").description,
                "pattern": "^[A-Za-z0-9_:][A-Za-z0-9:_.@-]*$",
                "maxLength": 256,
            },
            "lines": {
                "type": "integer",
                "description": "How many of the most recent lines to show.",
                "minimum": 1,
                "maximum": 2000,
                "default": 100,
            },
        },
        "required": ["unit"],
        "additionalProperties": False,
    }
    assert catalog.get("uptime").input_schema()["properties"] == {}
    priority = catalog.get("service_logs").input_schema()["properties"]["priority"]
    assert priority["enum"][0] == "emerg" and priority["default"] == "debug"
    path = PATH.json_schema()
    assert path["pattern"] == "^/" and "/var/log, /tmp" in path["description"]
    assert STRING.json_schema()["pattern"] == r"^(?:[\w.]+)$"
    assert CONTAINER.json_schema()["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def test_become_runs_the_rendered_line_under_sudo_without_a_prompt() -> None:
    elevated = wrap_for_exec("whoami", timeout=10, become="root")
    outer = shlex.split(elevated.removesuffix(" </dev/null"))
    assert outer[:2] == ["/bin/sh", "-c"] and len(outer) == 3
    # The small shell reports its own pid (sudo's, after exec), then becomes sudo.
    report, _, elevated_line = outer[2].partition("; exec ")
    assert report == "printf 'tailnet-agent-sudo:%s\\n' \"$$\" >&2"
    words = shlex.split(elevated_line)
    assert words[:5] == ["sudo", "-n", "-u", "root", "--"]
    # What sudo is asked to run: timeout, then /bin/sh -c and the rendered command, one
    # word, with nothing of the agent's own before it (the sudoers rule names exactly it).
    assert words[5:] == ["timeout", "-k", "2", "10", "/bin/sh", "-c", "whoami"]
    for bad in ("root -- id", "-s", "#0", "ALL", ""):
        with pytest.raises(ValueError, match="user name"):
            wrap_for_exec("whoami", timeout=10, become=bad)


@pytest.mark.parametrize("rendered, escaped", [
    ("whoami", "whoami"),
    ("df -h -- /", "df\\ -h\\ --\\ /"),
    ("ls /var/log/*.log", "ls\\ /var/log/\\*.log"),
    ("echo a,b c:d e=f # [x]?", "echo\\ a\\,b\\ c\\:d\\ e\\=f\\ \\#\\ \\[x\\]\\?"),
    ("printf '%s\\n' x", "printf\\ '%s\\\\\\\\n'\\ x"),
    ("a  b\tc", "a\\ \\ b\\\tc"),
])
def test_the_sudoers_line_names_exactly_one_command_line(rendered: str, escaped: str) -> None:
    line = sudoers_line("tnagent", "root", rendered, timeout=9.5)
    assert line == f"tnagent ALL=(root) NOPASSWD: /usr/bin/timeout -k 2 10 /bin/sh -c {escaped}"


def test_a_login_that_is_not_a_plain_name_is_quoted_in_the_sudoers_line() -> None:
    assert sudoers_line("first.last", "root", "id", timeout=5).startswith('"first.last" ALL=')


def test_a_wrapped_command_reports_the_process_group_timeout_made_for_it() -> None:
    script = wrap_for_exec("ps -o pgid= -p $$ >&2; echo out", timeout=5)
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, timeout=10, check=True)
    first, second = done.stderr.splitlines()[:2]
    reported = parse_pgid_report(first)
    assert reported == StopTarget(int(second.strip()), through_sudo=False)
    assert done.stdout == b"out\n"


@pytest.mark.parametrize("line", [b"", b"tailnet-agent-pgid:", b"tailnet-agent-pgid:1",
                                  b"tailnet-agent-pgid:0", b"tailnet-agent-pgid:-5",
                                  b"tailnet-agent-pgid:12a", b"tailnet-agent-pgid:99999999",
                                  b"x tailnet-agent-pgid:123", b"tailnet-agent-pgid: 123"])
def test_only_a_well_formed_report_names_a_group(line: bytes) -> None:
    assert parse_pgid_report(line) is None


def test_a_report_from_the_sudo_wrapper_names_sudo() -> None:
    assert parse_pgid_report(b"tailnet-agent-sudo:4242") == StopTarget(4242, through_sudo=True)
    assert parse_pgid_report(b"tailnet-agent-sudo:1") is None


def test_a_symlink_out_of_the_roots_is_refused_on_the_host(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    (root / "app").mkdir(parents=True)
    (root / "app" / "x.log").write_text("ok\n")
    (root / "esc").symlink_to("/etc")
    (root / "inner").symlink_to(root / "app")
    command = Command("read", "d", "Test", "cat -- {p}",
                      (Parameter("p", ParamType.PATH, "p", roots=(str(root),)),))

    def run(path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", "-c", render(command, {"p": path})],
                              capture_output=True, text=True, timeout=10)

    assert run(f"{root}/app/x.log").stdout == "ok\n"
    assert run(f"{root}/inner/x.log").stdout == "ok\n"  # a link that stays inside is fine
    escaped = run(f"{root}/esc/passwd")
    assert escaped.returncode == PATH_REFUSED_STATUS and escaped.stdout == ""
    refusal = path_refusal(escaped.returncode, escaped.stderr)
    assert refusal is not None
    assert f"{root}/esc/passwd resolves to /etc/passwd" in refusal and str(root) in refusal


def test_a_root_that_is_itself_a_symlink_is_resolved_too(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("1\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    command = Command("read", "d", "Test", "cat -- {p}",
                      (Parameter("p", ParamType.PATH, "p", roots=(str(tmp_path / "link"),)),))
    done = subprocess.run(["/bin/sh", "-c", render(command, {"p": f"{tmp_path}/link/f"})],
                          capture_output=True, text=True, timeout=10)
    assert done.stdout == "1\n", done.stderr


def test_percent_signs_in_a_refused_path_are_text(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "%s%n").symlink_to("/etc")
    command = Command("read", "d", "Test", "ls -- {p}",
                      (Parameter("p", ParamType.PATH, "p", roots=(str(tmp_path / "r"),)),))
    done = subprocess.run(["/bin/sh", "-c", render(command, {"p": f"{tmp_path}/r/%s%n"})],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == PATH_REFUSED_STATUS
    assert f"{tmp_path}/r/%s%n resolves to /etc" in done.stderr


def test_nan_and_infinity_are_refused_anywhere_in_the_arguments() -> None:
    command = Command("probe", "d", "Test", "echo {n}", (INTEGER,))
    for bad in (float("nan"), float("inf"), [1, float("-inf")], {"a": {"b": float("nan")}}):
        with pytest.raises(ParameterError, match="NaN and Infinity"):
            render(command, {"n": bad})


def test_errors_quote_at_most_a_little_of_a_hostile_value() -> None:
    command = Command("probe", "d", "Test", "echo {e}", (ENUM,))
    for arguments in ({"x" * 100_000: 1}, {"e": "y" * 200}):
        with pytest.raises(ParameterError) as caught:
            render(command, arguments)
        assert len(str(caught.value)) < 600, len(str(caught.value))


@pytest.mark.parametrize("line", [
    "hostname", "df -hP", "uptime", "cat /proc/meminfo", "/usr/bin/free -h",
    "du -shx -- '/var/log'", "ps -eo pid,comm --sort=-%cpu",
    "journalctl -u 'nginx.service' -n '50'",
    "docker logs --tail '5' -- 'web 1'", "printf-like 'a'\"'\"'b' ''", "x 'two\nlines'",
])
def test_a_program_and_plain_or_quoted_words_is_plain(line: str) -> None:
    assert plain_command(line)
    assert wrap_for_shell(line, timeout=5).startswith("( if { read -r p _ </proc/self/stat; }")


@pytest.mark.parametrize("line", [
    "", " hostname", "hostname ", "df  -h", "ps aux | head", "a; b", "a && b", "a || b",
    "a & b", "cat < /etc/passwd", "echo > x", "a $(id)", "a `id`", "a $HOME", "a ${x}",
    "ls *", "ls ?", "ls [a]", "ls ~", "ls ~root", "a # comment", "a\tb", "a\nb", "a\\b",
    "a \"x\"", "a 'unclosed", "(a)", "{ a; }", "! a", "A=1 a", "'hostname'", "\"hostname\"",
    "echo x", "printf x", "test -f x", "[ -f x ]", "cd /", "kill 1", "exec a", "eval a",
    ". a", "command -v a", "type a", "ulimit -a", "read x", "set -e", "time a", "if",
    "a\u00a0b", "a é",
])
def test_anything_a_shell_would_interpret_is_not_plain(line: str) -> None:
    assert not plain_command(line)
    assert wrap_for_shell(line, timeout=5) == wrap_for_exec(line, timeout=5)


def test_a_command_through_sudo_keeps_the_exec_wrapper() -> None:
    assert (wrap_for_shell("hostname", timeout=5, become="root")
            == wrap_for_exec("hostname", timeout=5, become="root"))


def test_the_plain_check_is_linear_on_hostile_lines() -> None:
    for line in ("a " + "b" * 100_000 + "!", "a " + "'x' " * 30_000 + "$", "a " + "-" * 200_000):
        started = time.perf_counter()
        plain_command(line)
        assert time.perf_counter() - started < 1.0
