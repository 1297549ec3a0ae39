"""`tailnet-agent`: the command line. Thin: parse, load settings, hand over."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger("tailnet_agent")

DEFAULT_PORT = 8765

EPILOG = """\
quick start:
  tailnet-agent demo                 try it: a local SSH target, MCP on 127.0.0.1, no set-up
  tailnet-agent serve --authkey file:~/.ts-key   join the tailnet and serve tailnet peers
  tailnet-agent doctor               check configuration, keys, hosts and catalog
  tailnet-agent audit --since 1h     who ran what, where, and what the policy decided

configuration comes from the environment and a .env file: REMOTE_HOST, REMOTE_USER,
REMOTE_SSH_KEY_PATH, REMOTE_SSH_KNOWN_HOSTS, ... (see README.md, "Configuration").
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", type=Path, default=Path(".env"),
                        help="read settings from this file too (default: ./.env)")
    parser.add_argument("--inventory", type=Path,
                        help="YAML inventory of SSH hosts (or TAILNET_AGENT_INVENTORY)")
    parser.add_argument("--catalog", action="append", default=[], metavar="FILE",
                        help="extra command catalog YAML; adds or replaces commands (repeatable)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv includes tailscaled's own log)")


def _security_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", type=Path, help="who may run what (YAML; default: "
                        "$TAILNET_AGENT_POLICY, else tailnet users get read-only commands)")
    parser.add_argument("--audit-log", type=Path, help="append-only JSON lines log of every "
                        "call (default: $TAILNET_AGENT_AUDIT_LOG, else "
                        "~/.local/state/tailnet-agent/audit.jsonl)")


def _tailnet_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--authkey", help="tailnet auth key, or file:PATH (default: $TS_AUTHKEY); "
                        "without one, a login URL is printed")
    parser.add_argument("--hostname", help="tailnet hostname for this node (default: "
                        "$TS_HOSTNAME or tailnet-agent)")
    parser.add_argument("--control-url", help="control server URL, e.g. your Headscale "
                        "(default: $TS_CONTROL_URL or Tailscale's)")
    parser.add_argument("--tailscaled", help="tailscaled binary to run (default: $TAILSCALED, "
                        "the embedded one, then PATH)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailnet-agent",
        description="Let Claude and MCP clients run whitelisted commands on your servers, "
        "reached over a Tailscale tailnet. No shell access, ever.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve MCP and the chat page (tailnet peers only)",
                           description="Join the tailnet with an embedded userspace tailscaled "
                           "and serve MCP at /mcp and the chat page at / to tailnet peers only.")
    _common(serve)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"port on the tailnet address and on loopback (default {DEFAULT_PORT})")
    serve.add_argument("--local", action="store_true",
                       help="development mode: no tailnet; serve on 127.0.0.1 to local callers")
    _tailnet_flags(serve)
    serve.add_argument("--state-dir", type=Path, help="keep node state here (a persistent node); "
                       "default: in memory, an ephemeral node that leaves the tailnet on exit")
    serve.add_argument("--allow-local-operator", action="store_true",
                       help="also accept plain loopback connections, as the local operator")
    _security_flags(serve)

    mcp = sub.add_parser("mcp", help="serve MCP over stdio (for Claude Desktop and similar)")
    _common(mcp)
    mcp.add_argument("--stdio", action="store_true", required=True, help="use stdin/stdout")
    _security_flags(mcp)

    demo = sub.add_parser("demo", help="try it now: an embedded SSH target on this machine, "
                          "MCP and chat on 127.0.0.1; no tailnet, API key or SSH set-up")
    _common(demo)
    demo.add_argument("--port", type=int, default=DEFAULT_PORT,
                      help=f"HTTP port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)")
    _security_flags(demo)

    doctor = sub.add_parser("doctor", help="check the set-up; one line per check with the fix")
    _common(doctor)

    trust = sub.add_parser("trust", help="show a host's SSH key fingerprint and pin it in "
                           "known_hosts after you confirm")
    _common(trust)
    trust.add_argument("host", help="host name from the configuration (see list_hosts)")
    trust.add_argument("--yes", action="store_true", help="pin without asking")
    trust.add_argument("--tailnet", action="store_true",
                       help="reach the host through the tailnet, as `serve` does: joins briefly "
                       "as an ephemeral node (takes the same --authkey/--control-url flags)")
    _tailnet_flags(trust)

    audit = sub.add_parser("audit", help="show the audit log: one line per call, newest last")
    audit.add_argument("--env-file", type=Path, default=Path(".env"),
                       help="read settings from this file too (default: ./.env)")
    audit.add_argument("--audit-log", type=Path, help="the log to read (default: as serve)")
    audit.add_argument("--since", help="only calls since: 90s, 15m, 1h, 2d or an ISO time")
    audit.add_argument("--identity", help="only this caller (login name, or tag list)")
    audit.add_argument("--host", help="only this host")
    audit.add_argument("--command", dest="audit_command", metavar="COMMAND",
                       help="only this catalog command")
    audit.add_argument("--json", action="store_true", help="one JSON object per call")
    audit.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)

    sub.add_parser("version", help="print versions")
    return parser


