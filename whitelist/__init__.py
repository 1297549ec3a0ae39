"""The command catalog: which commands may run, with which arguments.

Loads YAML templates with typed parameters, validates arguments and renders the
shell text to run. No I/O beyond reading YAML; knows nothing of SSH or HTTP.
"""

from .errors import (
    CatalogError,
    ParameterError,
    UnknownCommandError,
    WhitelistError,
    yaml_problem,
)
from .loader import default_catalog_path, load_catalog
from .model import BECOME_DEFAULT, MAX_TIMEOUT, Catalog, Command, Parameter
from .param_types import ParamType
from .render import render, sudoers_line, wrap_for_exec, wrap_for_shell

__all__ = [
    "BECOME_DEFAULT",
    "MAX_TIMEOUT",
    "Catalog",
    "CatalogError",
    "Command",
    "ParamType",
    "Parameter",
    "ParameterError",
    "UnknownCommandError",
    "WhitelistError",
    "default_catalog_path",
    "load_catalog",
    "render",
    "sudoers_line",
    "wrap_for_exec",
    "wrap_for_shell",
    "yaml_problem",
]
