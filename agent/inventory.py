"""The SSH hosts: one from REMOTE_* variables, or several from an inventory YAML.

The environment names REMOTE_* are kept from the seed project so an existing
`.env` keeps working; the inventory is for more than one host. Both end up as
`HostConfig` values; nothing here opens a connection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.core.errors import ConfigError, reject_unknown_fields
from agent.envfile import ENV_KEY
from whitelist import yaml_problem
from whitelist.model import USER_NAME

DEFAULT_SSH_PORT = 22
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_INVENTORY_FIELDS = {"name", "address", "user", "port", "key", "key_passphrase_env", "known_hosts",
                     "become"}
DEFAULT_BECOME = "root"


def default_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


@dataclass(frozen=True)
class HostConfig:
    name: str
    address: str
    user: str
    port: int = DEFAULT_SSH_PORT
    key_path: Path | None = None
    key_passphrase: str | None = field(default=None, repr=False)
    known_hosts: Path = field(default_factory=default_known_hosts)
    # The user catalog commands with `become: true` run as here (through sudo -n).
    become: str = DEFAULT_BECOME

    def client_key_paths(self) -> list[Path]:
        """The private keys to offer: the configured one, else the usual defaults that exist."""
        if self.key_path is not None:
            return [self.key_path]
        home_ssh = Path("~/.ssh").expanduser()
        return [p for p in (home_ssh / "id_ed25519", home_ssh / "id_rsa") if p.is_file()]

    @property
    def target(self) -> str:
        """`user@address:port`, for messages."""
        return f"{self.user}@{self.address}:{self.port}"


def check_host_name(name: str, where: str) -> None:
    if not _HOST_NAME.match(name):
        raise ConfigError(
            f"{where}: host name {name!r} must be letters, digits, '.', '_' or '-' "
            "(at most 63, starting with a letter or digit)"
        )


def host_from_env(values: Mapping[str, Any]) -> HostConfig | None:
    """The REMOTE_* host, from values already parsed by the settings table (None: not set)."""
    address = values.get("REMOTE_HOST")
    if not address:
        return None
    user = values.get("REMOTE_USER")
    if not user:
        raise ConfigError(
            f"REMOTE_HOST is set ({address}) but REMOTE_USER is not: "
            "set REMOTE_USER to the login user on that host"
        )
    name = values.get("REMOTE_HOST_NAME") or "default"
    check_host_name(name, "REMOTE_HOST_NAME")
    return HostConfig(
        name=name,
        address=address,
        user=user,
        port=values.get("REMOTE_SSH_PORT") or DEFAULT_SSH_PORT,
        key_path=values.get("REMOTE_SSH_KEY_PATH"),
        key_passphrase=values.get("REMOTE_SSH_KEY_PASSPHRASE"),
        known_hosts=values.get("REMOTE_SSH_KNOWN_HOSTS") or default_known_hosts(),
        become=_become(values.get("REMOTE_BECOME") or DEFAULT_BECOME, "REMOTE_BECOME"),
    )


def _become(value: Any, where: str) -> str:
    if not isinstance(value, str) or not USER_NAME.fullmatch(value):
        raise ConfigError(f"{where}: the become user must be a user name like root or admin, "
                          f"got {value!r}")
    return value


def load_inventory(
    path: Path, env: Mapping[str, str]
) -> tuple[dict[str, HostConfig], str | None]:
    """Hosts and the default host from an inventory file (format in the README)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"cannot read inventory {path}: {exc.strerror}; "
            "check --inventory / TAILNET_AGENT_INVENTORY points at an existing file"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"inventory {path} is not valid YAML: {yaml_problem(exc)}; fix the "
                          "syntax") from None
    if data is None:
        return {}, None
    if not isinstance(data, dict) or not isinstance(data.get("hosts", []), list):
        raise ConfigError(
            f"inventory {path}: expected a mapping with `hosts:` (a list) and optional `default:`"
        )
    reject_unknown_fields(data, {"hosts", "default"}, f"inventory {path}")
    hosts: dict[str, HostConfig] = {}
    for index, entry in enumerate(data.get("hosts") or []):
        host = _inventory_host(path, index, entry, env)
        if host.name in hosts:
            raise ConfigError(f"inventory {path}: host {host.name!r} is listed twice")
        hosts[host.name] = host
    default = data.get("default")
    if default is not None and (not isinstance(default, str) or default not in hosts):
        raise ConfigError(
            f"inventory {path}: default {default!r} is not one of the listed hosts "
            f"({', '.join(sorted(hosts)) or 'none'})"
        )
    return hosts, default


def _inventory_host(path: Path, index: int, entry: Any, env: Mapping[str, str]) -> HostConfig:
    where = f"inventory {path}, hosts[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with name, address and user")
    reject_unknown_fields(entry, _INVENTORY_FIELDS, where)
    for required in ("name", "address", "user"):
        if not isinstance(entry.get(required), str) or not entry[required].strip():
            raise ConfigError(f"{where}: `{required}` is required and must be a string")
    name = entry["name"].strip()
    check_host_name(name, f"{where}: name")
    port = entry.get("port", DEFAULT_SSH_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{where} ({name}): port must be an integer 1-65535, got {port!r}")
    passphrase: str | None = None
    passphrase_var = entry.get("key_passphrase_env")
    if passphrase_var is not None:
        # The passphrase itself never lives in the inventory, only the variable's name.
        if not isinstance(passphrase_var, str) or not ENV_KEY.match(passphrase_var):
            raise ConfigError(f"{where} ({name}): key_passphrase_env must be a variable name")
        passphrase = env.get(passphrase_var)
        if not passphrase:
            raise ConfigError(
                f"{where} ({name}): key_passphrase_env names {passphrase_var}, "
                "which is not set in the environment or .env"
            )
    return HostConfig(
        name=name,
        address=entry["address"].strip(),
        user=entry["user"].strip(),
        port=port,
        key_path=_optional_path(entry.get("key"), f"{where} ({name}): key"),
        key_passphrase=passphrase,
        known_hosts=_optional_path(entry.get("known_hosts"), f"{where} ({name}): known_hosts")
        or default_known_hosts(),
        become=_become(entry.get("become", DEFAULT_BECOME), f"{where} ({name}): become"),
    )


def _optional_path(value: Any, where: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a path string")
    return Path(value.strip()).expanduser()
