"""`tailnet-agent`: the command line. Thin: parse flags, load settings, run one command.

Flags become setting overrides here (by the field names of agent.settings), so no
argparse Namespace travels further. Every error a user can cause at start-up ends
as one line on stderr that says what to do next, and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from agent import __version__, logs
from agent.settings import BY_FIELD, SETTINGS, Settings

DEFAULT_PORT = 8765

EPILOG = """\
quick start:
  tailnet-agent demo                 try it: a local SSH target, MCP on 127.0.0.1, no set-up
  tailnet-agent serve --authkey file:~/.ts-key   join the tailnet and serve tailnet peers
  tailnet-agent doctor               check configuration, keys, hosts and catalog
  tailnet-agent hosts                list the configured SSH hosts
  tailnet-agent audit --since 1h     who ran what, where, and what the policy decided
  tailnet-agent audit verify         check that nobody edited, cut or reordered the audit log

settings come from flags, the environment and a .env file (strongest first):
""" + "\n".join(f"  {s.env:<31} {s.meaning}" for s in SETTINGS)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535; 0 picks a free one)")
    return value


def _flag(parser: argparse.ArgumentParser, field: str, help_text: str, **kwargs: Any) -> None:
    setting = BY_FIELD[field]
    assert setting.flag is not None
    parser.add_argument(setting.flag, dest=field, help=f"{help_text} (or ${setting.env})",
                        **kwargs)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", type=Path, default=None,
                        help="read settings from this file too (default: ./.env if it exists)")
    _flag(parser, "inventory", "YAML inventory of SSH hosts", type=Path)
    _flag(parser, "catalog_files", "extra command catalog YAML; adds or replaces commands "
          "(repeatable)", action="append", type=Path, metavar="FILE")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv includes tailscaled's own log)")
    _flag(parser, "log_format", "text, or json: one JSON object per line on stderr",
          choices=("text", "json"))


def _security_flags(parser: argparse.ArgumentParser) -> None:
    _flag(parser, "policy_file", "who may run what (YAML; default: tailnet users get "
          "read-only commands)", type=Path)
    _flag(parser, "audit_log", "append-only JSON lines log of every call (default: "
          "~/.local/state/tailnet-agent/audit.jsonl)", type=Path)


def _tailnet_flags(parser: argparse.ArgumentParser) -> None:
    _flag(parser, "authkey", "tailnet auth key, or file:PATH; without one, a login URL is "
          "printed")
    _flag(parser, "hostname", "tailnet hostname for this node (default tailnet-agent)")
    _flag(parser, "control_url", "control server URL, e.g. your Headscale (default: "
          "Tailscale's)")
    _flag(parser, "tailscaled", "tailscaled binary to run (default: the embedded one, then "
          "PATH)", type=Path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailnet-agent",
        description="Let Claude and MCP clients run whitelisted commands on your servers, "
        "reached over a Tailscale tailnet. No shell access, ever.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version",
                        version=f"tailnet-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description)

    serve = command("serve", "serve MCP and the chat page (tailnet peers only)",
                    "Join the tailnet with an embedded userspace tailscaled and serve MCP at "
                    "/mcp and the chat page at / to tailnet peers only. With --local, serve "
                    "127.0.0.1 to this machine's user instead (no tailnet needed).")
    _common(serve)
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT,
                       help=f"port on the tailnet address and on loopback (default {DEFAULT_PORT}"
                       "; 0 picks a free one)")
    serve.add_argument("--local", action="store_true",
                       help="development mode: no tailnet; serve on 127.0.0.1 to local callers")
    _tailnet_flags(serve)
    _flag(serve, "state_dir", "keep the node's state here (a persistent node); default: an "
          "ephemeral node that leaves the tailnet on exit", type=Path)
    _flag(serve, "socket", "also serve /healthz, /readyz and /metrics to the local operator "
          "on this unix socket (mode 0600)", type=Path)
    serve.add_argument("--allow-local-operator", action="store_true",
                       help="also accept plain loopback connections, as the local operator")
    serve.add_argument("--allow-exposed-tailscaled", action="store_true",
                       help="serve even if tailscaled listens beyond loopback (an untrimmed "
                       "build's peerapi); refused otherwise")
    _security_flags(serve)

    mcp = command("mcp", "serve MCP over stdio (for Claude Desktop and similar)",
                  "Serve MCP over stdin/stdout, as the local user. Messages for you go to "
                  "stderr.")
    _common(mcp)
    mcp.add_argument("--stdio", action="store_true", required=True, help="use stdin/stdout")
    _security_flags(mcp)

    demo = command("demo", "try it now: an embedded SSH target, MCP and chat on 127.0.0.1",
                   "Start an SSH target on 127.0.0.1 that runs whitelisted commands on this "
                   "machine as you, and serve MCP and the chat page for it on 127.0.0.1. No "
                   "tailnet, API key or SSH set-up needed; everything it creates is removed "
                   "when it stops.")
    _common(demo)
    demo.add_argument("--port", type=_port, default=DEFAULT_PORT,
                      help=f"HTTP port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)")
    _security_flags(demo)

    doctor = command("doctor", "check the set-up; one line per check with the fix",
                     "Check packages, catalog, policy, audit log, API key, tailscaled, and "
                     "each host's key, host key and shell. Prints OK or FAIL with the fix.")
    _common(doctor)
    doctor.add_argument("--tailnet", action="store_true",
                        help="check tailnet hosts through the tailnet (joins briefly as an "
                        "ephemeral node; takes the tailnet flags)")
    _tailnet_flags(doctor)
    _security_flags(doctor)

    trust = command("trust", "show a host's SSH key fingerprint and pin it in known_hosts",
                    "Fetch a host's SSH host key, show its fingerprint, and pin it in that "
                    "host's known_hosts after you confirm (or with --yes).")
    _common(trust)
    trust.add_argument("host", help="host name from the configuration (`tailnet-agent hosts` "
                       "lists them)")
    trust.add_argument("--yes", action="store_true", help="pin without asking")
    trust.add_argument("--tailnet", action="store_true",
                       help="reach the host through the tailnet, as `serve` does: joins briefly "
                       "as an ephemeral node (takes the tailnet flags)")
    _tailnet_flags(trust)

    hosts = command("hosts", "list the configured SSH hosts",
                    "List the SSH hosts from REMOTE_* and the inventory, with their host-key "
                    "state.")
    _common(hosts)

    audit = command("audit", "show the audit log: one line per call, newest last",
                    "Show who ran what, where, and what the policy decided.")
    audit.add_argument("--env-file", type=Path, default=None,
                       help="read settings from this file too (default: ./.env if it exists)")
    _flag(audit, "audit_log", "the log to read (default: as serve)", type=Path)
    audit.add_argument("--since", help="only calls since: 90s, 15m, 1h, 2d or an ISO time")
    audit.add_argument("--identity", help="only this caller (login name, or tag list)")
    audit.add_argument("--host", help="only this host")
    audit.add_argument("--command", dest="audit_command", metavar="COMMAND",
                       help="only this catalog command")
    audit.add_argument("--json", action="store_true", help="one JSON object per call")
    audit.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)
    actions = audit.add_subparsers(dest="audit_action", metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="check that no record was edited, removed, reordered or inserted",
        description="Walk the audit log's hash chain through the log and its rotated files. "
        "Prints OK with the counts, or one line per problem (file:line: what happened). "
        "Exit status: 0 intact, 1 tampered with, 2 could not be read.")
    # SUPPRESS: given before `verify`, the flag keeps its value.
    verify.add_argument("--env-file", type=Path, default=argparse.SUPPRESS,
                        help="read settings from this file too (default: ./.env if it exists)")
    _flag(verify, "audit_log", "the log to check (default: as serve)", type=Path,
          default=argparse.SUPPRESS)
    verify.add_argument("--public-key", type=Path, metavar="FILE",
                        help="also check the seals with this Ed25519 public key (the .pub of "
                        "TAILNET_AGENT_AUDIT_SIGNING_KEY)")
    verify.add_argument("--shipped", type=Path, metavar="FILE",
                        help="also compare with the copy a syslog receiver kept (its file, "
                        "one message a line): finds records changed after they were shipped "
                        "and an end cut off")
    show = actions.add_parser(
        "show", help="one call's record and its recorded output",
        description="Print one call's audit record, then the output it recorded (stdout "
        "and stderr, redacted, as they arrived); with --cast, write the recording (an "
        "asciinema v2 cast) instead.")
    show.add_argument("call", metavar="CALL_ID", help="the call's id, as `tailnet-agent audit` "
                      "shows it")
    show.add_argument("--cast", type=Path, metavar="FILE", dest="cast_file",
                      help="write the recording to FILE (`-` for stdout); play it with "
                      "`asciinema play FILE`")
    show.add_argument("--env-file", type=Path, default=argparse.SUPPRESS,
                      help="read settings from this file too (default: ./.env if it exists)")
    _flag(show, "audit_log", "the log to read (default: as serve)", type=Path,
          default=argparse.SUPPRESS)

    health = command("health", "ask a running agent whether it is ready (exit 0) or not (1)",
                     "Ask the agent serving on the local socket (--socket, "
                     "TAILNET_AGENT_SOCKET) for its readiness: tailnet Running and at least one "
                     "host reachable. Prints one line; exits 0 when ready, 1 otherwise. The "
                     "container image's health check.")
    health.add_argument("--env-file", type=Path, default=None, help=argparse.SUPPRESS)
    _flag(health, "socket", "the agent's local socket", type=Path)
    health.add_argument("--live", action="store_true",
                        help="only check that the agent answers (/healthz), not readiness")
    health.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the answer (default 5)")
    health.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)

    version = command("version", "print versions", "Print our version and the tailscaled "
                      "version; with --verbose, every bundled (or installed) package too.")
    version.add_argument("-v", "--verbose", action="count", default=0,
                         help="also list the packages this copy runs on, with their versions "
                         "(the executable: from the SBOM it carries)")
    return parser


def _early_log_format(args: argparse.Namespace) -> str:
    """The log format before the settings are loaded (their errors are logged in it too)."""
    chosen = getattr(args, "log_format", None) or os.environ.get("TAILNET_AGENT_LOG_FORMAT", "")
    return "json" if chosen.strip().lower() == "json" else "text"


def load(args: argparse.Namespace) -> Settings:
    """Settings from the environment and .env, with the flags this command has applied."""
    from agent.errors import ConfigError
    from agent.settings import load_settings

    env_file = args.env_file
    if env_file is not None and not env_file.exists():
        raise ConfigError(f"--env-file {env_file}: no such file; fix the path or leave the "
                          "flag out (./.env is read when it exists)")
    overrides = {field: getattr(args, field) for field in BY_FIELD if hasattr(args, field)}
    return load_settings(env_file=env_file or Path(".env"), overrides=overrides)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the chosen command; its imports happen here so `--help` stays fast."""
    run: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run
    command = args.command
    if command == "version":
        from agent.commands.version import run_version

        return run_version(verbose=args.verbose > 0)
    if command == "health":
        from agent.commands.health import run_health

        return run_health(args, load)
    settings = load(args)
    # Again, now that .env is read and the secrets to keep out of every record are known.
    logs.configure(args.verbose, settings.log_format, settings.secret_values())
    if command == "serve":
        from agent.commands.serve import serve_local, serve_tailnet

        if args.local:
            run(serve_local(settings, port=args.port))
        else:
            run(serve_tailnet(settings, port=args.port,
                              allow_local_operator=args.allow_local_operator,
                              allow_exposed_tailscaled=args.allow_exposed_tailscaled))
        return 0
    if command == "demo":
        from agent.commands.demo import run_demo

        run(run_demo(settings, port=args.port))
        return 0
    if command == "mcp":
        from agent.commands.stdio import run_stdio

        run(run_stdio(settings))
        return 0
    if command == "doctor":
        from agent.commands.doctor import run_doctor

        return int(run(run_doctor(settings, tailnet=args.tailnet)))
    if command == "trust":
        from agent.commands.trust import run_trust

        return int(run(run_trust(settings, args.host, yes=args.yes, through_tailnet=args.tailnet)))
    if command == "hosts":
        from agent.commands.hosts import run_hosts

        return run_hosts(settings)
    if command == "audit" and args.audit_action == "verify":
        from agent.commands.audit import run_verify

        return run_verify(settings, public_key=args.public_key, shipped=args.shipped)
    if command == "audit" and args.audit_action == "show":
        from agent.commands.audit import run_audit_show

        return run_audit_show(settings, args.call, cast_file=args.cast_file)
    if command == "audit":
        from agent.commands.audit import run_audit

        return run_audit(settings, since=args.since, identity=args.identity, host=args.host,
                         command=args.audit_command, as_json=args.json)
    raise AssertionError(f"unhandled command {command!r}")


