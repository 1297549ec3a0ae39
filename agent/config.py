"""Settings: which hosts exist, how to log in to them, and the Anthropic/catalog knobs.

Sources, strongest first: the real environment, a `.env` file, an inventory YAML.
The environment names REMOTE_* are kept from the seed project so an existing
`.env` keeps working; the inventory is for more than one host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MODEL = "claude-sonnet-4-5"
# sshd's MaxSessions defaults to 10 channels per connection; we open one extra
# channel for the shell probe, so the per-host bound must stay below that.
SSHD_MAX_SESSIONS = 10
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and how to fix it."""


def _default_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


@dataclass(frozen=True)
class HostConfig:
    name: str
    address: str
    user: str
    port: int = 22
    key_path: Path | None = None
    key_passphrase: str | None = field(default=None, repr=False)
    known_hosts: Path = field(default_factory=_default_known_hosts)

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


@dataclass(frozen=True)
class Settings:
    hosts: Mapping[str, HostConfig]
    default_host: str | None
    catalog_files: tuple[Path, ...] = ()
    anthropic_api_key: str | None = field(default=None, repr=False)
    anthropic_model: str = DEFAULT_MODEL
    anthropic_base_url: str | None = None
    max_sessions_per_host: int = 8
    connect_timeout: float = 15.0
    # Who may run what (agent.policy); None means the shipped default policy.
    policy_file: Path | None = None
    # The audit log (agent.audit); None means $XDG_STATE_HOME/tailnet-agent/audit.jsonl.
    audit_log: Path | None = None
    audit_max_bytes: int = 10_000_000
    audit_backups: int = 5
    rate_per_minute: int = 120
    rate_burst: int = 60
    host_concurrency: int = 32
    anthropic_timeout: float = 120.0

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, so the audit log can keep them out."""
        values = [self.anthropic_api_key or ""]
        values += [h.key_passphrase or "" for h in self.hosts.values()]
        return [v for v in values if v]

    def host(self, name: str | None) -> HostConfig:
        if not self.hosts:
            raise ConfigError(
                "no host configured: set REMOTE_HOST and REMOTE_USER (environment or .env), "
                "or point TAILNET_AGENT_INVENTORY at an inventory YAML"
            )
        chosen = name if name is not None else self.default_host
        if chosen is None:
            raise ConfigError(
                f"no host given and no default host set; choose one of: {self._names()} "
                "(or set `default:` in the inventory)"
            )
        try:
            return self.hosts[chosen]
        except KeyError:
            raise ConfigError(
                f"unknown host {chosen!r}; configured hosts: {self._names()}"
            ) from None

    def _names(self) -> str:
        return ", ".join(sorted(self.hosts))


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    env_file: Path | None = Path(".env"),
    inventory: Path | None = None,
) -> Settings:
    env: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        env.update(parse_env_file(env_file))
    # The real environment wins over .env, as with docker compose and python-dotenv.
    env.update(os.environ if environ is None else environ)

    hosts: dict[str, HostConfig] = {}
    default_host: str | None = None

    inventory_path = inventory
    if inventory_path is None and env.get("TAILNET_AGENT_INVENTORY"):
        inventory_path = Path(env["TAILNET_AGENT_INVENTORY"]).expanduser()
    if inventory_path is not None:
        hosts, default_host = _load_inventory(inventory_path, env)

    env_host = _host_from_env(env)
    if env_host is not None:
        if env_host.name in hosts:
            raise ConfigError(
                f"host {env_host.name!r} is defined both by REMOTE_HOST and in the inventory "
                f"{inventory_path}; set REMOTE_HOST_NAME to a different name or remove one"
            )
        hosts[env_host.name] = env_host
        if default_host is None:
            default_host = env_host.name
    if default_host is None and len(hosts) == 1:
        default_host = next(iter(hosts))

    catalog = tuple(
        Path(part).expanduser()
        for part in env.get("TAILNET_AGENT_CATALOG", "").split(os.pathsep)
        if part.strip()
    )
    return Settings(
        hosts=hosts,
        default_host=default_host,
        catalog_files=catalog,
        anthropic_api_key=env.get("ANTHROPIC_API_KEY") or None,
        anthropic_model=env.get("ANTHROPIC_MODEL") or DEFAULT_MODEL,
        anthropic_base_url=env.get("ANTHROPIC_BASE_URL") or None,
        max_sessions_per_host=_int_setting(
            env,
            "TAILNET_AGENT_MAX_SESSIONS",
            8,
            1,
            SSHD_MAX_SESSIONS - 1,
            why=f"it must stay below sshd's MaxSessions ({SSHD_MAX_SESSIONS})",
        ),
        connect_timeout=_float_setting(env, "TAILNET_AGENT_CONNECT_TIMEOUT", 15.0),
        policy_file=_path_setting(env, "TAILNET_AGENT_POLICY"),
        audit_log=_path_setting(env, "TAILNET_AGENT_AUDIT_LOG"),
        audit_max_bytes=_int_setting(env, "TAILNET_AGENT_AUDIT_MAX_BYTES", 10_000_000, 10_000,
                                     10**12, why="it is the size at which the log rotates"),
        audit_backups=_int_setting(env, "TAILNET_AGENT_AUDIT_BACKUPS", 5, 0, 1000,
                                   why="it is how many rotated files are kept"),
        rate_per_minute=_int_setting(env, "TAILNET_AGENT_RATE_PER_MINUTE", 120, 1, 1_000_000,
                                     why="it is calls per minute per identity"),
        rate_burst=_int_setting(env, "TAILNET_AGENT_RATE_BURST", 60, 1, 1_000_000,
                                why="it is calls at once per identity"),
        host_concurrency=_int_setting(env, "TAILNET_AGENT_HOST_CONCURRENCY", 32, 1, 10_000,
                                      why="it is calls in flight per host"),
        anthropic_timeout=_float_setting(env, "ANTHROPIC_TIMEOUT", 120.0),
    )


def _path_setting(env: Mapping[str, str], key: str) -> Path | None:
    raw = env.get(key, "").strip()
    return Path(raw).expanduser() if raw else None


def _host_from_env(env: Mapping[str, str]) -> HostConfig | None:
    address = env.get("REMOTE_HOST", "").strip()
    if not address:
        return None
    user = env.get("REMOTE_USER", "").strip()
    if not user:
        raise ConfigError(
            f"REMOTE_HOST is set ({address}) but REMOTE_USER is not: "
            "set REMOTE_USER to the login user on that host"
        )
    name = env.get("REMOTE_HOST_NAME", "").strip() or "default"
    _check_name(name, "REMOTE_HOST_NAME")
    key = env.get("REMOTE_SSH_KEY_PATH", "").strip()
    known = env.get("REMOTE_SSH_KNOWN_HOSTS", "").strip()
    return HostConfig(
        name=name,
        address=address,
        user=user,
        port=_int_setting(env, "REMOTE_SSH_PORT", 22, 1, 65535, why="it is a TCP port"),
        key_path=Path(key).expanduser() if key else None,
        key_passphrase=env.get("REMOTE_SSH_KEY_PASSPHRASE") or None,
        known_hosts=Path(known).expanduser() if known else _default_known_hosts(),
    )


_INVENTORY_FIELDS = {"name", "address", "user", "port", "key", "key_passphrase_env", "known_hosts"}


def _load_inventory(path: Path, env: Mapping[str, str]) -> tuple[dict[str, HostConfig], str | None]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"cannot read inventory {path}: {exc.strerror}; "
            "check TAILNET_AGENT_INVENTORY points at an existing file"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"inventory {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}, None
    if not isinstance(data, dict) or not isinstance(data.get("hosts", []), list):
        raise ConfigError(
            f"inventory {path}: expected a mapping with `hosts:` (a list) and optional `default:`"
        )
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


def reject_unknown_fields(entry: Mapping[Any, Any], allowed: Iterable[str], where: str) -> None:
    """A typo in a YAML key must be an error, not a silently ignored setting."""
    unknown = set(entry) - set(allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _inventory_host(path: Path, index: int, entry: Any, env: Mapping[str, str]) -> HostConfig:
    where = f"inventory {path}, hosts[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with name, address and user")
    reject_unknown_fields(entry, _INVENTORY_FIELDS, where)
    for required in ("name", "address", "user"):
        if not isinstance(entry.get(required), str) or not entry[required].strip():
            raise ConfigError(f"{where}: `{required}` is required and must be a string")
    name = entry["name"].strip()
    _check_name(name, f"{where}: name")
    port = entry.get("port", 22)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{where} ({name}): port must be an integer 1-65535, got {port!r}")
    passphrase: str | None = None
    passphrase_var = entry.get("key_passphrase_env")
    if passphrase_var is not None:
        # The passphrase itself never lives in the inventory, only the variable's name.
        if not isinstance(passphrase_var, str) or not _ENV_KEY.match(passphrase_var):
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
        or _default_known_hosts(),
    )


def _optional_path(value: Any, where: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a path string")
    return Path(value.strip()).expanduser()


def _check_name(name: str, where: str) -> None:
    if not _HOST_NAME.match(name):
        raise ConfigError(
            f"{where}: host name {name!r} must be letters, digits, '.', '_' or '-' "
            "(at most 63, starting with a letter or digit)"
        )


def _int_setting(
    env: Mapping[str, str], key: str, default: int, low: int, high: int, *, why: str
) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not an integer; use {low}-{high}") from None
    if not low <= value <= high:
        raise ConfigError(f"{key}={value} is out of range {low}-{high}: {why}")
    return value


def _float_setting(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a number of seconds") from None
    if not 0 < value <= 600:
        raise ConfigError(f"{key}={value} must be between 0 and 600 seconds")
    return value


def parse_env_file(path: Path) -> dict[str, str]:
    """Read `KEY=VALUE` lines (optional `export`, quotes, `#` comments) from a .env file."""
    result: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not _ENV_KEY.match(key):
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {key or line!r}")
        result[key] = _env_value(value.strip(), f"{path}:{number}")
    return result


def _env_value(raw: str, where: str) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = _closing_quote(raw, quote)
        if end < 0:
            raise ConfigError(f"{where}: unterminated {quote} quote")
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise ConfigError(f"{where}: unexpected text after the closing quote")
        inner = raw[1:end]
        if quote == '"':
            inner = re.sub(
                r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), inner
            )
        return inner
    # Unquoted: a `#` after whitespace starts a comment.
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def _closing_quote(raw: str, quote: str) -> int:
    index = 1
    while index < len(raw):
        if raw[index] == "\\" and quote == '"':
            index += 2
            continue
        if raw[index] == quote:
            return index
        index += 1
    return -1
