"""Loading and validating catalog YAML files (format documented in commands.yaml).

Everything a catalog author can get wrong is caught here, at start-up, with
the file, line, command and field named, rather than at the moment an LLM
happens to call the broken command.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .errors import CatalogError, ParameterError
from .model import Catalog, Command, Parameter
from .param_types import ParamType
from .render import placeholders
from .values import check_value, normalize_path

NAME = re.compile(r"[a-z][a-z0-9_]*")
MAX_NAME_LENGTH = 64  # MCP clients commonly cap tool names at 64 characters

_COMMAND_KEYS = {
    "description",
    "category",
    "template",
    "parameters",
    "destructive",
    "timeout",
    "max_output",
}
_REQUIRED_COMMAND_KEYS = ("description", "category", "template")
_PARAMETER_KEYS = {"type", "description", "default", "max_length"}
_TYPE_KEYS: dict[ParamType, set[str]] = {
    ParamType.STRING: {"pattern"},
    ParamType.ENUM: {"choices"},
    ParamType.INTEGER: {"minimum", "maximum"},
    ParamType.PATH: {"roots"},
    ParamType.UNIT: set(),
    ParamType.CONTAINER: set(),
}

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
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            self.problems.append(
                CatalogError(
                    self.file, None, None, f"not valid YAML: {error}; fix the syntax", line=line
                )
            )
            return None
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
        if not _valid_name(name):
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
        ):
            self._problem(
                name, "timeout", f"expected a positive number of seconds, got {timeout!r}"
            )
            ok = False
        max_output = entry.get("max_output", 1_000_000)
        if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output <= 0:
            self._problem(
                name, "max_output", f"expected a positive whole number of bytes, got {max_output!r}"
            )
            ok = False
        parameters = self._parameters(name, entry.get("parameters"))
        if parameters is None or None in (description, category, template):
            return None
        assert template is not None and description is not None and category is not None
        if not self._template_matches(name, template, parameters):
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
        )

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
            parameter = self._parameter(command, name, spec)
            if parameter is None:
                ok = False
            else:
                parameters.append(parameter)
        return parameters if ok else None

    def _parameter(self, command: str, name: Any, spec: Any) -> Parameter | None:
        where = f"parameters.{name}"
        if not _valid_name(name):
            self._problem(
                command,
                where,
                f"bad parameter name {name!r}: use lower-case letters, digits and '_', "
                "starting with a letter",
            )
            return None
        if not isinstance(spec, dict):
            self._problem(command, where, f"expected a mapping, got {type(spec).__name__}")
            return None
        raw_type = spec.get("type")
        if raw_type is None:
            allowed = ", ".join(t.value for t in ParamType)
            self._problem(command, f"{where}.type", f"'type' is required; use one of: {allowed}")
            return None
        try:
            kind = ParamType(str(raw_type))
        except ValueError:
            allowed = ", ".join(t.value for t in ParamType)
            self._problem(
                command, f"{where}.type", f"unknown type {raw_type!r}; use one of: {allowed}"
            )
            return None
        ok = True
        allowed_keys = _PARAMETER_KEYS | _TYPE_KEYS[kind]
        for key in spec:
            if key not in allowed_keys:
                self._unknown_key(command, where, key, allowed_keys, kind=kind)
                ok = False
        description = self._text(command, f"{where}.description", spec.get("description"))
        max_length = spec.get("max_length", 256)
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
            self._problem(
                command, f"{where}.max_length", f"expected a positive integer, got {max_length!r}"
            )
            ok = False
        fields: dict[str, Any] = {}
        match kind:
            case ParamType.STRING:
                ok = self._string_fields(command, where, spec, fields) and ok
            case ParamType.ENUM:
                ok = self._enum_fields(command, where, spec, fields) and ok
            case ParamType.INTEGER:
                ok = self._integer_fields(command, where, spec, fields) and ok
            case ParamType.PATH:
                ok = self._path_fields(command, where, spec, fields) and ok
        if not ok or description is None:
            return None
        parameter = Parameter(
            name=name, type=kind, description=description, max_length=max_length, **fields
        )
        return self._checked_default(command, where, parameter, spec.get("default"))

    def _checked_default(
        self, command: str, where: str, parameter: Parameter, default: Any
    ) -> Parameter | None:
        if default is None:
            return parameter
        valid_type = (
            isinstance(default, int) and not isinstance(default, bool)
            if parameter.type is ParamType.INTEGER
            else isinstance(default, str)
        )
        if not valid_type:
            wanted = "an integer" if parameter.type is ParamType.INTEGER else "a string"
            self._problem(command, f"{where}.default", f"default must be {wanted}, got {default!r}")
            return None
        try:
            text = check_value(command, parameter, default)
        except ParameterError as error:
            self._problem(command, f"{where}.default", f"default fails its own validation: {error}")
            return None
        # Store the canonical form (normalized path) so schemas show what runs.
        canonical: str | int = int(text) if parameter.type is ParamType.INTEGER else text
        return dataclasses.replace(parameter, default=canonical)

    def _string_fields(
        self, command: str, where: str, spec: dict[Any, Any], fields: dict[str, Any]
    ) -> bool:
        pattern = spec.get("pattern")
        if not isinstance(pattern, str) or pattern == "":
            self._problem(
                command,
                f"{where}.pattern",
                "string parameters need a 'pattern' (a regular expression the whole value "
                "must match, e.g. '[A-Za-z0-9_.-]+')",
            )
            return False
        try:
            re.compile(pattern, re.ASCII)
        except re.error as error:
            self._problem(command, f"{where}.pattern", f"invalid regular expression: {error}")
            return False
        fields["pattern"] = pattern
        return True

    def _enum_fields(
        self, command: str, where: str, spec: dict[Any, Any], fields: dict[str, Any]
    ) -> bool:
        choices = spec.get("choices")
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, str) for c in choices)
        ):
            self._problem(
                command,
                f"{where}.choices",
                f"enum parameters need 'choices': a non-empty list of strings, got {choices!r}",
            )
            return False
        if len(set(choices)) != len(choices):
            self._problem(command, f"{where}.choices", f"choices repeat a value: {choices!r}")
            return False
        probe = Parameter(name=where, type=ParamType.ENUM, description="", choices=tuple(choices))
        for choice in choices:
            try:
                check_value(command, probe, choice)
            except ParameterError as error:
                self._problem(command, f"{where}.choices", f"choice {choice!r} is unsafe: {error}")
                return False
        fields["choices"] = tuple(choices)
        return True

    def _integer_fields(
        self, command: str, where: str, spec: dict[Any, Any], fields: dict[str, Any]
    ) -> bool:
        ok = True
        for key in ("minimum", "maximum"):
            value = spec.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                self._problem(command, f"{where}.{key}", f"expected an integer, got {value!r}")
                ok = False
            elif value < 0:
                self._problem(
                    command,
                    f"{where}.{key}",
                    f"{value} is negative, but values starting with '-' are always "
                    "rejected; use 0 or more",
                )
                ok = False
            else:
                fields[key] = value
        low, high = fields.get("minimum"), fields.get("maximum")
        if ok and low is not None and high is not None and low > high:
            self._problem(
                command, f"{where}.minimum", f"minimum {low} is greater than maximum {high}"
            )
            ok = False
        return ok

    def _path_fields(
        self, command: str, where: str, spec: dict[Any, Any], fields: dict[str, Any]
    ) -> bool:
        roots = spec.get("roots")
        if not isinstance(roots, list) or not roots:
            self._problem(
                command,
                f"{where}.roots",
                "path parameters need 'roots': a list of absolute directories values "
                "must be under, e.g. ['/var/log'] (or ['/'] for anywhere)",
            )
            return False
        normalized: list[str] = []
        for root in roots:
            if not isinstance(root, str) or not root.startswith("/") or ".." in root.split("/"):
                self._problem(
                    command,
                    f"{where}.roots",
                    f"root {root!r} must be an absolute path without '..' components",
                )
                return False
            normalized.append(normalize_path(root))
        fields["roots"] = tuple(dict.fromkeys(normalized))
        return True

    # -- small helpers -----------------------------------------------------

    def _text(self, command: str, field: str, value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self._problem(command, field, f"expected a non-empty string, got {value!r}")
            return None
        return value

    def _unknown_key(
        self,
        command: str | None,
        where: str | None,
        key: Any,
        allowed: set[str],
        *,
        kind: ParamType | None = None,
    ) -> None:
        field = f"{where}.{key}" if where else str(key)
        hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        applies = f" for a {kind.value} parameter" if kind is not None else ""
        self._problem(
            command,
            field,
            f"unknown key {key!r}{applies}{suggestion}; allowed keys: {', '.join(sorted(allowed))}",
        )


def _valid_name(name: Any) -> bool:
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and bool(NAME.fullmatch(name))


def _split_key(key: Key) -> tuple[str | None, str | None]:
    if len(key) >= 2 and key[0] == "commands":
        command = str(key[1])
        field = ".".join(str(k) for k in key[2:]) or None
        return command, field
    return None, ".".join(str(k) for k in key) or None
