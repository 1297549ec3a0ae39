"""Loading one catalog parameter: its type, its type's fields, and its default.

Problems go to `report(command, field, problem)`, so a catalog file lists all of
them at once (see loader.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable
from typing import Any

from .errors import ParameterError
from .model import Parameter
from .param_types import ParamType
from .values import check_value, normalize_path

NAME = re.compile(r"[a-z][a-z0-9_]*")
MAX_NAME_LENGTH = 64  # a name is shown in tool results, messages and the audit log

PARAMETER_KEYS = {"type", "description", "default", "max_length"}
TYPE_KEYS: dict[ParamType, set[str]] = {
    ParamType.STRING: {"pattern"},
    ParamType.ENUM: {"choices"},
    ParamType.INTEGER: {"minimum", "maximum"},
    ParamType.PATH: {"roots"},
    ParamType.UNIT: set(),
    ParamType.CONTAINER: set(),
}

Report = Callable[[str | None, str | None, str], None]


def valid_name(name: Any) -> bool:
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and bool(NAME.fullmatch(name))


def text_field(report: Report, command: str, field: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        report(command, field, f"expected a non-empty string, got {value!r}")
        return None
    return value


def load_parameter(report: Report, command: str, name: Any, spec: Any) -> Parameter | None:
    where = f"parameters.{name}"
    if not valid_name(name):
        report(
            command,
            where,
            f"bad parameter name {name!r}: use lower-case letters, digits and '_', "
            "starting with a letter",
        )
        return None
    if not isinstance(spec, dict):
        report(command, where, f"expected a mapping, got {type(spec).__name__}")
        return None
    raw_type = spec.get("type")
    if raw_type is None:
        allowed = ", ".join(t.value for t in ParamType)
        report(command, f"{where}.type", f"'type' is required; use one of: {allowed}")
        return None
    try:
        kind = ParamType(str(raw_type))
    except ValueError:
        allowed = ", ".join(t.value for t in ParamType)
        report(
            command, f"{where}.type", f"unknown type {raw_type!r}; use one of: {allowed}"
        )
        return None
    ok = True
    allowed_keys = PARAMETER_KEYS | TYPE_KEYS[kind]
    for key in spec:
        if key not in allowed_keys:
            unknown_key(report, command, where, key, allowed_keys, kind=kind)
            ok = False
    description = text_field(report, command, f"{where}.description", spec.get("description"))
    max_length = spec.get("max_length", 256)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
        report(
            command, f"{where}.max_length", f"expected a positive integer, got {max_length!r}"
        )
        ok = False
    fields: dict[str, Any] = {}
    match kind:
        case ParamType.STRING:
            ok = _string_fields(report, command, where, spec, fields) and ok
        case ParamType.ENUM:
            ok = _enum_fields(report, command, where, spec, fields) and ok
        case ParamType.INTEGER:
            ok = _integer_fields(report, command, where, spec, fields) and ok
        case ParamType.PATH:
            ok = _path_fields(report, command, where, spec, fields) and ok
    if not ok or description is None:
        return None
    parameter = Parameter(
        name=name, type=kind, description=description, max_length=max_length, **fields
    )
    return _checked_default(report, command, where, parameter, spec.get("default"))

def _checked_default(
    report: Report, command: str, where: str, parameter: Parameter, default: Any
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
        report(command, f"{where}.default", f"default must be {wanted}, got {default!r}")
        return None
    try:
        text = check_value(command, parameter, default)
    except ParameterError as error:
        report(command, f"{where}.default", f"default fails its own validation: {error}")
        return None
    # Store the canonical form (normalized path) so schemas show what runs.
    canonical: str | int = int(text) if parameter.type is ParamType.INTEGER else text
    return dataclasses.replace(parameter, default=canonical)

def _string_fields(
    report: Report, command: str, where: str, spec: dict[Any, Any], fields: dict[str, Any]
) -> bool:
    pattern = spec.get("pattern")
    if not isinstance(pattern, str) or pattern == "":
        report(
            command,
            f"{where}.pattern",
            "string parameters need a 'pattern' (a regular expression the whole value "
            "must match, e.g. '[A-Za-z0-9_.-]+')",
        )
        return False
    try:
        re.compile(pattern, re.ASCII)
    except re.error as error:
        report(command, f"{where}.pattern", f"invalid regular expression: {error}")
        return False
    fields["pattern"] = pattern
    return True

def _enum_fields(
    report: Report, command: str, where: str, spec: dict[Any, Any], fields: dict[str, Any]
) -> bool:
    choices = spec.get("choices")
    if (
        not isinstance(choices, list)
        or not choices
        or not all(isinstance(c, str) for c in choices)
    ):
        report(
            command,
            f"{where}.choices",
            f"enum parameters need 'choices': a non-empty list of strings, got {choices!r}",
        )
        return False
    if len(set(choices)) != len(choices):
        report(command, f"{where}.choices", f"choices repeat a value: {choices!r}")
        return False
    probe = Parameter(name=where, type=ParamType.ENUM, description="", choices=tuple(choices))
    for choice in choices:
        try:
            check_value(command, probe, choice)
        except ParameterError as error:
            report(command, f"{where}.choices", f"choice {choice!r} is unsafe: {error}")
            return False
    fields["choices"] = tuple(choices)
    return True

def _integer_fields(
    report: Report, command: str, where: str, spec: dict[Any, Any], fields: dict[str, Any]
) -> bool:
    ok = True
    for key in ("minimum", "maximum"):
        value = spec.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            report(command, f"{where}.{key}", f"expected an integer, got {value!r}")
            ok = False
        elif value < 0:
            report(
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
        report(
            command, f"{where}.minimum", f"minimum {low} is greater than maximum {high}"
        )
        ok = False
    return ok

def _path_fields(
    report: Report, command: str, where: str, spec: dict[Any, Any], fields: dict[str, Any]
) -> bool:
    roots = spec.get("roots")
    if not isinstance(roots, list) or not roots:
        report(
            command,
            f"{where}.roots",
            "path parameters need 'roots': a list of absolute directories values "
            "must be under, e.g. ['/var/log'] (or ['/'] for anywhere)",
        )
        return False
    normalized: list[str] = []
    for root in roots:
        if not isinstance(root, str) or not root.startswith("/") or ".." in root.split("/"):
            report(
                command,
                f"{where}.roots",
                f"root {root!r} must be an absolute path without '..' components",
            )
            return False
        normalized.append(normalize_path(root))
    fields["roots"] = tuple(dict.fromkeys(normalized))
    return True


def unknown_key(
report: Report,
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
    report(
        command,
        field,
        f"unknown key {key!r}{applies}{suggestion}; allowed keys: {', '.join(sorted(allowed))}",
    )