def _stderr(text: str) -> None:
    if logs.json_mode():
        logging.getLogger("tailnet_agent").error("%s", text)
    else:
        print(text, file=sys.stderr)


def _fail(message: str, hint: str = "", code: int = 1) -> int:
    _stderr(f"tailnet-agent: {message}{hint}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logs.configure(getattr(args, "verbose", 0), _early_log_format(args))

    from agent.errors import ConfigError
    from tailscale_userspace import TailscaledNotFound, TailscaleError
    from whitelist import CatalogError, WhitelistError

    try:
        return _dispatch(args)
    except CatalogError as exc:
        print(f"tailnet-agent: {exc}", file=sys.stderr)
        if len(exc.problems) > 1:
            print(f"tailnet-agent: fix the {len(exc.problems)} problems above in {exc.file}, "
                  "then start again", file=sys.stderr)
        return 2
    except (ConfigError, WhitelistError) as exc:
        return _fail(str(exc), code=2)
    except TailscaledNotFound as exc:
        return _fail(str(exc), " (`serve --local`, `mcp --stdio` and `demo` need no tailscaled)")
    except TailscaleError as exc:
        if exc.details and args.verbose:
            _stderr(exc.details)
        return _fail(str(exc))
    except BrokenPipeError:
        # Whoever read our output stopped (`tailnet-agent version -v | head`): nothing to
        # say; stdout goes nowhere so that its flush at exit fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # A file or directory the user named cannot be used (permissions, a full disk, ...).
        where = f" ({exc.filename})" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}; check the path and its permissions")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
