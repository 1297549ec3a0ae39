"""Loading and validating catalog YAML files (format documented in commands.yaml).

Everything a catalog author can get wrong is caught here, at start-up, with
the file, line, command and field named, rather than at the moment an LLM
happens to call the broken command.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from whitelist.host_patterns import pattern_problem

from .errors import CatalogError, yaml_problem
from .model import (
    BECOME_DEFAULT,
    MAX_OUTPUT,
    MAX_TIMEOUT,
    USER_NAME,
    Catalog,
    Command,
    Parameter,
)
from .parameters import MAX_NAME_LENGTH, load_parameter, text_field, unknown_key, valid_name
from .parsers import PARSERS, OutputParser
from .render import placeholders
from .values import forbidden_character

_COMMAND_KEYS = {
    "description",
    "category",
    "template",
    "parameters",
    "destructive",
    "timeout",
    "max_output",
    "become",
    "redact",
    "hosts",
    "parser",
}
_REQUIRED_COMMAND_KEYS = ("description", "category", "template")

Key = tuple[Any, ...]


def default_catalog_path() -> Path:
    return Path(__file__).with_name("commands.yaml")


def load_catalog(extra: Sequence[Path] = (), *, include_default: bool = True) -> Catalog:
    """Load the default catalog, then each extra file in order.

    A later file adds commands or replaces a command of the same name (keeping
    its position). Raises CatalogError for the first file with problems.
    """
    files = [default_catalog_path()] if include_default else []
    files.extend(Path(p) for p in extra)
    commands: dict[str, Command] = {}
    for path in files:
        for command in load_file(path):
            commands[command.name] = command
    return Catalog(MappingProxyType(commands))


def load_file(path: Path) -> list[Command]:
    """Parse and validate one catalog file; raise CatalogError listing all problems."""
    return _FileLoader(path).load()


class _FileLoader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = str(path)
        self.problems: list[CatalogError] = []
        self.lines: dict[Key, int] = {}

    def load(self) -> list[Command]:
        data = self._parse()
        commands: list[Command] = []
        if data is not None:
            commands = self._commands(data)
        if self.problems:
            first, *others = self.problems
            raise CatalogError(
                first.file,
                first.command,
                first.field,
                first.problem,
                line=first.line,
                others=others,
            )
        return commands

    # -- reporting -------------------------------------------------------

    def _problem(self, command: str | None, field: str | None, problem: str) -> None:
        key: Key = ("commands", command) if command is not None else ()
        if field is not None:
            key = (*key, *field.split("."))
        line = None
        while key:
            if key in self.lines:
                line = self.lines[key]
                break
            key = key[:-1]
        self.problems.append(CatalogError(self.file, command, field, problem, line=line))

    # -- YAML --------------------------------------------------------------

    def _parse(self) -> Any:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            self._problem(None, None, f"cannot read the file ({error}); check the path")
            return None
        loader = yaml.SafeLoader(text)
        try:
            # One parse: the node tree gives line numbers, the same tree gives the data.
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            self.problems.append(
                CatalogError(
                    self.file, None, None, f"not valid YAML: {yaml_problem(error)}; fix the syntax",
                    line=line,
                )
            )
            return None
        finally:
            loader.dispose()
        if node is not None:
            self._index(node, ())
        if not isinstance(data, dict):
            self._problem(
                None,
                None,
                "expected a mapping with a top-level 'commands' key "
                f"(got {type(data).__name__}); see the format notes in "
                f"{default_catalog_path()}",
            )
            return None
        return data

    def _index(self, node: yaml.Node, key: Key) -> None:
        """Record the line of every mapping key and report duplicate keys.

        PyYAML silently keeps the last of two equal keys; a duplicated command
        name would quietly hide the first definition.
        """
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                child = (*key, name)
                if name in seen:
                    self.lines[child] = key_node.start_mark.line + 1
                    command, field = _split_key(child)
                    self._problem(
                        command,
                        field,
                        f"{name!r} is defined twice in this mapping; remove or rename one",
                    )
                    continue
                seen.add(name)
                self.lines[child] = key_node.start_mark.line + 1
                self._index(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                self._index(item, key)

    # -- commands ----------------------------------------------------------

    def _commands(self, data: dict[Any, Any]) -> list[Command]:
        for key in data:
            if key != "commands":
                self._unknown_key(None, None, key, {"commands"})
        entries = data.get("commands")
        if not isinstance(entries, dict):
            self._problem(
                None,
                "commands",
                "expected a mapping of command name to command definition "
                f"(got {type(entries).__name__})",
            )
            return []
        commands = []
        for name, entry in entries.items():
            command = self._command(name, entry)
            if command is not None:
                commands.append(command)
        return commands

    def _command(self, name: Any, entry: Any) -> Command | None:
        if not valid_name(name):
            self._problem(
                str(name),
                None,
                f"bad command name {name!r}: use lower-case letters, digits and '_', "
                f"starting with a letter, at most {MAX_NAME_LENGTH} characters",
            )
            return None
        if not isinstance(entry, dict):
            self._problem(
                name, None, f"expected a mapping of command fields, got {type(entry).__name__}"
            )
            return None
        ok = True
        for key in entry:
            if key not in _COMMAND_KEYS:
                self._unknown_key(name, None, key, _COMMAND_KEYS)
                ok = False
        for key in _REQUIRED_COMMAND_KEYS:
            if key not in entry:
                self._problem(name, key, f"'{key}' is required")
                ok = False
        description = self._text(name, "description", entry.get("description", ""))
        category = self._text(name, "category", entry.get("category", ""))
        template = self._text(name, "template", entry.get("template", ""))
        destructive = entry.get("destructive", False)
        if not isinstance(destructive, bool):
            self._problem(name, "destructive", f"expected true or false, got {destructive!r}")
            ok = False
        timeout = entry.get("timeout", 30.0)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
            or timeout > MAX_TIMEOUT
        ):
            self._problem(
                name, "timeout", f"expected a positive number of seconds up to {MAX_TIMEOUT:g} "
                f"(30 minutes), got {timeout!r}"
            )
            ok = False
        max_output = entry.get("max_output", 1_000_000)
        if (isinstance(max_output, bool) or not isinstance(max_output, int) or max_output <= 0
                or max_output > MAX_OUTPUT):
            self._problem(
                name, "max_output", f"expected a positive whole number of bytes up to {MAX_OUTPUT} "
                f"(1 GiB), got {max_output!r}"
            )
            ok = False
        become = self._become(name, entry.get("become", False))
        if become is False:
            ok = False
        redact = entry.get("redact", True)
        if not isinstance(redact, bool):
            self._problem(name, "redact", f"expected true or false, got {redact!r}")
            ok = False
        hosts = self._hosts(name, entry.get("hosts"))
        if hosts is None:
            ok = False
        parser = self._parser(name, entry.get("parser"))
        if parser is False:
            ok = False
        parameters = self._parameters(name, entry.get("parameters"))
        if parameters is None or None in (description, category, template):
            return None
        assert template is not None and description is not None and category is not None
        if not self._template_matches(name, template, parameters):
            ok = False
        breaks = forbidden_character(template) if become is not None else None
        if breaks is not None:
            # sudoers matches one line: the rule for this command must be writable. Any
            # line or paragraph separator or control character (U+2028, U+0085, tab...)
            # is refused, not only \n and \r: some readers take them for line breaks.
            self._problem(name, "template", "a command with `become` must be a single line "
                          f"of printable text (found {breaks}; no line break, not even a "
                          "final one: use \"...\" or >-); join lines with ';' or '&&'")
            ok = False
        if not ok:
            return None
        return Command(
            name=name,
            description=description,
            category=category,
            template=template,
            parameters=tuple(parameters),
            destructive=destructive,
            timeout=float(timeout),
            max_output=max_output,
            source=self.file,
            become=become if isinstance(become, str) else None,
            redact=redact,
            hosts=hosts or (),
            parser=parser if isinstance(parser, OutputParser) else None,
        )

    def _become(self, command: str, value: Any) -> str | bool | None:
        """None (not elevated), a user name or BECOME_DEFAULT; False after a problem."""
        if value is False or value is None:
            return None
        if value is True:
            return BECOME_DEFAULT
        if isinstance(value, str) and USER_NAME.fullmatch(value):
            return value
        self._problem(command, "become", "expected true (the host's become user, root by "
                      f"default) or a user name like postgres, got {value!r}")
        return False

    def _parser(self, command: str, value: Any) -> OutputParser | bool | None:
        """The parser a command names (None: none); False after a problem."""
        if value is None:
            return None
        parser = PARSERS.get(value) if isinstance(value, str) else None
        if parser is None:
            self._problem(command, "parser", f"unknown parser {value!r}; the parsers are: "
                          f"{', '.join(PARSERS)} (see whitelist/parsers.py for the output each "
                          "reads)")
            return False
        return parser

    def _template_matches(self, command: str, template: str, parameters: list[Parameter]) -> bool:
        used = placeholders(template)
        declared = [p.name for p in parameters]
        ok = True
        for name in dict.fromkeys(used):
            if name not in declared:
                self._problem(
                    command,
                    "template",
                    f"placeholder {{{name}}} names no parameter; declare it under "
                    f"'parameters' or fix the spelling (declared: {', '.join(declared) or 'none'})",
                )
                ok = False
        for name in declared:
            if name not in used:
                self._problem(
                    command,
                    f"parameters.{name}",
                    f"parameter is not used in the template; add {{{name}}} to the "
                    "template or remove the parameter",
                )
                ok = False
        return ok

    def _hosts(self, command: str, raw: Any) -> tuple[str, ...] | None:
        """The hosts a command is bound to (None after reporting a problem)."""
        if raw is None:
            return ()
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            self._problem(command, "hosts", "expected a non-empty list of host names, globs "
                          "or tag:<name>, e.g. [\"tag:postgres\", \"db-*\"]")
            return None
        problems = [p for p in map(pattern_problem, raw) if p is not None]
        for problem in problems:
            self._problem(command, "hosts", problem)
        return None if problems else tuple(p.strip() for p in raw)

    # -- parameters --------------------------------------------------------

    def _parameters(self, command: str, raw: Any) -> list[Parameter] | None:
        if raw is None:
            return []
        if not isinstance(raw, dict):
            self._problem(
                command,
                "parameters",
                f"expected a mapping of parameter name to definition, got {type(raw).__name__}",
            )
            return None
        parameters: list[Parameter] = []
        ok = True
        for name, spec in raw.items():
            parameter = load_parameter(self._problem, command, name, spec)
            if parameter is None:
                ok = False
            else:
                parameters.append(parameter)
        return parameters if ok else None

    # -- small helpers -----------------------------------------------------

    def _text(self, command: str, field: str, value: Any) -> str | None:
        return text_field(self._problem, command, field, value)

    def _unknown_key(self, command: str | None, where: str | None, key: Any,
                     allowed: set[str]) -> None:
        unknown_key(self._problem, command, where, key, allowed)

def _split_key(key: Key) -> tuple[str | None, str | None]:
    if len(key) >= 2 and key[0] == "commands":
        command = str(key[1])
        field = ".".join(str(k) for k in key[2:]) or None
        return command, field
    return None, ".".join(str(k) for k in key) or None
