"""Errors raised by the whitelist package.

Every message says what failed, where, and what to do next, because the text
reaches an operator editing YAML or an LLM choosing arguments.
"""

from __future__ import annotations

from collections.abc import Sequence


def shown(value: object, limit: int = 80) -> str:
    """A caller's value as an error message may quote it: repr, cut to `limit` characters
    (a hostile 100 KB value must not come back in every error)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} characters)"


class WhitelistError(Exception):
    """Base class for everything this package raises on purpose."""


class CatalogError(WhitelistError):
    """A catalog file is unreadable or invalid.

    `file`, `command` and `field` locate the first problem; `problems` holds every
    problem found in the file (the first one included) so an operator can fix
    them all in one pass.
    """

    def __init__(
        self,
        file: str,
        command: str | None,
        field: str | None,
        problem: str,
        *,
        line: int | None = None,
        others: Sequence[CatalogError] = (),
    ) -> None:
        self.file = file
        self.command = command
        self.field = field
        self.problem = problem
        self.line = line
        self.problems: tuple[CatalogError, ...] = (self, *others)
        super().__init__(self._describe())

    def location(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        command = repr(self.command) if self.command is not None else "(none, file level)"
        field = repr(self.field) if self.field is not None else "(none)"
        return f"{where}: command {command}, field {field}"

    def _describe(self) -> str:
        text = f"invalid command catalog {self.location()}: {self.problem}"
        rest = self.problems[1:]
        if rest:
            text += f"\n{len(rest)} more problem(s) in the same file:"
            text += "".join(f"\n  - {p.location()}: {p.problem}" for p in rest)
        return text


class ParameterError(WhitelistError):
    """An argument for a command is missing, unknown or not allowed."""

    def __init__(self, command: str, parameter: str, message: str) -> None:
        self.command = command
        self.parameter = parameter
        super().__init__(f"command {shown(command)}, parameter {shown(parameter)}: {message}")


class UnknownCommandError(WhitelistError):
    """A command name is not in the catalog."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.name = name
        self.available = tuple(available)
        names = ", ".join(self.available) if self.available else "(none)"
        super().__init__(
            f"unknown command {shown(name)}: only whitelisted commands can run. "
            f"Commands you can use: {names}"
        )


def yaml_problem(error: Exception) -> str:
    """A YAML syntax error in one line: what is wrong and where (PyYAML's own text spans
    several lines and quotes the parser's internals)."""
    problem = getattr(error, "problem", None) or getattr(error, "context", None)
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    text = str(problem) if problem else str(error).splitlines()[0]
    return f"{text}{where}"
