"""The catalog's data types: parameters, commands and the catalog itself."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from whitelist.host_patterns import host_matches

from .errors import UnknownCommandError
from .param_types import CONTAINER_PATTERN, UNIT_PATTERN, ParamType
from .parsers import OutputParser


@dataclass(frozen=True)
class Parameter:
    name: str
    type: ParamType
    description: str
    default: str | int | None = None  # None => required
    pattern: str | None = None  # STRING: full-match regex (ASCII classes)
    choices: tuple[str, ...] = ()  # ENUM
    minimum: int | None = None  # INTEGER
    maximum: int | None = None
    roots: tuple[str, ...] = ()  # PATH: allowed absolute roots
    max_length: int = 256

    @property
    def required(self) -> bool:
        return self.default is None

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema for one argument, as an MCP client or an LLM sees it."""
        schema: dict[str, Any]
        if self.type is ParamType.INTEGER:
            schema = {"type": "integer", "description": self.description}
            if self.minimum is not None:
                schema["minimum"] = self.minimum
            if self.maximum is not None:
                schema["maximum"] = self.maximum
        else:
            schema = {"type": "string", "description": self.description}
            if self.type is ParamType.ENUM:
                schema["enum"] = list(self.choices)
            elif self.type is ParamType.STRING and self.pattern is not None:
                # JSON Schema patterns search rather than full-match: anchor them.
                schema["pattern"] = f"^(?:{self.pattern})$"
            elif self.type is ParamType.UNIT:
                schema["pattern"] = f"^{UNIT_PATTERN}$"
            elif self.type is ParamType.CONTAINER:
                schema["pattern"] = f"^{CONTAINER_PATTERN}$"
            elif self.type is ParamType.PATH:
                schema["pattern"] = "^/"
                # The LLM cannot see the roots otherwise and would guess.
                roots = ", ".join(self.roots)
                schema["description"] = f"{self.description} (absolute path under: {roots})"
            schema["maxLength"] = self.max_length
        if self.default is not None:
            schema["default"] = self.default
        return schema


# `become: true` in a catalog: the user named by the host (root by default).
BECOME_DEFAULT = "*host*"
# Who a command may become: a plain POSIX login name (no sudoers syntax, no '#uid').
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
MAX_TIMEOUT = 1800.0  # seconds: the longest a catalog command may run (30 minutes)
MAX_OUTPUT = 1 << 30  # bytes: the most output a catalog command may keep


@dataclass(frozen=True)
class Command:
    name: str
    description: str
    category: str
    template: str
    parameters: tuple[Parameter, ...] = ()
    destructive: bool = False
    timeout: float = 30.0  # seconds
    max_output: int = 1_000_000  # bytes of stdout kept
    source: str = ""  # file it was loaded from
    # Run through `sudo -n -u USER`: None (as the login user), BECOME_DEFAULT (the host's
    # become user, root unless the inventory says otherwise) or a user name.
    become: str | None = None
    redact: bool = True  # secrets in the output are redacted before anyone sees it
    # Its output as data too (whitelist/parsers.py); None: text only.
    parser: OutputParser | None = None

    def runs_as(self, host_default: str = "root") -> str | None:
        """The user this command runs as on a host whose default become user is given."""
        if self.become is None:
            return None
        return host_default if self.become == BECOME_DEFAULT else self.become
    hosts: tuple[str, ...] = ()  # the hosts it applies to (names, globs, tag:...); () = all

    def applies_to(self, host: str, tags: Collection[str] = ()) -> bool:
        """Whether this command may run on `host` (with tailnet tags `tags`) at all."""
        return not self.hosts or host_matches(self.hosts, host, tags)

    def parameter(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        accepted = ", ".join(p.name for p in self.parameters) or "(none)"
        raise KeyError(
            f"command {self.name!r} has no parameter {name!r}; its parameters are: {accepted}"
        )

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema "object" for this command's arguments (MCP tool inputSchema)."""
        return {
            "type": "object",
            "properties": {p.name: p.json_schema() for p in self.parameters},
            "required": [p.name for p in self.parameters if p.required],
            "additionalProperties": False,
        }


@dataclass(frozen=True)
class Catalog:
    """The whitelisted commands, by name, in the order their files defined them.

    Iterating yields `Command` objects; `in` and `len` work on names.
    """

    commands: Mapping[str, Command]

    def get(self, name: str) -> Command:
        try:
            return self.commands[name]
        except KeyError:
            raise UnknownCommandError(name, sorted(self.commands)) from None

    def by_category(self) -> dict[str, list[Command]]:
        grouped: dict[str, list[Command]] = {}
        for command in self.commands.values():
            grouped.setdefault(command.category, []).append(command)
        return grouped

    def __iter__(self) -> Iterator[Command]:
        return iter(self.commands.values())

    def __len__(self) -> int:
        return len(self.commands)

    def __contains__(self, name: object) -> bool:
        return name in self.commands
