"""`tailnet-agent doctor`: one line per check, OK or FAIL with the fix.

Checks, in order: the Python packages the agent imports, the catalog, the policy,
the audit log (its budget, its signing key, its syslog receiver and what waits for it),
the API key, tailscaled, then per host its key file and a real
connection (host key, authentication, POSIX shell). Hosts only the tailnet reaches
are checked through it with `--tailnet`, and reported as not checked without it; so
are the hosts the inventory's `tailnet:` selectors find among the node's peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import os
import ssl
from collections.abc import Mapping

from agent.access.policy import load_policy
from agent.audit.chain import Signer
from agent.audit.reader import log_files, removals
from agent.audit.ship import read_cursor
from agent.audit.syslog import Sink
from agent.audit.writer import AuditLog
from agent.errors import ConfigError
from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from agent.ssh import (
    AuthenticationFailed,
    Connector,
    HostKeyChanged,
    HostKeyUnknown,
    SSHError,
    SSHPool,
    socks_connector,
    trusted_keys,
)
from agent.tailnet.fleet import host_for
from agent.tailnet.node import joined_node
from tailscale_userspace import TailscaleNode, peers_from_status, self_principal
from whitelist import WhitelistError, load_catalog

from .checks import Finding, key_finding, needs_tailnet

# Import name of every third-party package the agent imports (a test keeps this in
# step with pyproject.toml and with the imports in the source).
DEPENDENCIES = (
    "anthropic", "mcp", "asyncssh", "bcrypt", "starlette", "uvicorn", "h11", "yaml",
    "python_socks", "httpx", "anyio", "jinja2", "markupsafe", "markdown_it", "pydantic",
    "prometheus_client", "re2", "packaging", "cryptography", "jc", "jmespath",
)


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def show(self, finding: Finding) -> None:
        if finding.level == "ok":
            print(f"OK    {finding.what}", flush=True)
        elif finding.level == "warn":
            print(f"WARN  {finding.what} -- {finding.fix}", flush=True)
        else:
            self.failures += 1
            print(f"FAIL  {finding.what} -- fix: {finding.fix}", flush=True)

    def ok(self, what: str) -> None:
        self.show(Finding("ok", what))

    def warn(self, what: str, advice: str) -> None:
        self.show(Finding("warn", what, advice))

    def fail(self, what: str, fix: str) -> None:
        self.show(Finding("fail", what, fix))


def _installed_version(module: str, owners: Mapping[str, list[str]]) -> str:
    """The version of the distribution that installed `module`, from its metadata (not
    `__version__`, which packages are dropping); "" where there is none (the executable
    bundles modules, not always their metadata)."""
    for distribution in owners.get(module, []):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(distribution)
    return ""


def _check_packages(report: Report) -> None:
    owners = importlib.metadata.packages_distributions()
    for name in DEPENDENCIES:
        try:
            importlib.import_module(name)
        except ImportError:
            report.fail(f"python package {name} is missing", "pip install tailnet-agent")
            continue
        report.ok(f"python package {name} {_installed_version(name, owners)}".rstrip())


def _check_policy_and_audit(report: Report, settings: Settings) -> None:
    try:
        load_policy(settings.policy_file)
        report.ok(f"policy: {settings.policy_file or 'the shipped default (read-only for users)'}")
    except ConfigError as exc:
        report.fail(f"policy: {exc}", "correct the policy file (README, Security)")
    path = settings.audit_path
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent  # the agent creates the missing folders
    target = path if path.exists() else directory
    if os.access(target, os.W_OK):
        report.ok(f"audit log: {path} is writable")
    else:
        report.fail(f"audit log: {path} is not writable, so every tool call would be refused",
                    "fix its permissions or set --audit-log / TAILNET_AGENT_AUDIT_LOG")
    _check_audit_budget(report, settings)
    _check_audit_signing(report, settings)


def _check_audit_signing(report: Report, settings: Settings) -> None:
    if settings.audit_signing_key is None:
        return
    try:
        signer = Signer.load(settings.audit_signing_key, settings.audit_path.parent)
    except ConfigError as exc:
        report.fail(f"audit signing key: {exc}", "fix the key, or unset "
                    "TAILNET_AGENT_AUDIT_SIGNING_KEY (the agent refuses to start with it)")
        return
    report.ok(f"audit signing key: {signer.key_id} seals the log at rotation and shutdown "
              "(check with `tailnet-agent audit verify --public-key KEY.pub`)")


async def _check_audit_shipping(report: Report, settings: Settings) -> None:
    """The syslog receiver reachable now, and what the shipper left in its cursor."""
    if settings.audit_syslog is None:
        return
    sink = Sink(settings.audit_syslog, settings.audit_syslog_ca)
    try:
        (await asyncio.to_thread(sink.connect, 5.0)).close()
        report.ok(f"audit receiver {sink.url}: reachable"
                  + (" (its TLS certificate verified)" if sink.tls else ""))
    except (OSError, ssl.SSLError) as exc:
        report.fail(f"audit receiver {sink.url}: cannot be reached ({exc})",
                    "start it, or correct TAILNET_AGENT_AUDIT_SYSLOG (and _CA); meanwhile "
                    f"records wait in the local log, at most {settings.audit_ship_backlog}")
    cursor = read_cursor(settings.audit_path)
    if cursor is None or cursor.get("sink") != sink.url:
        report.ok(f"audit shipping: nothing sent to {sink.url} yet")
        return
    written = AuditLog(settings.audit_path).last_link().seq
    waiting = max(0, written - int(cursor.get("seq") or 0))
    never = int(cursor.get("not_shipped") or 0)
    if never:
        last = cursor.get("last_gap") or ["?", "?", "?"]
        report.warn(f"audit shipping: {never} record(s) were never sent to {sink.url} (the "
                    f"last: seq {last[0]} to {last[1]}, noted at {last[2]}); they are in the "
                    "local log only", "keep the receiver up, or raise "
                    "TAILNET_AGENT_AUDIT_SHIP_BACKLOG")
    report.ok(f"audit shipping: {waiting} record(s) waiting (delivered up to seq "
              f"{cursor.get('seq')} of {written}, at {cursor.get('time')})")


def _check_audit_budget(report: Report, settings: Settings) -> None:
    path, budget = settings.audit_path, settings.audit_budget
    files = log_files(path)
    used = sum(f.stat().st_size for f in files)
    removed = removals(path)
    advice = ("raise TAILNET_AGENT_AUDIT_BUDGET, or move the oldest audit.jsonl.N files "
              "somewhere safe")
    if removed:
        last = removed[-1]
        report.warn(f"audit log: the budget ({budget} bytes) was reached and {len(removed)} "
                    f"rotated file(s) removed, the last at {last.get('time')} (records up to "
                    f"{last.get('last')} are gone)", advice)
    elif used > budget * 0.8:
        report.warn(f"audit log: {used} of its {budget}-byte budget used; past it the oldest "
                    "records are removed", advice)
    else:
        report.ok(f"audit log: {used} of its {budget}-byte budget used ({len(files)} file(s))")


def _connect_finding(name: str, exc: SSHError) -> Finding:
    if isinstance(exc, HostKeyUnknown):
        return Finding("fail", f"{name}: its host key is not pinned (it presents "
                       f"{exc.fingerprint or 'an unknown key'})", f"tailnet-agent trust {name}")
    if isinstance(exc, HostKeyChanged):
        return Finding("fail", f"{name}: {exc}", f"check with the host's administrator, then "
                       f"tailnet-agent trust {name}")
    if isinstance(exc, AuthenticationFailed):
        return Finding("fail", f"{name}: {exc}", "check the key file and the user name")
    return Finding("fail", f"{name}: {exc}", "see the message")


async def _tailnet_hosts(report: Report, settings: Settings, node: TailscaleNode
                         ) -> dict[str, HostConfig]:
    """The hosts the inventory's `tailnet:` selectors find among the node's peers now."""
    status = await node.localapi.status()
    found: dict[str, HostConfig] = {}
    for peer in peers_from_status(status):
        matched = host_for(peer, settings.tailnet_selectors, self_principal(status))
        if matched is None:
            continue
        host, presence = matched
        if host.name in settings.hosts:
            report.fail(f"tailnet host {host.name} clashes with a host of the same name "
                        "from the inventory or REMOTE_HOST_NAME", "rename one of them")
        elif presence.online is False:
            report.warn(f"{host.name}: offline in the tailnet (last seen "
                        f"{presence.last_seen or 'unknown'})", "start it, then check again")
        else:
            found[host.name] = host
    report.ok(f"tailnet: {len(found)} online peer(s) match the inventory's selectors")
    return found


async def _check_hosts(report: Report, hosts: Mapping[str, HostConfig], settings: Settings,
                       connector: Connector | None, tailnet: bool) -> None:
    pool = SSHPool(hosts, connector=connector,
                   connect_timeout=min(settings.connect_timeout, 10.0))
    try:
        for host in hosts.values():
            report.show(key_finding(host))
            if connector is None and needs_tailnet(host):
                report.warn(f"{host.name}: {host.address} not checked: it needs the tailnet",
                            "run `tailnet-agent doctor --tailnet` to check it through the tailnet")
                continue
            try:
                ms = await pool.check_host(host.name)
            except SSHError as exc:
                report.show(_connect_finding(host.name, exc))
                continue
            pinned = ("host key from the tailnet" if host.host_keys else "host key pinned"
                      if trusted_keys(host) else "host key checked")
            via = " through the tailnet" if tailnet else ""
            report.ok(f"{host.name}: {host.target} reachable{via}, {pinned}, POSIX shell "
                      f"({ms:.0f} ms)")
    finally:
        await pool.close()


async def run_doctor(settings: Settings, *, tailnet: bool = False) -> int:
    report = Report()
    _check_packages(report)
    try:
        catalog = load_catalog(settings.catalog_files)
        report.ok(f"catalog: {len(catalog)} commands")
    except WhitelistError as exc:
        report.fail(f"catalog: {exc}", "correct the file and field named above")
    _check_policy_and_audit(report, settings)
    await _check_audit_shipping(report, settings)
    if settings.anthropic_api_key:
        report.ok("ANTHROPIC_API_KEY is set (chat enabled)")
    else:
        report.warn("ANTHROPIC_API_KEY is not set", "the chat page offers the command palette "
                    "only; set it to chat with Claude")
    try:
        from tailscale_userspace import find_tailscaled

        report.ok(f"tailscaled: {find_tailscaled(settings.tailscaled)}")
    except Exception as exc:
        report.warn(f"tailscaled: {exc}", "needed for `serve` (not for --local, stdio or demo)")
    if not settings.hosts and not settings.tailnet_selectors:
        report.fail("no SSH host configured", "set REMOTE_HOST, REMOTE_USER, REMOTE_SSH_KEY_PATH "
                    "(or TAILNET_AGENT_INVENTORY), or try `tailnet-agent demo`")
    elif tailnet:
        async with joined_node(settings, hostname=f"{settings.hostname}-doctor") as node:
            hosts = dict(settings.hosts)
            if settings.tailnet_selectors:
                hosts.update(await _tailnet_hosts(report, settings, node))
            await _check_hosts(report, hosts, settings, socks_connector(lambda: node.socks5),
                               tailnet)
    else:
        if settings.tailnet_selectors:
            report.warn("the hosts of the inventory's `tailnet:` selectors are not checked",
                        "run `tailnet-agent doctor --tailnet` to find and check them")
        await _check_hosts(report, settings.hosts, settings, None, tailnet)
    print(f"{report.failures} problem(s) found." if report.failures else "All checks passed.")
    return 1 if report.failures else 0
