"""Validation of one argument value against its parameter.

This is half of the security model (the other half is quoting in render.py):
quoting stops shell injection, these checks stop option injection, path
escapes and look-alike characters. Each check returns the canonical text that
gets quoted into the command, or raises ParameterError saying what is allowed.
"""

from __future__ import annotations

import math
import posixpath
import re
import unicodedata
from collections.abc import Mapping

from .errors import ParameterError, shown
from .model import Parameter
from .param_types import CONTAINER_PATTERN, UNIT_PATTERN, ParamType

# Unicode categories never allowed in any value: controls (NUL, newline, CR,
# tab, ESC...), format characters (bidi overrides, zero-width joiners, BOM),
# surrogates, private use, unassigned, and line/paragraph separators, which
# some tools and terminals treat as newlines.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

_DECIMAL = re.compile(r"[0-9]+", re.ASCII)
_UNIT = re.compile(UNIT_PATTERN, re.ASCII)
_CONTAINER = re.compile(CONTAINER_PATTERN, re.ASCII)


def check_value(command: str, parameter: Parameter, value: object) -> str:
    """Return the validated text for `value`, or raise ParameterError."""
    if parameter.type is ParamType.INTEGER:
        text = _integer_text(command, parameter, value)
    elif isinstance(value, str):
        text = value
    else:
        raise ParameterError(
            command, parameter.name, f"expected a string, got {type(value).__name__}"
        )
    _check_common(command, parameter, text)
    match parameter.type:
        case ParamType.STRING:
            return _check_string(command, parameter, text)
        case ParamType.ENUM:
            return _check_enum(command, parameter, text)
        case ParamType.INTEGER:
            return _check_integer(command, parameter, text)
        case ParamType.PATH:
            return _check_path(command, parameter, text)
        case ParamType.UNIT:
            return _check_pattern(command, parameter, text, _UNIT, "a systemd unit name")
        case ParamType.CONTAINER:
            return _check_pattern(
                command, parameter, text, _CONTAINER, "a docker container name or ID"
            )
    raise ParameterError(command, parameter.name, f"unsupported type {parameter.type!r}")


def reject_non_finite(command: str, arguments: Mapping[str, object]) -> None:
    """NaN and Infinity are not JSON numbers; a value holding one (at any depth) is
    refused before anything else looks at it, so no log or record ever has to carry it."""
    for name, value in arguments.items():
        if _has_non_finite(value, depth=0):
            raise ParameterError(command, str(name), "NaN and Infinity are not allowed; "
                                 "send a finite number (or the value as text)")


def _has_non_finite(value: object, depth: int) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if depth > 32:
        return False  # deeper than any argument we accept; validation refuses it anyway
    if isinstance(value, Mapping):
        return any(_has_non_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v, depth + 1) for v in value)
    return False


def forbidden_character(text: str) -> str | None:
    """Describe the first control/format/separator character in `text`, if any."""
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if category in _FORBIDDEN_CATEGORIES:
            name = unicodedata.name(char, "unnamed")
            return f"U+{ord(char):04X} ({name}, category {category}) at position {index}"
    return None


def _check_common(command: str, parameter: Parameter, text: str) -> None:
    if text == "":
        raise ParameterError(command, parameter.name, "empty values are not allowed")
    if len(text) > parameter.max_length:
        raise ParameterError(
            command,
            parameter.name,
            f"value is {len(text)} characters long; at most {parameter.max_length} allowed",
        )
    bad = forbidden_character(text)
    if bad is not None:
        raise ParameterError(
            command,
            parameter.name,
            f"control, format and line-separator characters are not allowed: found {bad}",
        )
    if text.startswith("-"):
        # Quoting does not stop a value from being read as an option.
        raise ParameterError(
            command, parameter.name, "values must not start with '-' (they could be options)"
        )


def _integer_text(command: str, parameter: Parameter, value: object) -> str:
    # bool is an int subclass; True is not a count.
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ParameterError(
                command, parameter.name, f"{value} is negative; {_integer_range(parameter)}"
            )
        if value.bit_length() > 256 * 4:
            raise ParameterError(
                command, parameter.name, f"integer is too large; {_integer_range(parameter)}"
            )
        return str(value)
    if isinstance(value, str):
        return value
    raise ParameterError(
        command,
        parameter.name,
        f"expected an integer, got {type(value).__name__}; {_integer_range(parameter)}",
    )


def _integer_range(parameter: Parameter) -> str:
    low = parameter.minimum if parameter.minimum is not None else 0
    if parameter.maximum is None:
        return f"allowed: a whole number >= {low}"
    return f"allowed: a whole number from {low} to {parameter.maximum}"


def _check_integer(command: str, parameter: Parameter, text: str) -> str:
    # ASCII digits only: int() would also take fullwidth digits, "1_000" and " 12 ".
    if not _DECIMAL.fullmatch(text):
        raise ParameterError(
            command,
            parameter.name,
            f"{shown(text)} is not a decimal number; {_integer_range(parameter)}",
        )
    number = int(text)
    too_low = parameter.minimum is not None and number < parameter.minimum
    too_high = parameter.maximum is not None and number > parameter.maximum
    if too_low or too_high:
        raise ParameterError(
            command, parameter.name, f"{number} is out of range; {_integer_range(parameter)}"
        )
    return str(number)


def _check_string(command: str, parameter: Parameter, text: str) -> str:
    if parameter.pattern is None:
        raise ParameterError(
            command, parameter.name, "string parameter has no pattern; fix the catalog entry"
        )
    if not re.fullmatch(parameter.pattern, text, re.ASCII):
        raise ParameterError(
            command,
            parameter.name,
            f"value does not match the allowed pattern {parameter.pattern!r}",
        )
    return text


def _check_enum(command: str, parameter: Parameter, text: str) -> str:
    if text not in parameter.choices:
        allowed = ", ".join(repr(c) for c in parameter.choices)
        raise ParameterError(
            command, parameter.name, f"{shown(text)} is not one of the allowed values: {allowed}"
        )
    return text


def _check_path(command: str, parameter: Parameter, text: str) -> str:
    roots = ", ".join(parameter.roots) or "(none configured)"
    if not text.startswith("/"):
        raise ParameterError(
            command, parameter.name, f"path must be absolute; allowed roots: {roots}"
        )
    if ".." in text.split("/"):
        raise ParameterError(
            command, parameter.name, f"path must not contain '..'; allowed roots: {roots}"
        )
    normalized = normalize_path(text)
    if not any(is_under(normalized, root) for root in parameter.roots):
        raise ParameterError(
            command, parameter.name,
            f"path {shown(normalized)} is not under an allowed root: {roots}",
        )
    return normalized


def normalize_path(path: str) -> str:
    # normpath keeps a leading "//" (POSIX leaves its meaning open); collapse it.
    return "/" + posixpath.normpath(path).lstrip("/")


def is_under(path: str, root: str) -> bool:
    """Component-wise containment: /var/logx is not under /var/log."""
    if root == "/":
        return True
    return path == root or path.startswith(root + "/")


def _check_pattern(
    command: str, parameter: Parameter, text: str, pattern: re.Pattern[str], what: str
) -> str:
    if not pattern.fullmatch(text):
        raise ParameterError(
            command,
            parameter.name,
            f"{shown(text)} is not {what}: allowed characters match {pattern.pattern!r}",
        )
    return text
