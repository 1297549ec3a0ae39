"""Loading catalog files: the default catalog, override files and every load error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from whitelist import (
    CatalogError,
    Command,
    ParamType,
    UnknownCommandError,
    default_catalog_path,
    load_catalog,
)

REQUIRED = {
    "System": ["hostname", "uptime", "whoami", "uname", "date"],
    "Disk": ["disk_usage", "disk_usage_path", "largest_files"],
    "Memory": ["memory_usage", "memory_detailed"],
    "Process": ["top_processes", "top_memory_processes", "process_count"],
    "Network": ["network_interfaces", "listening_ports", "routing_table"],
    "Services": ["service_status", "failed_services", "service_logs"],
    "Docker": ["docker_ps", "docker_stats", "docker_logs", "docker_images"],
}


def write(tmp_path: Path, text: str, name: str = "catalog.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_default_catalog_loads_with_every_required_command() -> None:
    catalog = load_catalog()
    grouped = catalog.by_category()
    for category, names in REQUIRED.items():
        assert {c.name for c in grouped[category]} >= set(names), category
    for command in catalog:
        assert command.source == str(default_catalog_path())
        assert command.description.strip()
        assert not command.destructive
        assert 0 < command.timeout <= 300
        assert 0 < command.max_output <= 1_000_000


def test_default_catalog_parameter_types() -> None:
    catalog = load_catalog()
    assert catalog.get("disk_usage_path").parameter("path").type is ParamType.PATH
    assert catalog.get("largest_files").parameter("count").type is ParamType.INTEGER
    assert catalog.get("service_status").parameter("unit").type is ParamType.UNIT
    assert catalog.get("service_logs").parameter("unit").required
    assert catalog.get("docker_logs").parameter("container").type is ParamType.CONTAINER
    assert catalog.get("service_logs").parameter("priority").type is ParamType.ENUM


def test_default_templates_are_non_interactive() -> None:
    catalog = load_catalog()
    assert "--no-pager" in catalog.get("service_status").template
    assert "--no-pager" in catalog.get("service_logs").template
    assert "--no-stream" in catalog.get("docker_stats").template
    assert "-- {path}" in catalog.get("disk_usage_path").template
    assert "-- {unit}" in catalog.get("service_status").template
    assert "-- {container}" in catalog.get("docker_logs").template
    for command in catalog:
        assert " -f" not in command.template and "--follow" not in command.template


def test_catalog_mapping_behaviour() -> None:
    catalog = load_catalog()
    assert "uptime" in catalog
    assert "rm" not in catalog
    assert len(catalog) == len(list(catalog))
    assert all(isinstance(c, Command) for c in catalog)
    with pytest.raises(UnknownCommandError) as caught:
        catalog.get("rm_rf")
    assert "uptime" in str(caught.value) and "rm_rf" in str(caught.value)
    with pytest.raises(KeyError, match="no parameter 'nope'"):
        catalog.get("largest_files").parameter("nope")


def test_override_file_adds_and_replaces_commands(tmp_path: Path) -> None:
    extra = write(
        tmp_path,
        """
        commands:
          uptime:
            description: Uptime in pretty form.
            category: System
            template: "uptime -p"
          kernel_log_size:
            description: Size of a log file.
            category: Disk
            template: "du -h -- {file}"
            timeout: 5
            max_output: 1000
            parameters:
              file:
                type: path
                description: Log file.
                roots: ["/var/log/"]
        """,
    )
    default = load_catalog()
    catalog = load_catalog([extra])
    assert len(catalog) == len(default) + 1
    assert catalog.get("uptime").template == "uptime -p"
    assert catalog.get("uptime").source == str(extra)
    # A replaced command keeps its place; new ones come last.
    assert list(catalog.commands) == [*default.commands, "kernel_log_size"]
    added = catalog.get("kernel_log_size")
    assert added.timeout == 5.0 and added.max_output == 1000
    assert added.parameter("file").roots == ("/var/log",)
    assert catalog.get("hostname") == default.get("hostname")


def test_later_override_wins_and_default_can_be_left_out(tmp_path: Path) -> None:
    first = write(
        tmp_path,
        """
        commands:
          hello:
            description: Says hello.
            category: Test
            template: "echo hello"
        """,
        "first.yaml",
    )
    second = write(
        tmp_path,
        """
        commands:
          hello:
            description: Says hi.
            category: Test
            template: "echo hi"
        """,
        "second.yaml",
    )
    catalog = load_catalog([first, second], include_default=False)
    assert list(catalog.commands) == ["hello"]
    assert catalog.get("hello").template == "echo hi"
    assert load_catalog(include_default=False).commands == {}


GOOD_PARAM = """
            parameters:
              p:
                type: integer
                description: A number.