def _setup_logging(verbose: int) -> None:
    # Logs go to stderr: stdout carries the MCP stdio transport and the start-up banner.
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Tool calls are always worth a line: who ran what, where.
    logging.getLogger("tailnet_agent.calls").setLevel(logging.INFO)
    if verbose < 2:
        logging.getLogger("tailscale_userspace.tailscaled").setLevel(logging.INFO)
        # one line per LocalAPI poll and WhoIs is noise below -vv
        logging.getLogger("httpx").setLevel(logging.WARNING)


def _settings(args: argparse.Namespace) -> Settings:
    from .config import load_settings

    settings = load_settings(env_file=args.env_file, inventory=getattr(args, "inventory", None))
    if getattr(args, "policy", None):
        settings = dataclasses.replace(settings, policy_file=args.policy)
    if getattr(args, "audit_log", None):
        settings = dataclasses.replace(settings, audit_log=args.audit_log)
    return settings


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import AuditFilter, default_audit_path, parse_since, show

    path = _settings(args).audit_log or default_audit_path()
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"tailnet-agent audit: {exc}", file=sys.stderr)
        return 2
    if not path.exists():
        print(f"tailnet-agent audit: no audit log at {path} yet (nothing has run, or the "
              "agent writes elsewhere: --audit-log / TAILNET_AGENT_AUDIT_LOG)", file=sys.stderr)
        return 1
    flt = AuditFilter(since=since, identity=args.identity, host=args.host,
                      command=args.audit_command)
    for line in show(path, flt, as_json=args.json):
        print(line)
    return 0


def cmd_version() -> int:
    print(f"tailnet-agent {__version__}")
    try:
        from tailscale_userspace import find_tailscaled, tailscaled_version

        path = find_tailscaled()
        frozen_dir = getattr(sys, "_MEIPASS", None)
        where = "embedded" if frozen_dir and path.parent == Path(frozen_dir) else str(path)
        print(f"tailscaled {tailscaled_version(path)} ({where})")
    except Exception as exc:  # version must never fail because tailscaled is absent
        print(f"tailscaled: not found ({exc})")
    return 0


async def _local_serve(args: argparse.Namespace, *, demo: bool) -> None:
    from .hostcheck import LOOPBACK_NAMES
    from .identity import fixed_resolver, local_user_identity
    from .mcp_server import build_mcp_server
    from .server import build_service, chat_routes, serve_app
    from .web import build_app

    settings = _settings(args)
    target = None
    banner: list[str] = []
    if demo:
        from .demo import start_demo_target

        workdir = Path(tempfile.mkdtemp(prefix="tailnet-agent-demo-"))
        target = await start_demo_target(workdir)
        settings = dataclasses.replace(
            settings, hosts={"demo": target.host}, default_host="demo"
        )
        banner.append(
            f"Demo SSH target: {target.host.user}@127.0.0.1:{target.host.port} (commands run "
            "on this machine as you; host key pinned in a private known_hosts)"
        )
    service = build_service(settings, mode="demo" if demo else "local", extra_catalogs=args.catalog)
    mcp = build_mcp_server(service)
    app = build_app(
        service,
        mcp,
        resolver=fixed_resolver(local_user_identity("local")),
        allowed_names=LOOPBACK_NAMES,
        extra_routes=chat_routes(service, mcp),
    )
    banner.insert(0, f"tailnet-agent {__version__}: {'demo' if demo else 'local'} mode, "
                  f"{len(service.catalog)} commands, hosts: {', '.join(settings.hosts) or 'none'}")
    try:
        await serve_app(service, app, port=args.port, banner=banner)
    finally:
        if target is not None:
            target.close()


async def _stdio(args: argparse.Namespace) -> None:
    from .mcp_server import build_mcp_server
    from .server import build_service

    service = build_service(_settings(args), mode="stdio", extra_catalogs=args.catalog)
    try:
        await build_mcp_server(service).run_stdio_async()
    finally:
        await service.pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "version":
        return cmd_version()
    _setup_logging(args.verbose)

    from whitelist import WhitelistError

    from .config import ConfigError

    try:
        if args.command == "serve":
            if args.local:
                asyncio.run(_local_serve(args, demo=False))
            else:
                from .tailnet import serve_tailnet

                asyncio.run(serve_tailnet(args, _settings(args)))
        elif args.command == "demo":
            asyncio.run(_local_serve(args, demo=True))
        elif args.command == "mcp":
            asyncio.run(_stdio(args))
        elif args.command == "doctor":
            from .doctor import run_doctor

            return asyncio.run(run_doctor(_settings(args), extra_catalogs=args.catalog))
        elif args.command == "audit":
            return cmd_audit(args)
        elif args.command == "trust":
            from .trust import run_trust

            return asyncio.run(run_trust(_settings(args), args))
    except (ConfigError, WhitelistError) as exc:
        print(f"tailnet-agent: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
