"""The SSH hosts: one from REMOTE_* variables, or several from an inventory YAML.

The environment names REMOTE_* are kept from the seed project so an existing
`.env` keeps working; the inventory is for more than one host. Both end up as
`HostConfig` values; nothing here opens a connection. The inventory's `tailnet:`
section holds `TailnetSelector`s: which peers of the agent's own tailnet node become
hosts, and how to log in to them (agent/tailnet/fleet.py applies them to the live netmap).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.envfile import ENV_KEY
from agent.errors import ConfigError, reject_unknown_fields
from whitelist import yaml_problem
from whitelist.model import USER_NAME

DEFAULT_SSH_PORT = 22
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_LOGIN_FIELDS = {"user", "port", "key", "key_passphrase_env", "known_hosts", "become"}
_INVENTORY_FIELDS = {"name", "address", *_LOGIN_FIELDS}
_SELECTOR_FIELDS = {"tags", "names", "auth", *_LOGIN_FIELDS}
_TAG = re.compile(r"^tag:[A-Za-z0-9][A-Za-z0-9_-]*$")

# How the agent logs in: with a private key, or keyless through Tailscale SSH (the
# tailnet authorises the agent's node by its identity and the policy's `ssh` rules).
AUTH_KEY = "key"
AUTH_TAILSCALE_SSH = "tailscale-ssh"
AUTH_AUTO = "auto"  # selectors only: Tailscale SSH when the peer runs it on port 22
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
    source: str = "file"  # "file" (inventory, REMOTE_*) or "tailnet" (a selector matched it)
    auth: str = AUTH_KEY
    tags: tuple[str, ...] = ()  # its tailnet tags
    host_keys: tuple[str, ...] = ()  # SSH host keys the tailnet publishes for it ("type b64")
    tailnet_self: str = ""  # the agent's node as the tailnet policy names it (`ssh` hints)

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


@dataclass(frozen=True)
class TailnetSelector:
    """Peers of the agent's node that become hosts: those with one of `tags` (if any)
    whose MagicDNS short name matches one of `names` (if any); and how to log in."""

    user: str
    tags: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    port: int = DEFAULT_SSH_PORT
    auth: str = AUTH_AUTO
    key_path: Path | None = None
    key_passphrase: str | None = field(default=None, repr=False)
    known_hosts: Path = field(default_factory=default_known_hosts)
    become: str = DEFAULT_BECOME

    def matches(self, name: str, tags: Collection[str]) -> bool:
        return (not self.tags or any(t in tags for t in self.tags)) and (
            not self.names or any(fnmatch.fnmatchcase(name, g) for g in self.names))

    def host(self, name: str, address: str, *, tags: tuple[str, ...],
             host_keys: tuple[str, ...], tailnet_self: str = "") -> HostConfig:
        """The host for a matching peer; `auto` means Tailscale SSH when the peer runs it
        (it publishes SSH host keys) and the port is 22, where it answers."""
        auth = self.auth
        if auth == AUTH_AUTO:
            tailscale_ssh = bool(host_keys) and self.port == DEFAULT_SSH_PORT
            auth = AUTH_TAILSCALE_SSH if tailscale_ssh else AUTH_KEY
        return HostConfig(
            name=name, address=address, user=self.user, port=self.port,
            key_path=self.key_path, key_passphrase=self.key_passphrase,
            known_hosts=self.known_hosts, become=self.become, source="tailnet", auth=auth,
            tags=tags, host_keys=host_keys, tailnet_self=tailnet_self,
        )


@dataclass(frozen=True)
class Inventory:
    hosts: dict[str, HostConfig]
    default: str | None
    tailnet: tuple[TailnetSelector, ...] = ()


def load_inventory(path: Path, env: Mapping[str, str]) -> Inventory:
    """Hosts, the default host and tailnet selectors from an inventory file (format in
    the README)."""
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
        return Inventory({}, None)
    if (not isinstance(data, dict) or not isinstance(data.get("hosts", []), list)
            or not isinstance(data.get("tailnet", []), list)):
        raise ConfigError(
            f"inventory {path}: expected a mapping with `hosts:` (a list), optional "
            "`tailnet:` (a list of selectors) and optional `default:`"
        )
    reject_unknown_fields(data, {"hosts", "default", "tailnet"}, f"inventory {path}")
    hosts: dict[str, HostConfig] = {}
    for index, entry in enumerate(data.get("hosts") or []):
        host = _inventory_host(path, index, entry, env)
        if host.name in hosts:
            raise ConfigError(f"inventory {path}: host {host.name!r} is listed twice")
        hosts[host.name] = host
    selectors = tuple(_selector(path, index, entry, env)
                      for index, entry in enumerate(data.get("tailnet") or []))
    default = data.get("default")
    # A tailnet host's name is only known once the netmap is: it is checked when used.
    if default is not None and (
        not isinstance(default, str) or (default not in hosts and not selectors)
    ):
        raise ConfigError(
            f"inventory {path}: default {default!r} is not one of the listed hosts "
            f"({', '.join(sorted(hosts)) or 'none'})"
        )
    return Inventory(hosts, default, selectors)


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
    where = f"{where} ({name})"
    return HostConfig(
        name=name,
        address=entry["address"].strip(),
        user=entry["user"].strip(),
        port=_port(entry, where),
        key_path=_optional_path(entry.get("key"), f"{where}: key"),
        key_passphrase=_passphrase(entry, where, env),
        known_hosts=_optional_path(entry.get("known_hosts"), f"{where}: known_hosts")
        or default_known_hosts(),
        become=_become(entry.get("become", DEFAULT_BECOME), f"{where}: become"),
    )


def _selector(path: Path, index: int, entry: Any, env: Mapping[str, str]) -> TailnetSelector:
    where = f"inventory {path}, tailnet[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with tags and/or names, and user")
    reject_unknown_fields(entry, _SELECTOR_FIELDS, where)
    if not isinstance(entry.get("user"), str) or not entry["user"].strip():
        raise ConfigError(f"{where}: `user` is required: the login user on the matching hosts")
    tags = _string_list(entry.get("tags"), f"{where}: tags")
    names = _string_list(entry.get("names"), f"{where}: names")
    bad = [t for t in tags if not _TAG.match(t)]
    if bad:
        raise ConfigError(f"{where}: tags look like tag:server, got {', '.join(bad)}")
    if not tags and not names:
        raise ConfigError(f"{where}: give `tags` and/or `names` (use names: [\"*\"] for every "
                          "peer of the agent's node)")
    auth = entry.get("auth", AUTH_AUTO)
    if auth not in (AUTH_AUTO, AUTH_KEY, AUTH_TAILSCALE_SSH):
        raise ConfigError(f"{where}: auth must be {AUTH_AUTO}, {AUTH_KEY} or "
                          f"{AUTH_TAILSCALE_SSH}, got {auth!r}")
    return TailnetSelector(
        user=entry["user"].strip(),
        tags=tags,
        names=names,
        port=_port(entry, where),
        auth=auth,
        key_path=_optional_path(entry.get("key"), f"{where}: key"),
        key_passphrase=_passphrase(entry, where, env),
        known_hosts=_optional_path(entry.get("known_hosts"), f"{where}: known_hosts")
        or default_known_hosts(),
        become=_become(entry.get("become", DEFAULT_BECOME), f"{where}: become"),
    )


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(v.strip() for v in value)


def _port(entry: Mapping[str, Any], where: str) -> int:
    port = entry.get("port", DEFAULT_SSH_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{where}: port must be an integer 1-65535, got {port!r}")
    return port


def _passphrase(entry: Mapping[str, Any], where: str, env: Mapping[str, str]) -> str | None:
    passphrase_var = entry.get("key_passphrase_env")
    if passphrase_var is None:
        return None
    # The passphrase itself never lives in the inventory, only the variable's name.
    if not isinstance(passphrase_var, str) or not ENV_KEY.match(passphrase_var):
        raise ConfigError(f"{where}: key_passphrase_env must be a variable name")
    passphrase = env.get(passphrase_var)
    if not passphrase:
        raise ConfigError(
            f"{where}: key_passphrase_env names {passphrase_var}, "
            "which is not set in the environment or .env"
        )
    return passphrase


def _optional_path(value: Any, where: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a path string")
    return Path(value.strip()).expanduser()