"""

# (yaml body, expected command, expected field, words the message must contain)
ERROR_CASES = {
    "unknown command key": (
        """
        commands:
          x:
            description: d
            category: c
            template: "true"
            timout: 5
        """,
        "x",
        "timout",
        ["did you mean 'timeout'"],
    ),
    "unknown parameter key": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: integer
                description: n
                maximun: 5
        """,
        "x",
        "parameters.p.maximun",
        ["did you mean 'maximum'"],
    ),
    "key that does not apply to the type": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: integer
                description: n
                pattern: "[0-9]+"
        """,
        "x",
        "parameters.p.pattern",
        ["integer parameter"],
    ),
    "unknown top-level key": (
        """
        comands:
          x: {}
        """,
        None,
        "comands",
        ["did you mean 'commands'"],
    ),
    "timeout not a number": (
        """
        commands:
          x:
            description: d
            category: c
            template: "true"
            timeout: fast
        """,
        "x",
        "timeout",
        ["positive number of seconds"],
    ),
    "destructive not a bool": (
        """
        commands:
          x:
            description: d
            category: c
            template: "true"
            destructive: "no"
        """,
        "x",
        "destructive",
        ["true or false"],
    ),
    "timeout over 30 minutes": (
        """
        commands:
          x:
            description: d
            category: c
            template: "true"
            timeout: 1801
        """,
        "x",
        "timeout",
        ["up to 1800", "30 minutes"],
    ),
    "become not a user name": (
        """
        commands:
          x:
            description: d
            category: c
            template: "true"
            become: "root ALL"
        """,
        "x",
        "become",
        ["user name like postgres"],
    ),
    "become on a multi-line template": (
        """
        commands:
          x:
            description: d
            category: c
            template: |
              whoami
            become: true
        """,
        "x",
        "template",
        ["single line"],
    ),
    "become with a line separator (U+2028) in its template": (
        """
        commands:
          x:
            description: d
            category: c
            template: "whoami\\Lid"
            become: true
        """,
        "x",
        "template",
        ["single line", "U+2028"],
    ),
    "become with a next-line control (U+0085) in its template": (
        """
        commands:
          x:
            description: d
            category: c
            template: "whoami\\Nid"
            become: true
        """,
        "x",
        "template",
        ["single line", "U+0085"],
    ),
    "become with a paragraph separator (U+2029) in its template": (
        """
        commands:
          x:
            description: d
            category: c
            template: "whoami\\Pid"
            become: true
        """,
        "x",
        "template",
        ["single line", "U+2029"],
    ),
    "become with a control character in its template": (
        """
        commands:
          x:
            description: d
            category: c
            template: "whoami\\x1bid"
            become: true
        """,
        "x",
        "template",
        ["single line", "U+001B"],
    ),
    "redact not a bool": (
        """
        commands:
          x:
            description: d
            category: c
            template: "true"
            redact: "off"
        """,
        "x",
        "redact",
        ["true or false"],
    ),
    "max_output negative": (
        """
        commands:
          x:
            description: d
            category: c
            template: "true"
            max_output: -1
        """,
        "x",
        "max_output",
        ["positive whole number"],
    ),
    "description not a string": (
        """
        commands:
          x:
            description: 5
            category: c
            template: "true"
        """,
        "x",
        "description",
        ["non-empty string"],
    ),
    "missing template": (
        """
        commands:
          x:
            description: d
            category: c
        """,
        "x",
        "template",
        ["required"],
    ),
    "parameters is a list": (
        """
        commands:
          x:
            description: d
            category: c
            template: "true"
            parameters: [a, b]
        """,
        "x",
        "parameters",
        ["mapping"],
    ),
    "placeholder names no parameter": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p} {q}"
        """
        + GOOD_PARAM,
        "x",
        "template",
        ["{q}", "names no parameter"],
    ),
    "parameter not used": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo"
        """
        + GOOD_PARAM,
        "x",
        "parameters.p",
        ["not used in the template"],
    ),
    "bad regex": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: string
                description: s
                pattern: "[a-"
        """,
        "x",
        "parameters.p.pattern",
        ["invalid regular expression"],
    ),
    "string without pattern": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: string
                description: s
        """,
        "x",
        "parameters.p.pattern",
        ["need a 'pattern'"],
    ),
    "integer default out of range": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: integer
                description: n
                maximum: 100
                default: 500
        """,
        "x",
        "parameters.p.default",
        ["fails its own validation", "from 0 to 100"],
    ),
    "path default outside roots": (
        """
        commands:
          x:
            description: d
            category: c
            template: "ls -- {p}"
            parameters:
              p:
                type: path
                description: n
                roots: [/var/log]
                default: /etc
        """,
        "x",
        "parameters.p.default",
        ["not under an allowed root"],
    ),
    "string default with leading dash": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: string
                description: n
                pattern: ".*"
                default: "-rf"
        """,
        "x",
        "parameters.p.default",
        ["must not start with '-'"],
    ),
    "default of the wrong type": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: integer
                description: n
                default: "ten"
        """,
        "x",
        "parameters.p.default",
        ["must be an integer"],
    ),
    "enum without choices": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: enum
                description: n
        """,
        "x",
        "parameters.p.choices",
        ["non-empty list"],
    ),
    "enum with an option as a choice": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: enum
                description: n
                choices: [a, "-v"]
        """,
        "x",
        "parameters.p.choices",
        ["'-v' is unsafe"],
    ),
    "minimum above maximum": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: integer
                description: n
                minimum: 10
                maximum: 5
        """,
        "x",
        "parameters.p.minimum",
        ["greater than maximum"],
    ),
    "negative minimum": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: integer
                description: n
                minimum: -5
        """,
        "x",
        "parameters.p.minimum",
        ["negative"],
    ),
    "relative root": (
        """
        commands:
          x:
            description: d
            category: c
            template: "ls -- {p}"
            parameters:
              p:
                type: path
                description: n
                roots: [var/log]
        """,
        "x",
        "parameters.p.roots",
        ["absolute"],
    ),
    "path without roots": (
        """
        commands:
          x:
            description: d
            category: c
            template: "ls -- {p}"
            parameters:
              p:
                type: path
                description: n
        """,
        "x",
        "parameters.p.roots",
        ["need 'roots'"],
    ),
    "unknown parameter type": (
        """
        commands:
          x:
            description: d
            category: c
            template: "ls -- {p}"
            parameters:
              p:
                type: filename
                description: n
        """,
        "x",
        "parameters.p.type",
        ["unknown type 'filename'", "container"],
    ),
    "parameter without type": (
        """
        commands:
          x:
            description: d
            category: c
            template: "ls -- {p}"
            parameters:
              p:
                description: n
        """,
        "x",
        "parameters.p.type",
        ["'type' is required"],
    ),
    "duplicate command": (
        """
        commands:
          x:
            description: d
            category: c
            template: "true"
          x:
            description: d2
            category: c
            template: "false"
        """,
        "x",
        None,
        ["defined twice"],
    ),
    "duplicate parameter": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: integer
                description: n
              p:
                type: integer
                description: m
        """,
        "x",
        "parameters.p",
        ["defined twice"],
    ),
    "upper-case command name": (
        """
        commands:
          Disk-Usage:
            description: d
            category: c
            template: "df"
        """,
        "Disk-Usage",
        None,
        ["bad command name"],
    ),
    "command name starting with a digit": (
        """
        commands:
          1df:
            description: d
            category: c
            template: "df"
        """,
        "1df",
        None,
        ["bad command name"],
    ),
    "bad parameter name": (
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {Path}"
            parameters:
              Path:
                type: integer
                description: n
        """,
        "x",
        "parameters.Path",
        ["bad parameter name"],
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES.keys())
def test_load_errors_name_file_command_and_field(tmp_path: Path, case: str) -> None:
    body, command, field, words = ERROR_CASES[case]
    path = write(tmp_path, body)
    with pytest.raises(CatalogError) as caught:
        load_catalog([path], include_default=False)
    error = caught.value
    assert (error.file, error.command, error.field) == (str(path), command, field), str(error)
    message = str(error)
    assert str(path) in message
    assert repr(command) in message if command is not None else "file level" in message
    assert repr(field) in message if field is not None else "field (none)" in message
    for word in words:
        assert word in message
    assert error.line is not None


