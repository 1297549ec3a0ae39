"""The tool palette: a form per catalog command, and the form's answer as arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from whitelist import Catalog, Command, Parameter, ParamType

PARAM_PREFIX = "p."


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # ParamType value
    description: str
    value: str  # pre-filled: the default, or "" when required
    required: bool
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    max_length: int = 256
    placeholder: str = ""


@dataclass(frozen=True)
class CommandForm:
    name: str
    category: str
    description: str
    destructive: bool
    fields: tuple[Field, ...]


def _field(parameter: Parameter) -> Field:
    placeholder = ""
    if parameter.type is ParamType.PATH:
        placeholder = "under " + ", ".join(parameter.roots)
    elif parameter.type is ParamType.STRING and parameter.pattern:
        placeholder = parameter.description[:60]
    return Field(
        name=parameter.name,
        kind=str(parameter.type),
        description=parameter.description,
        value="" if parameter.default is None else str(parameter.default),
        required=parameter.required,
        choices=parameter.choices if parameter.type is ParamType.ENUM else (),
        minimum=parameter.minimum,
        maximum=parameter.maximum,
        max_length=parameter.max_length,
        placeholder=placeholder,
    )


def command_form(command: Command) -> CommandForm:
    return CommandForm(
        name=command.name,
        category=command.category,
        description=command.description,
        destructive=command.destructive,
        fields=tuple(_field(p) for p in command.parameters),
    )


def palette(catalog: Catalog) -> list[tuple[str, list[CommandForm]]]:
    return [
        (category, [command_form(c) for c in commands])
        for category, commands in catalog.by_category().items()
    ]


def arguments_from_form(command: Command, form: Mapping[str, str]) -> dict[str, object]:
    """Typed arguments from the submitted fields; validation stays with the catalog.

    An empty optional field means "use the default". A value that is not an integer
    is passed on as text, so the catalog's error message (not ours) explains it.
    """
    arguments: dict[str, object] = {}
    for parameter in command.parameters:
        raw = form.get(PARAM_PREFIX + parameter.name, "")
        if raw == "" and not parameter.required:
            continue
        if parameter.type is ParamType.INTEGER:
            try:
                arguments[parameter.name] = int(raw.strip())
                continue
            except ValueError:
                pass
        arguments[parameter.name] = raw
    return arguments
