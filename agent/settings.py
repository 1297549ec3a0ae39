"""Every setting in one table: its variable, flag, parser, default and meaning.

`SETTINGS` drives loading (environment, then `.env`, then command-line flags),
the defaults of `Settings`, validation with messages that name the variable, and
the README's configuration table (`python -m agent.settings` prints it; a test
checks that the README agrees). Add a setting here and it exists everywhere.

Sources, strongest first: a command-line flag, the real environment, a `.env`
file in the working directory. Hosts come from REMOTE_* (one host) and an
inventory file (several); see agent/hosts/inventory.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.envfile import parse_env_file
from agent.errors import ConfigError, NoDefaultHost, NoHostConfigured, UnknownHost
from agent.hosts.inventory import HostConfig, TailnetSelector, host_from_env, load_inventory

DEFAULT_MODEL = "claude-sonnet-4-5"
# sshd's MaxSessions defaults to 10 channels per connection; we open one extra
# channel for the shell probe, so the per-host bound must stay below that.
SSHD_MAX_SESSIONS = 10

Parser = Callable[[str], Any]


def text(raw: str) -> str:
    return raw


def path(raw: str) -> Path:
    return Path(raw).expanduser()


def paths(raw: str) -> tuple[Path, ...]:
    return tuple(Path(p.strip()).expanduser() for p in raw.split(os.pathsep) if p.strip())


def integer(low: int, high: int, why: str) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"is not an integer; use {low}-{high}") from None
        if not low <= value <= high:
            raise ValueError(f"is out of range {low}-{high}: {why}")
        return value

    return parse


def syslog_url(raw: str) -> str:
    """`tcp://HOST:PORT` or `tls://HOST:PORT` (6514, RFC 5425's port, when none is given)."""
    usage = ("must be tcp://HOST:PORT or tls://HOST:PORT (syslog over TCP, or over TLS; "
             "for example tls://logs.example.com:6514)")
    parts = urlsplit(raw.strip())
    try:
        port = parts.port
    except ValueError:
        raise ValueError(usage) from None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise ValueError(usage)
    if port is None:
        if parts.scheme == "tcp":
            raise ValueError(f"{usage}: name the port (rsyslog's imtcp listens on 514 by "
                             "default)")
        port = 6514
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def choice(*allowed: str) -> Parser:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of: {', '.join(allowed)}")
        return value

    return parse


def seconds(high: float) -> Parser:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("is not a number of seconds") from None
        if not 0 < value <= high:
            raise ValueError(f"must be between 0 and {high:g} seconds")
        return value

    return parse


@dataclass(frozen=True)
class Setting:
    env: str
    field: str  # attribute of Settings; "host" for the REMOTE_* variables of the one host
    default: Any
    meaning: str
    parse: Parser = text
    flag: str | None = None
    shown_default: str | None = None  # for the README, when `default` does not say it
    secret: bool = False  # never echoed in messages
    additive: bool = False  # a flag adds to the variable's value instead of replacing it

    @property
    def name(self) -> str:
        return self.env if self.field == "host" else self.field


_HOST = "host"

SETTINGS: tuple[Setting, ...] = (
    Setting("REMOTE_HOST", _HOST, None,
            "address of the SSH host (DNS name, IP or tailnet MagicDNS name)"),
    Setting("REMOTE_USER", _HOST, None, "SSH user"),
    Setting("REMOTE_SSH_KEY_PATH", _HOST, None, "private key file (key authentication only)",
            path, shown_default="`~/.ssh/id_ed25519` or `id_rsa`"),
    Setting("REMOTE_SSH_KEY_PASSPHRASE", _HOST, None, "passphrase of that key", secret=True),
    Setting("REMOTE_SSH_PORT", _HOST, 22, "SSH port", integer(1, 65535, "it is a TCP port")),
    Setting("REMOTE_SSH_KNOWN_HOSTS", _HOST, None, "known_hosts file used to verify host keys",
            path, shown_default="`~/.ssh/known_hosts`"),
    Setting("REMOTE_HOST_NAME", _HOST, "default", "name of that host in tools and logs"),
    Setting("REMOTE_BECOME", _HOST, "root",
            "user that catalog commands with `become: true` run as there (through `sudo -n`)"),
    Setting("TAILNET_AGENT_INVENTORY", "inventory", None,
            "YAML inventory of several hosts (below)", path, flag="--inventory"),
    Setting("TAILNET_AGENT_CATALOG", "catalog_files", (),
            "extra catalog files, separated by `:`; `--catalog` adds more", paths,
            flag="--catalog", additive=True),
    Setting("TAILNET_AGENT_MAX_SESSIONS", "max_sessions_per_host", 8,
            "SSH channels per host connection (keep below sshd's `MaxSessions`, 10)",
            integer(1, SSHD_MAX_SESSIONS - 1,
                    f"it must stay below sshd's MaxSessions ({SSHD_MAX_SESSIONS})")),
    Setting("TAILNET_AGENT_CONNECT_TIMEOUT", "connect_timeout", 15.0,
            "seconds to connect to a host, SOCKS5 dial included", seconds(600)),
    Setting("TAILNET_AGENT_SSH_IDLE", "ssh_idle_timeout", 600.0,
            "seconds an SSH connection with no call running stays open; the next call to "
            "that host reconnects", seconds(7 * 86_400)),
    Setting("TAILNET_AGENT_SSH_MAX_CONNECTIONS", "ssh_max_connections", 1000,
            "SSH connections open at once; at the cap the least recently used one with no "
            "call running is closed, and when every one has a call running a call that "
            "needs another waits up to `TAILNET_AGENT_CONNECT_TIMEOUT`, then is refused",
            integer(1, 100_000, "it is SSH connections open at once")),
    Setting("TAILNET_AGENT_POLICY", "policy_file", None,
            "who may run what (see [Security](#security))", path, flag="--policy",
            shown_default="read-only for tailnet users"),
    Setting("TAILNET_AGENT_AUDIT_LOG", "audit_log", None, "the audit log", path,
            flag="--audit-log", shown_default="`$XDG_STATE_HOME/tailnet-agent/audit.jsonl`"),
    Setting("TAILNET_AGENT_AUDIT_MAX_BYTES", "audit_max_bytes", 10_000_000,
            "size at which the audit log rotates",
            integer(10_000, 10**12, "it is the size at which the log rotates")),
    Setting("TAILNET_AGENT_AUDIT_BUDGET", "audit_budget", 500_000_000,
            "bytes the audit log and its rotated files may take; past it the oldest file is "
            "removed, a record and a warning say so, and `doctor` reports it",
            integer(100_000, 10**15, "it is the bytes kept for the audit log")),
    Setting("TAILNET_AGENT_AUDIT_SIGNING_KEY", "audit_signing_key", None,
            "Ed25519 private key (`ssh-keygen -t ed25519`) that seals the audit log at each "
            "rotation and shutdown; keep it outside the log's directory", path),
    Setting("TAILNET_AGENT_AUDIT_SYSLOG", "audit_syslog", None,
            "also send every audit record, as it is written, to this syslog receiver: "
            "`tcp://HOST:PORT` or `tls://HOST:PORT` (RFC 5424, octet-counted)", syslog_url),
    Setting("TAILNET_AGENT_AUDIT_SYSLOG_CA", "audit_syslog_ca", None,
            "CA certificates (PEM) that the `tls://` receiver's certificate must chain to",
            path, shown_default="the system's"),
    Setting("TAILNET_AGENT_AUDIT_SHIP_BACKLOG", "audit_ship_backlog", 100_000,
            "audit records that may wait for the syslog receiver; past it the oldest are not "
            "sent, and a record, a warning, `doctor` and `/metrics` say so",
            integer(10, 100_000_000, "it is the records that may wait to be sent")),
    Setting("TAILNET_AGENT_RECORDINGS", "recordings_dir", None,
            "directory of the recordings: each command's output as an asciinema cast, linked "
            "from its audit record", path, shown_default="`casts/` beside the audit log"),
    Setting("TAILNET_AGENT_RECORDING_MAX_BYTES", "recording_max_bytes", 8_000_000,
            "bytes one command's recording may take; the rest of its output is not recorded, "
            "and the recording says so",
            integer(65_536, 1 << 28, "it is the size of one recording")),
    Setting("TAILNET_AGENT_RECORDINGS_BUDGET", "recordings_budget", 1_000_000_000,
            "bytes all recordings may take; past it the oldest are removed, each removal "
            "recorded in the audit log",
            integer(1_000_000, 10**15, "it is the bytes kept for recordings")),
    Setting("TAILNET_AGENT_SHARE_TTL", "share_ttl", 86_400.0,
            "seconds a shared chat turn's read-only link lasts (shares are kept in memory: a "
            "restart ends them)", seconds(7 * 86_400)),
    Setting("TAILNET_AGENT_RATE_PER_MINUTE", "rate_per_minute", 120,
            "calls per minute per tailnet identity (refill rate)",
            integer(1, 1_000_000, "it is calls per minute per identity")),
    Setting("TAILNET_AGENT_RATE_BURST", "rate_burst", 60,
            "calls at once per tailnet identity",
            integer(1, 1_000_000, "it is calls at once per identity")),
    Setting("TAILNET_AGENT_HOST_CONCURRENCY", "host_concurrency", 32,
            "calls in flight per host; beyond it calls are refused at once (the local "
            "operator is never refused by it)",
            integer(1, 10_000, "it is calls in flight per host")),
    Setting("TAILNET_AGENT_OUTPUT_HEAD", "output_head", 8000,
            "bytes of a command's output shown at its start; more output gets a paging handle",
            integer(100, 1_000_000, "it is how much output a result shows")),
    Setting("TAILNET_AGENT_OUTPUT_TAIL", "output_tail", 2000,
            "bytes of a long output shown at its end",
            integer(0, 1_000_000, "it is how much of an output's end a result shows")),
    Setting("TAILNET_AGENT_OUTPUT_TTL", "output_ttl", 1800.0,
            "seconds a paging handle lasts", seconds(86_400)),
    Setting("TAILNET_AGENT_OUTPUT_HANDLES", "output_handles", 64,
            "paging handles kept at once (16 per caller); the oldest go first",
            integer(1, 10_000, "it is how many outputs are kept for paging")),
    Setting("TAILNET_AGENT_OUTPUT_DISK", "output_disk", 1 << 30,
            "bytes of output held at once, by running commands and by outputs kept for "
            "paging together (in memory up to 64 KiB per stream, then in unlinked temporary "
            "files); a command that would go past it is cut and says so",
            integer(1 << 20, 1 << 40, "it is how much output is held at once")),
    Setting("TAILNET_AGENT_OUTPUT_DIR", "output_dir", None,
            "directory for output spilled to disk", path, shown_default="`$TMPDIR`"),
    Setting("TAILNET_AGENT_APPROVAL_TIMEOUT", "approval_timeout", 600.0,
            "seconds a command under the two-person rule waits for a second person",
            seconds(3600)),
    Setting("TAILNET_AGENT_IDENTITY_CONCURRENCY", "identity_concurrency", 8,
            "calls in flight per host for one tailnet identity, so that one caller cannot take "
            "every place (`system_overview` needs 6)",
            integer(1, 10_000, "it is calls in flight per host for one identity")),
    Setting("TAILNET_AGENT_MCP_SESSIONS_PER_IDENTITY", "mcp_sessions_per_identity", 16,
            "open MCP sessions per identity; a new one closes that identity's oldest idle one",
            integer(1, 10_000, "it is MCP sessions per identity")),
    Setting("TAILNET_AGENT_MCP_MAX_SESSIONS", "mcp_max_sessions", 1000,
            "open MCP sessions in all; at the limit a new one closes the oldest idle session "
            "of the identity holding the most", integer(1, 100_000, "it is MCP sessions")),
    Setting("TAILNET_AGENT_MCP_SESSION_IDLE", "mcp_session_idle", 600.0,
            "seconds after which an MCP session nobody used is closed", seconds(86_400)),
    Setting("TAILNET_AGENT_HTTP_MAX_CONNECTIONS", "http_max_connections", 1000,
            "open HTTP connections in all (also kept below the descriptor limit); at the limit "
            "a new one closes an idle one of the peer holding the most",
            integer(16, 1_000_000, "it is HTTP connections")),
    Setting("TAILNET_AGENT_HTTP_CONNECTIONS_PER_PEER", "http_connections_per_peer", 64,
            "open HTTP connections per tailnet peer (per address in local mode)",
            integer(1, 1_000_000, "it is HTTP connections per peer")),
    Setting("TAILNET_AGENT_HTTP_HEADER_TIMEOUT", "http_header_timeout", 10.0,
            "seconds a connection may take to send a request's headers (idle ones included)",
            seconds(600)),
    Setting("TAILNET_AGENT_HTTP_BODY_TIMEOUT", "http_body_timeout", 30.0,
            "seconds a request may take to send its body", seconds(3600)),
    Setting("TAILNET_AGENT_FANOUT_CONCURRENCY", "fanout_concurrency", 16,
            "hosts one `run_on_hosts` call runs on at the same time",
            integer(1, 1_000, "it is hosts at once in one fan-out")),
    Setting("TAILNET_AGENT_FANOUT_RESULT_BYTES", "fanout_result_bytes", 32_768,
            "bytes a `run_on_hosts` result may take (as JSON), whatever the number of hosts: "
            "identical outcomes are grouped, and what still does not fit is behind a paging "
            "handle", integer(4096, 1 << 20, "it is the size of a fan-out's result")),
    Setting("TS_AUTHKEY", "authkey", None, "tailnet auth key, or `file:/path/to/key`",
            flag="--authkey", shown_default="none: a login URL is printed", secret=True),
    Setting("TS_HOSTNAME", "hostname", "tailnet-agent", "the agent's tailnet hostname",
            flag="--hostname"),
    Setting("TS_CONTROL_URL", "control_url", None,
            "control server (for example your Headscale)", flag="--control-url",
            shown_default="Tailscale's"),
    Setting("TS_STATE_DIR", "state_dir", None,
            "keep the node's state here: a restart is the same node (same name and address)",
            path, flag="--state-dir",
            shown_default="none: an ephemeral node that logs out when the agent stops"),
    Setting("TAILNET_AGENT_JOIN_TIMEOUT", "join_timeout", 60.0,
            "seconds to join the tailnet with an auth key (without one, the agent waits for "
            "the login URL to be approved)", seconds(3600)),
    Setting("TAILSCALED", "tailscaled", None, "tailscaled binary", path, flag="--tailscaled",
            shown_default="embedded, then `PATH`"),
    Setting("TAILNET_AGENT_SOCKET", "socket", None,
            "unix socket (mode 0600) where the local operator reads `/healthz`, `/readyz` and "
            "`/metrics`; `tailnet-agent health` asks it", path, flag="--socket",
            shown_default="none"),
    Setting("TAILNET_AGENT_LOG_FORMAT", "log_format", "text",
            "`text`, or `json`: one JSON object per line on stderr, for log shippers",
            choice("text", "json"), flag="--log-format"),
    Setting("ANTHROPIC_API_KEY", "anthropic_api_key", None, "enables the chat with Claude",
            shown_default="none: the page offers the command palette", secret=True),
    Setting("ANTHROPIC_MODEL", "anthropic_model", DEFAULT_MODEL, "model for the chat"),
    Setting("ANTHROPIC_BASE_URL", "anthropic_base_url", None, "another Messages API endpoint",
            shown_default="Anthropic's"),
    Setting("ANTHROPIC_TIMEOUT", "anthropic_timeout", 120.0,
            "seconds to wait for the Messages API (the SDK retries too)", seconds(600)),
)

BY_FIELD: Mapping[str, Setting] = {s.field: s for s in SETTINGS if s.field != _HOST}


def _default(name: str) -> Any:
    return BY_FIELD[name].default


def default_audit_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(state) / "tailnet-agent" / "audit.jsonl"


@dataclass(frozen=True)
class Settings:
    hosts: Mapping[str, HostConfig] = field(default_factory=dict)
    default_host: str | None = None
    tailnet_selectors: tuple[TailnetSelector, ...] = ()  # the inventory's `tailnet:` section
    inventory: Path | None = _default("inventory")
    catalog_files: tuple[Path, ...] = _default("catalog_files")
    max_sessions_per_host: int = _default("max_sessions_per_host")
    connect_timeout: float = _default("connect_timeout")
    ssh_idle_timeout: float = _default("ssh_idle_timeout")
    ssh_max_connections: int = _default("ssh_max_connections")
    policy_file: Path | None = _default("policy_file")  # None: the shipped default policy
    audit_log: Path | None = _default("audit_log")  # None: default_audit_path()
    audit_max_bytes: int = _default("audit_max_bytes")
    audit_budget: int = _default("audit_budget")
    audit_signing_key: Path | None = _default("audit_signing_key")
    audit_syslog: str | None = _default("audit_syslog")
    audit_syslog_ca: Path | None = _default("audit_syslog_ca")
    audit_ship_backlog: int = _default("audit_ship_backlog")
    recordings_dir: Path | None = _default("recordings_dir")  # None: casts/ beside the log
    recording_max_bytes: int = _default("recording_max_bytes")
    recordings_budget: int = _default("recordings_budget")
    share_ttl: float = _default("share_ttl")
    rate_per_minute: int = _default("rate_per_minute")
    rate_burst: int = _default("rate_burst")
    host_concurrency: int = _default("host_concurrency")
    output_head: int = _default("output_head")
    output_tail: int = _default("output_tail")
    output_ttl: float = _default("output_ttl")
    output_handles: int = _default("output_handles")
    output_disk: int = _default("output_disk")
    output_dir: Path | None = _default("output_dir")
    approval_timeout: float = _default("approval_timeout")
    identity_concurrency: int = _default("identity_concurrency")
    mcp_sessions_per_identity: int = _default("mcp_sessions_per_identity")
    mcp_max_sessions: int = _default("mcp_max_sessions")
    mcp_session_idle: float = _default("mcp_session_idle")
    http_max_connections: int = _default("http_max_connections")
    http_connections_per_peer: int = _default("http_connections_per_peer")
    http_header_timeout: float = _default("http_header_timeout")
    http_body_timeout: float = _default("http_body_timeout")
    fanout_concurrency: int = _default("fanout_concurrency")
    fanout_result_bytes: int = _default("fanout_result_bytes")
    authkey: str | None = field(default=_default("authkey"), repr=False)
    hostname: str = _default("hostname")
    control_url: str | None = _default("control_url")
    state_dir: Path | None = _default("state_dir")  # None: an ephemeral node
    join_timeout: float = _default("join_timeout")
    tailscaled: Path | None = _default("tailscaled")
    socket: Path | None = _default("socket")
    log_format: str = _default("log_format")
    anthropic_api_key: str | None = field(default=_default("anthropic_api_key"), repr=False)
    anthropic_model: str = _default("anthropic_model")
    anthropic_base_url: str | None = _default("anthropic_base_url")
    anthropic_timeout: float = _default("anthropic_timeout")

    @property
    def audit_path(self) -> Path:
        return self.audit_log or default_audit_path()

    @property
    def recordings_path(self) -> Path:
        return self.recordings_dir or self.audit_path.parent / "casts"

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, so the audit log can keep them out."""
        values = [self.anthropic_api_key or "", self.authkey or "", _key_in_file(self.authkey)]
        values += [h.key_passphrase or "" for h in self.hosts.values()]
        values += [s.key_passphrase or "" for s in self.tailnet_selectors]
        return [v for v in values if v]

    def host(self, name: str | None) -> HostConfig:
        """The named host, or the default one; errors say which hosts exist."""
        if not self.hosts:
            raise NoHostConfigured()
        chosen = name if name is not None else self.default_host
        if chosen is None:
            raise NoDefaultHost(self.hosts)
        try:
            return self.hosts[chosen]
        except KeyError:
            raise UnknownHost(chosen, self.hosts) from None


def _key_in_file(authkey: str | None) -> str:
    """The auth key behind `file:/path` (TS_AUTHKEY), so it is hidden too; "" if unreadable."""
    if not authkey or not authkey.startswith("file:"):
        return ""
    try:
        return Path(authkey[len("file:"):]).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""  # reading it for real (agent.tailnet.node) reports the problem


def _parse(setting: Setting, raw: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as exc:
        shown = "(hidden)" if setting.secret else repr(raw[:200])
        raise ConfigError(f"{setting.env}={shown} {exc}") from None


def read_environment(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> dict[str, str]:
    """The `.env` file's variables, overridden by the real environment's."""
    env: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        env.update(parse_env_file(env_file))
    # The real environment wins over .env, as with docker compose and python-dotenv.
    env.update(os.environ if environ is None else environ)
    return env


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    env_file: Path | None = Path(".env"),
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from the environment and `.env`, then `overrides` (flags, by field name).

    An override of None means "flag not given". Raises ConfigError naming the variable.
    """
    env = read_environment(environ, env_file)
    values: dict[str, Any] = {}
    host_values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env, "").strip()
        value = _parse(setting, raw) if raw else setting.default
        if setting.field == _HOST:
            host_values[setting.env] = value
        else:
            values[setting.field] = value
    for name, value in (overrides or {}).items():
        if value is None or value == () or value == []:
            continue
        setting = BY_FIELD[name]
        values[name] = (*values[name], *value) if setting.additive else value

    hosts: dict[str, HostConfig] = {}
    default_host: str | None = None
    selectors: tuple[TailnetSelector, ...] = ()
    if values["inventory"] is not None:
        inventory = load_inventory(values["inventory"], env)
        hosts, default_host, selectors = inventory.hosts, inventory.default, inventory.tailnet
    env_host = host_from_env(host_values)
    if env_host is not None:
        if env_host.name in hosts:
            raise ConfigError(
                f"host {env_host.name!r} is defined both by REMOTE_HOST and in the inventory "
                f"{values['inventory']}; set REMOTE_HOST_NAME to a different name or remove one"
            )
        hosts[env_host.name] = env_host
        if default_host is None:
            default_host = env_host.name
    if default_host is None and len(hosts) == 1:
        default_host = next(iter(hosts))
    return Settings(hosts=hosts, default_host=default_host, tailnet_selectors=selectors, **values)


TABLE_START = "<!-- settings table: generated by `python -m agent.settings`; do not edit -->"
TABLE_END = "<!-- end of settings table -->"


def markdown_table() -> str:
    """The README's configuration table, generated from SETTINGS (between TABLE_START and
    TABLE_END there)."""
    lines = ["| variable | meaning | default |", "| --- | --- | --- |"]
    for s in SETTINGS:
        name = f"`{s.env}`" + (f" / `{s.flag}`" if s.flag else "")
        if s.shown_default is not None:
            default = s.shown_default
        elif s.default in (None, ()):
            default = "none"
        elif isinstance(s.default, float):
            default = f"`{s.default:g}`"
        else:
            default = f"`{s.default}`"
        lines.append(f"| {name} | {s.meaning} | {default} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