def test_error_points_at_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        commands:
          x:
            description: d
            category: c
            template: "echo {p}"
            parameters:
              p:
                type: integer
                description: n
                default: -3
        """,
    )
    with pytest.raises(CatalogError) as caught:
        load_catalog([path], include_default=False)
    assert caught.value.line == 11
    assert f"{path}:11" in str(caught.value)


def test_all_problems_of_a_file_are_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        commands:
          a:
            description: d
            category: c
            template: "echo {missing}"
          b:
            description: d
            category: c
            template: "true"
            timeout: 0
          c:
            description: fine
            category: c
            template: "true"
        """,
    )
    with pytest.raises(CatalogError) as caught:
        load_catalog([path], include_default=False)
    problems = caught.value.problems
    assert [(p.command, p.field) for p in problems] == [("a", "template"), ("b", "timeout")]
    assert "1 more problem" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    ["commands: [\n  unclosed", "", "- just\n- a list\n", "commands: 5\n"],
)
def test_unusable_files(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as caught:
        load_catalog([path], include_default=False)
    assert caught.value.file == str(path)
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(CatalogError, match="cannot read the file") as caught:
        load_catalog([path])
    assert caught.value.command is None and caught.value.file == str(path)


def test_literal_braces_are_not_placeholders(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        commands:
          x:
            description: d
            category: c
            template: "docker ps --format '{{.Names}} {{json .}}' | awk '{print $1}' | head -n {n}"
            parameters:
              n:
                type: integer
                description: n
                default: 3
        """,
    )
    catalog = load_catalog([path], include_default=False)
    assert catalog.get("x").parameter("n").default == 3


def test_become_and_redact_are_read(tmp_path: Path) -> None:
    extra = write(
        tmp_path,
        """
        commands:
          apt_check:
            description: Simulate an upgrade.
            category: Packages
            template: "apt-get -s upgrade"
            become: true
            timeout: 1800
          pg_size:
            description: Database sizes.
            category: Databases
            template: "psql -c 'select 1'"
            become: postgres
            redact: false
        """,
    )
    catalog = load_catalog([extra], include_default=False)
    apt, pg = catalog.get("apt_check"), catalog.get("pg_size")
    assert apt.runs_as() == "root" and apt.runs_as("admin") == "admin"
    assert apt.timeout == 1800.0 and apt.redact
    assert pg.runs_as("admin") == "postgres" and not pg.redact
    assert load_catalog().get("hostname").runs_as() is None


def test_a_command_can_be_bound_to_hosts(tmp_path: Path) -> None:
    catalog = load_catalog([write(tmp_path, """
        commands:
          pg_activity:
            description: Queries.
            category: Database
            template: "psql -c 'select 1'"
            hosts: ["tag:postgres", "db-*"]
    """)])
    command = catalog.get("pg_activity")
    assert command.hosts == ("tag:postgres", "db-*")
    assert command.applies_to("db-7") and command.applies_to("pg", ("tag:postgres",))
    assert not command.applies_to("web-1", ("tag:web",))
    assert catalog.get("hostname").applies_to("anything")  # unbound: everywhere


@pytest.mark.parametrize(("hosts", "problem"), [
    ("[]", "expected a non-empty list"),
    ("['tag:']", "is not a tag"),
    ("['tag:a b']", "is not a tag"),
    ("[1]", "expected a host name, glob or tag"),
])
def test_bad_host_bindings_are_catalog_errors(tmp_path: Path, hosts: str, problem: str) -> None:
    path = write(tmp_path, f"""
        commands:
          bound:
            description: x
            category: X
            template: "hostname"
            hosts: {hosts}
    """)
    with pytest.raises(CatalogError) as caught:
        load_catalog([path])
    assert problem in str(caught.value) and "hosts" in str(caught.value)
