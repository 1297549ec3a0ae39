"""`tailnet-agent doctor`: one line per check, OK or FAIL with the fix."""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from whitelist import WhitelistError, load_catalog

from .config import HostConfig, Settings
from .hostkeys import known_hosts_pattern, trusted_keys
from .ssh import SSHError, SSHPool

DEPENDENCIES = ("asyncssh", "mcp", "anthropic", "starlette", "uvicorn", "yaml", "python_socks")


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def ok(self, what: str) -> None:
        print(f"OK    {what}", flush=True)

    def fail(self, what: str, fix: str) -> None:
        self.failures += 1
        print(f"FAIL  {what} -- fix: {fix}", flush=True)

    def warn(self, what: str, advice: str) -> None:
        print(f"WARN  {what} -- {advice}", flush=True)


def _check_key(report: Report, host: HostConfig) -> None:
    if host.key_path is None:
        report.warn(f"{host.name}: no key file configured", "set REMOTE_SSH_KEY_PATH (default keys "
                    "in ~/.ssh are tried)")
        return
    path = Path(host.key_path).expanduser()
    if not path.is_file():
        report.fail(f"{host.name}: key file {path} is missing", "set REMOTE_SSH_KEY_PATH to an "
                    "existing private key, or create one with ssh-keygen -t ed25519")
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        report.fail(f"{host.name}: key file {path} is readable by others (mode {mode:o})",
                    f"chmod 600 {path}")
    else:
        report.ok(f"{host.name}: key file {path} (mode {mode:o})")


def _check_known_hosts(report: Report, host: HostConfig) -> None:
    pattern = known_hosts_pattern(host)
    if trusted_keys(host):
        report.ok(f"{host.name}: {pattern} has a pinned key in {host.known_hosts}")
    else:
        report.fail(f"{host.name}: no known_hosts entry for {pattern} in {host.known_hosts}",
                    f"tailnet-agent trust {host.name}")


def _check_policy_and_audit(report: Report, settings: Settings) -> None:
    from .audit import default_audit_path
    from .config import ConfigError
    from .policy import load_policy

    try:
        load_policy(settings.policy_file)
        report.ok(f"policy: {settings.policy_file or 'the shipped default (read-only for users)'}")
    except ConfigError as exc:
        report.fail(f"policy: {exc}", "correct the policy file (see README, Security)")
    path = settings.audit_log or default_audit_path()
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent  # the agent creates the missing folders
    target = path if path.exists() else directory
    if os.access(target, os.W_OK):
        report.ok(f"audit log: {path} is writable")
    else:
        report.fail(f"audit log: {path} is not writable, so every tool call would be refused",
                    "fix its permissions or set --audit-log / TAILNET_AGENT_AUDIT_LOG")


async def run_doctor(settings: Settings, *, extra_catalogs: Sequence[str] = ()) -> int:
    report = Report()
    for name in DEPENDENCIES:
        try:
            module = importlib.import_module(name)
            report.ok(f"python package {name} {getattr(module, '__version__', '')}".rstrip())
        except ImportError:
            report.fail(f"python package {name} is missing", "pip install tailnet-agent")
    try:
        catalog = load_catalog([*settings.catalog_files, *(Path(p) for p in extra_catalogs)])
        report.ok(f"catalog: {len(catalog)} commands")
    except WhitelistError as exc:
        report.fail(f"catalog: {exc}", "correct the file and field named above")
    _check_policy_and_audit(report, settings)
    if settings.anthropic_api_key:
        report.ok("ANTHROPIC_API_KEY is set (chat enabled)")
    else:
        report.warn("ANTHROPIC_API_KEY is not set", "the chat page offers the command palette "
                    "only; set it to chat with Claude")
    try:
        from tailscale_userspace import find_tailscaled

        report.ok(f"tailscaled: {find_tailscaled(os.environ.get('TAILSCALED'))}")
    except Exception as exc:
        report.warn(f"tailscaled: {exc}", "needed for `serve` (not for --local, stdio or demo)")
    if not settings.hosts:
        report.fail("no SSH host configured", "set REMOTE_HOST, REMOTE_USER, REMOTE_SSH_KEY_PATH "
                    "(or TAILNET_AGENT_INVENTORY), or try `tailnet-agent demo`")
    pool = SSHPool(settings.hosts, connect_timeout=min(settings.connect_timeout, 10.0))
    try:
        for host in settings.hosts.values():
            _check_key(report, host)
            _check_known_hosts(report, host)
            try:
                ms = await pool.check_host(host.name)
                report.ok(f"{host.name}: {host.user}@{host.address}:{host.port} reachable, POSIX "
                          f"shell ({ms:.0f} ms)")
            except SSHError as exc:
                report.fail(f"{host.name}: {exc}", "see the message; `tailnet-agent trust "
                            f"{host.name}` pins a host key")
    finally:
        await pool.close()
    print(f"{report.failures} problem(s) found." if report.failures else "All checks passed.")
    return 1 if report.failures else 0
