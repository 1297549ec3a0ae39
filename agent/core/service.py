"""The agent's one way to run a catalog command: prepare (decide), confirm, record, run.

Every front end (MCP over HTTP or stdio, the chat page, the palette, fan-out) asks
`prepare` (agent.core.prepare, through CallerView) what a call would do, shows and asks
from the prepared call, and hands it to `AgentService.execute`, which runs it and decides
nothing again: the policy's answer, the command line, the user it runs as and the
confirmation it needs come from the preparation; the limits, the confirmation itself and
the audit log sit here. The service does not know how commands reach a host; it is given
a `Runner` (agent.ssh.SSHPool in practice).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from agent.access.identity import Identity, IdentityTokens
from agent.access.policy import Decision, Policy, load_policy
from agent.audit.casts import CastStore
from agent.audit.chain import Signer
from agent.audit.recorder import Recording
from agent.audit.shape import summary
from agent.audit.ship import Shipper
from agent.audit.syslog import Sink
from agent.audit.writer import AuditLog
from agent.errors import (
    AuditUnavailable,
    CallRefused,
    ConfigError,
    HostError,
    HostOffline,
    LimitExceeded,
    NotConfirmed,
    PathRefused,
    PolicyDenied,
    RateLimited,
)
from agent.fanout.strategy import StrategyRequest
from agent.hosts.registry import HostRegistry, offline_message
from agent.output.live import LiveOutput
from agent.output.parsing import parse_result
from agent.output.redact import Redactor
from agent.output.results import CommandResult
from agent.output.spool import CommandOutput, stderr_cap
from agent.output.store import OutputStore, Page, UnknownOutput
from agent.settings import Settings
from whitelist import Catalog, Command, WhitelistError
from whitelist.render import path_refusal

from . import fanout_run as fan_out
from .approvals import Approvals, PendingApprovals
from .call_record import CallEnd, CallStart, FanoutPart, Refusal
from .consent import Confirm, Consent, Consents
from .elevation import check_elevation
from .limits import HostGate, RateLimiter, fanout_cost
from .metrics import UNKNOWN, NullRecorder, Recorder, refusal_reason
from .prepare import Preparation, Unprepared, unchanged
from .visibility import CallerView

log = logging.getLogger("tailnet_agent.calls")

AUDIT_EXCERPT = 300  # characters of the (redacted) output the end record keeps
PAGE_RECORD_WINDOW = 60.0  # seconds: reads of one handle by one caller recorded once per window

StatusProvider = Callable[[], Awaitable[dict[str, Any]]]


class Runner(Protocol):
    """Runs an already rendered command on a named host (agent.ssh.SSHPool)."""

    async def run(
        self,
        host: str,
        rendered: str,
        *,
        command_name: str,
        timeout: float,  # noqa: ASYNC109 - enforced on the host
        max_output: int,
        destructive: bool = False,
        become: str | None = None,
        output: CommandOutput | None = None,
    ) -> CommandResult: ...

    async def connection_status(self) -> dict[str, dict[str, Any]]: ...

    def connections(self) -> Mapping[str, float | int]:
        """Connections open in all, the cap, the idle time, how many were closed for each."""
        ...

    async def check_host(self, host: str) -> float:
        """Connect (or reuse the connection) and check the host's shell; milliseconds."""
        ...

    async def close(self) -> None: ...


# A failed call's outcome in the audit log and the metrics, by its exception (first match).
_OUTCOMES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (LimitExceeded, "limited"), (NotConfirmed, "not-confirmed"), (CallRefused, "refused"),
    ((WhitelistError, ConfigError), "invalid"), (asyncio.CancelledError, "cancelled"),
    (HostOffline, "offline"), (HostError, "failed"))


def _outcome(exc: BaseException) -> str:
    return next((name for kind, name in _OUTCOMES if isinstance(exc, kind)), "not-run")


class AgentService(CallerView):
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        pool: Runner,
        *,
        tailnet_status: StatusProvider | None = None,
        mode: str = "local",
        policy: Policy | None = None,
        audit: AuditLog | None = None,
        recorder: Recorder | None = None,
        hosts: HostRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.pool = pool
        self.hosts = hosts if hosts is not None else HostRegistry(
            settings.hosts, settings.default_host, tailnet=bool(settings.tailnet_selectors))
        self.policy = policy if policy is not None else load_policy(settings.policy_file)
        self.audit = audit if audit is not None else AuditLog(
            settings.audit_path,
            max_bytes=settings.audit_max_bytes,
            budget=settings.audit_budget,
            secrets_to_hide=settings.secret_values(),
            signer=(Signer.load(settings.audit_signing_key, settings.audit_path.parent)
                    if settings.audit_signing_key is not None else None),
        )
        self.recorder: Recorder = recorder if recorder is not None else NullRecorder()
        self.audit.on_failure = self.recorder.audit_write_failed
        # Records off the machine as they are written (audit_ship.py), in the background.
        self.shipper: Shipper | None = None
        if settings.audit_syslog is not None:
            self.shipper = Shipper(self.audit, Sink(settings.audit_syslog,
                                                    settings.audit_syslog_ca),
                                   backlog=settings.audit_ship_backlog)
            self.shipper.start()
        self.redactor = Redactor()
        self.outputs = OutputStore(
            head=settings.output_head, tail=settings.output_tail, ttl=settings.output_ttl,
            max_handles=settings.output_handles, max_bytes=settings.output_disk)
        # Every command's output as a cast, bounded; removals recorded in the audit log.
        # A small recording is kept in its end record, unless the log would alter it.
        self.casts = CastStore(settings.recordings_path, per_call=settings.recording_max_bytes,
                               budget=settings.recordings_budget, record=self.audit.write,
                               inline=lambda text: not self.audit.hides(text))
        # (caller, handle, outcome): when its reads were last recorded
        self._page_records: dict[tuple[str, str, str], float] = {}
        self.approvals = Approvals()
        self.pending = PendingApprovals(self.policy.may_approve)
        self.consents = Consents(self.approvals, self.pending, settings.approval_timeout)
        self.rate = RateLimiter(settings.rate_per_minute, settings.rate_burst)
        self.host_gate = HostGate(settings.host_concurrency, settings.identity_concurrency)
        self.identity_tokens = IdentityTokens()
        self.mode = mode
        self.tailnet_status = tailnet_status
        self.started = time.monotonic()

    async def run(
        self,
        command_name: str,
        arguments: Mapping[str, object],
        *,
        host: str | None,
        identity: Identity,
        confirm: Confirm | None = None,
        tool: str = UNKNOWN,
        live: LiveOutput | None = None,
        fanout: FanoutPart | None = None,
    ) -> CommandResult:
        """Prepare and execute one catalog command, for a front end that has nothing to
        show or decide first (the read-only tools, system_overview, tests)."""
        return await self.execute(
            self.prepare(command_name, arguments, host=host, identity=identity),
            confirm=confirm, tool=tool, live=live, fanout=fanout)

    async def execute(
        self,
        call: Preparation,
        *,
        confirm: Confirm | None = None,
        tool: str = UNKNOWN,
        live: LiveOutput | None = None,
        fanout: FanoutPart | None = None,
    ) -> CommandResult:
        """Run a prepared call (for the MCP tool `tool`), deciding nothing `prepare` decided.

        Order: take the caller's rate budget (refused and invalid calls cost a token too;
        a fan-out's hosts took theirs with the fan-out, `charge_fanout`),
        raise an unprepared call's refusal, check that the policy and the host are still
        the ones the call was prepared with, answer at once for a host the tailnet says is
        offline, get a destructive command's confirmation (the standing approval the
        preparation found, a second person's yes, or the caller's `confirm`, which raises
        NotConfirmed to decline; refused outright without one), take a host slot, write
        the audit start record (no record, no run), run (lines reach `live` as they
        arrive), show the output (redacted, head and tail), write the end record. A call
        stopped at any step gets its start and end records too, and every call is
        reported to the metrics recorder; `fanout` (the run_on_hosts call, its strategy and
        the batch) is recorded with them.
        Raises WhitelistError / ConfigError / HostError / CallRefused.
        """
        self.audit.flush_limited()
        identity = call.identity
        start = CallStart.of(self.audit.new_call_id(), call, tool=tool, fanout=fanout)
        consent: Consent | None = None
        audit_started = False
        recording: Recording | None = None
        ran_from: float | None = None
        command_name = start.command or ""
        labels = {"tool": tool, "command": command_name if command_name in self.catalog
                  else UNKNOWN, "host": self._host_label(start.host)}
        context = {"identity": identity.principal, **labels}
        # A fan-out's hosts are told in one line for the fan-out (fanout_run.py): a thousand
        # lines of `hostname` are noise on the operator's terminal (and 6 % of a call's CPU).
        # Every host's call is in the audit log either way.
        quiet, failed = ((logging.INFO, logging.WARNING) if fanout is None
                         else (logging.DEBUG, logging.DEBUG))

        try:
            # First, before anything can fail: refused and invalid calls cost a token too.
            if fanout is None:
                self.rate.take(identity)
            if isinstance(call, Unprepared):
                raise call.error
            prepared = unchanged(self, call)
            command, target, rendered = prepared.command, prepared.host, prepared.rendered
            runs_as = prepared.runs_as
            presence = self.hosts.presence(target.name)
            if presence.online is False:
                raise HostOffline(target.name, offline_message(target.name, presence))
            if prepared.confirmation != "none":
                consent = self.consents.begin(prepared, confirm)
                consent = await self.consents.complete(prepared, consent, confirm, live)
                if not consent.confirmed:
                    raise NotConfirmed(consent.refusal)
            start = CallStart.of(start.call, prepared, tool=tool, fanout=fanout,
                                 consent=consent)
            with self.host_gate.enter(target.name, identity):
                ran_from = time.monotonic()
                self._write(start)
                audit_started = True
                if log.isEnabledFor(quiet):
                    log.log(quiet, "%s runs %s on %s: %s", identity.display, command.name,
                            target.name, self.redactor.scrub(rendered), extra=context)
                recording = self._record(start.call, f"{command.name} on {target.name}")
                # Redacted as it arrives, within the disk budget (spool.py): every view of
                # the output, live lines and the recording included, reads only what was
                # kept.
                output = CommandOutput(command.max_output, stderr_cap(command.max_output),
                                       directory=self.settings.output_dir,
                                       listener=live.feed if live is not None else None,
                                       redact=command.redact, budget=self.outputs.budget,
                                       recorder=recording.feed)
                try:
                    result = await self.pool.run(
                        target.name,
                        rendered,
                        command_name=command.name,
                        timeout=command.timeout,
                        max_output=command.max_output,
                        destructive=command.destructive,
                        become=runs_as,
                        output=output,
                    )
                except BaseException:
                    output.close()
                    raise
                refusal = path_refusal(result.exit_status, result.stderr)
                if refusal is not None:  # the host-side path check said no: nothing ran
                    output.close()
                    raise PathRefused(refusal.removeprefix("tailnet-agent: ").capitalize())
                # As data too, from the whole redacted stdout (parsing.py), then shown as
                # head and tail, the rest behind a handle (outputs.py).
                parsed = await parse_result(command, result)
                if parsed is not None:
                    result = dataclasses.replace(result, data=parsed.data,
                                                 parse_note=parsed.note)
                result = self.outputs.present(result, identity)
                if runs_as is not None:
                    check_elevation(result, command, target, runs_as, timeout=command.timeout)
                    result = dataclasses.replace(result, runs_as=runs_as)
        except BaseException as exc:
            unconfirmed = consent is not None and not consent.confirmed
            outcome = "not-confirmed" if unconfirmed else _outcome(exc)
            record = dataclasses.replace(start, consent=consent) if consent else start
            if isinstance(exc, PolicyDenied):
                record = dataclasses.replace(record, decision=exc.decision)
            if isinstance(exc, RateLimited) and not audit_started:
                if not self.audit.limited(identity):
                    # Counted in the window's `limited` record; the metrics count each.
                    self.recorder.refused("rate_limit")
                    self.recorder.call_finished(**labels, outcome=outcome, seconds=None)
                    raise
                # What a flood sends is not worth keeping, only recognising.
                record = dataclasses.replace(
                    record, parameters=summary(dict(call.arguments), preview=False))
            if not audit_started and not isinstance(exc, AuditUnavailable):
                try:
                    self._write(record)
                except AuditUnavailable:
                    raise exc from None
                audit_started = True
            if audit_started:
                # A cancelled call's exception text is SDK internals, not a reason.
                error = "cancelled" if outcome == "cancelled" else str(exc)[:500]
                self._write(CallEnd(start.call, identity, outcome, error=error,
                                    cast=recording.finish() if recording else None))
            reason = refusal_reason(exc)
            if reason is not None:
                self.recorder.refused(reason)
            self.recorder.call_finished(**labels, outcome=outcome, seconds=None)
            if not isinstance(exc, asyncio.CancelledError | GeneratorExit):
                # The operator watches this terminal: a failure is worth a line there (a
                # fan-out's host: in the fan-out's own line, fanout_run.py).
                log.log(failed, "%s: %s on %s %s: %s", identity.display, _short(command_name),
                        start.host or "(no host)", outcome, _short(exc),
                        extra={**context, "outcome": outcome})
            raise
        result = dataclasses.replace(result, audit_id=start.call)
        assert recording is not None
        self._write(CallEnd(
            start.call, identity, "ran", result=result, cast=recording.finish(),
            # What the caller was shown first, for the record: redacted here too, also for a
            # command whose output is shown unredacted (whole lines, then cut).
            stdout_head=self.redactor.scrub(result.stdout[:8192])[:AUDIT_EXCERPT]))
        outcome = ("timed_out" if result.timed_out
                   else "ok" if result.exit_status == 0 else "nonzero_exit")
        assert ran_from is not None
        self.recorder.call_finished(**labels, outcome=outcome,
                                    seconds=time.monotonic() - ran_from)
        log.log(
            quiet,
            "%s: %s on %s exited %s in %.0f ms%s",
            identity.display,
            command.name,
            target.name,
            result.exit_status,
            result.duration_ms,
            " (truncated)" if result.truncated else "",
            extra={**context, "outcome": outcome},
        )
        return result

    async def close(self) -> None:
        """At shutdown, after the last call: SSH connections, then the shipper (it sends
        what it has not sent yet, briefly, and notes what it never will), then the audit
        log's seal (with a signing key), so that the log ends sealed; the seal is shipped
        at the next start."""
        await self.pool.close()
        if self.shipper is not None:
            await asyncio.to_thread(self.shipper.stop)
        self.audit.close()

    def _record(self, call: str, title: str) -> Recording:
        """The call's recording; like its start record, no recording, no run."""
        try:
            return self.casts.start(call, title)
        except OSError as exc:
            raise AuditUnavailable(
                f"cannot record this command's output in {self.casts.directory}: "
                f"{exc.strerror or exc}. Nothing was run: every command is recorded. Fix the "
                "directory's permissions or free room (TAILNET_AGENT_RECORDINGS, "
                "TAILNET_AGENT_RECORDINGS_BUDGET) and try again.") from None

    def _host_label(self, host: str | None) -> str:
        """A host name for metrics and logs: a known one (from a file or the tailnet's
        netmap), never a caller's string."""
        name = self.hosts.default if host is None else host
        return name if name is not None and name in self.hosts else UNKNOWN

    def _write(self, record: CallStart | CallEnd) -> None:
        """One of a call's two audit records, secrets redacted (raises AuditUnavailable for a
        start record that cannot be written)."""
        fields = self.redactor.scrub(record.fields())
        if isinstance(record, CallStart):
            self.audit.start(record.call, record.identity, **fields)
        else:
            self.audit.end(record.call, record.identity, **fields)

    def runs_as(self, command: Command, host: str | None = None) -> str | None:
        """Who `command` runs as on `host` (default host when None); None: the login user."""
        if command.become is None:
            return None
        try:
            return command.runs_as(self.hosts.host(host).become)
        except ConfigError:
            return command.runs_as()

    def refused(self, identity: Identity, *, tool: str, command: str | None,
                host: str | None, arguments: object, error: Exception | str) -> Refusal:
        """Record a call refused before it could be executed (MCP schema validation, a
        palette form, a fan-out refused before any host), charging the caller's rate like
        any call. Returns what to tell the caller: the refusal, or the rate limit."""
        decision = error.decision if isinstance(error, PolicyDenied) else None
        try:
            self.rate.take(identity)
        except RateLimited as exc:
            return self._record_refusal(identity, tool, command, host, arguments, exc,
                                        decision)
        return self._record_refusal(identity, tool, command, host, arguments, error, decision)

    def charge_fanout(self, identity: Identity, *, command: str, hosts: int,
                      arguments: object) -> None:
        """Take a fan-out's charge from the caller's rate budget, once for all its hosts
        (agent.core.limits.fanout_cost). Raises RateLimited, recorded like any call the
        limit refuses, before anything runs."""
        try:
            self.rate.take(identity, cost=fanout_cost(hosts, self.rate.burst),
                           what=f"a fan-out over {hosts} host(s)")
        except RateLimited as exc:
            refusal = self._record_refusal(identity, fan_out.TOOL, command, None, arguments,
                                           exc, None)
            raise RateLimited(refusal.message) from None

    def _record_refusal(self, identity: Identity, tool: str, command: str | None,
                        host: str | None, arguments: object, error: Exception | str,
                        decision: Decision | None) -> Refusal:
        if isinstance(error, RateLimited) and not self.audit.limited(identity):
            self.recorder.refused("rate_limit")  # the window's `limited` record counts it
            return Refusal(True, str(error))
        call = self.audit.new_call_id()
        message = str(error)
        parameters: object = arguments
        if isinstance(error, RateLimited):
            # What a flood sends is not worth keeping, only recognising.
            outcome, parameters = "limited", summary(arguments, preview=False)
        else:
            outcome = _outcome(error) if isinstance(error, Exception) else "invalid"
        self._write(CallStart(call, identity, tool, command, host, parameters, decision))
        self._write(CallEnd(call, identity, outcome, error=message[:500]))
        # Labels from a fixed set only: a refused call's tool name may be anything.
        self.recorder.call_finished(tool=UNKNOWN,
                                    command=command if command and command in self.catalog
                                    else UNKNOWN,
                                    host=self._host_label(host), outcome=outcome, seconds=None)
        log.warning("%s: %s %s: %s", identity.display, _short(command or tool), outcome,
                    _short(message))
        return Refusal(outcome == "limited", message)

    def not_run(self, call: Preparation, fanout: FanoutPart, reason: str) -> None:
        """Record a fan-out's host that was not run (a canary or a batch before it failed):
        its start record, as prepared, and an end record `not-run` with the reason."""
        start = CallStart.of(self.audit.new_call_id(), call, tool=fan_out.TOOL, fanout=fanout)
        self._write(start)
        self._write(CallEnd(start.call, call.identity, "not-run", error=reason[:500]))
        self.recorder.call_finished(
            tool=fan_out.TOOL,
            command=start.command if start.command and start.command in self.catalog
            else UNKNOWN,
            host=self._host_label(start.host), outcome="not-run", seconds=None)

    async def run_many(
        self, command_names: Sequence[str], *, host: str | None, identity: Identity,
        tool: str = UNKNOWN,
    ) -> list[CommandResult]:
        """Run several parameterless commands concurrently on one host's connection."""
        return await fan_out.together(self.run(name, {}, host=host, identity=identity, tool=tool)
                                      for name in command_names)

    def plan_fanout(self, command_name: str, arguments: Mapping[str, object],
                    selectors: Sequence[str], identity: Identity,
                    strategy: StrategyRequest | None = None,
                    filter_expression: str | None = None) -> fan_out.FanoutPlan:
        """A run_on_hosts call prepared: every host it names, each host's prepared call, the
        strategy it runs by, what its one confirmation asks and its filter, checked
        (fanout.py)."""
        return fan_out.plan(self, command_name, arguments, selectors, identity, strategy,
                            filter_expression)

    async def run_on_hosts(self, command_name: str, arguments: Mapping[str, object],
                           selectors: Sequence[str], *, identity: Identity,
                           confirm: Confirm | None = None,
                           progress: fan_out.Progress | None = None,
                           strategy: StrategyRequest | None = None,
                           filter_expression: str | None = None) -> fan_out.FanoutResult:
        """Plan and execute a fan-out, for a front end with nothing to show first."""
        return await self.execute_fanout(
            self.plan_fanout(command_name, arguments, selectors, identity, strategy,
                             filter_expression),
            confirm=confirm, progress=progress)

    async def execute_fanout(self, plan: fan_out.FanoutPlan, *, confirm: Confirm | None = None,
                             progress: fan_out.Progress | None = None) -> fan_out.FanoutResult:
        """One command on the hosts of `plan`, batch by batch as its strategy says, each
        host's prepared call through `execute` (fanout.py)."""
        return await fan_out.run_on_hosts(self, plan, confirm=confirm, progress=progress)

    async def read_output(self, identity: Identity, handle: str, *, offset: int = 0,
                          max_bytes: int = 64 * 1024, stream: str = "stdout") -> Page:
        """A page of a kept output (outputs.py). Reading is like calling: each page takes a
        token of the caller's rate, and the audit log records the reads of a handle once
        per caller and PAGE_RECORD_WINDOW (a reader of a big output takes hundreds of
        pages, a record each would flood the log). Raises RateLimited / UnknownOutput."""
        try:
            self.rate.take(identity)
        except RateLimited:
            if self.audit.limited(identity):
                self._record_page(identity, handle, offset, stream, outcome="limited")
            raise
        try:
            page = await asyncio.to_thread(self.outputs.read, identity, handle, offset=offset,
                                           max_bytes=max_bytes, stream=stream)
        except UnknownOutput as exc:
            self._record_page(identity, handle, offset, stream, outcome="refused",
                              error=str(exc))
            raise
        self._record_page(identity, handle, offset, stream, outcome="read", page=page)
        return page

    def _record_page(self, identity: Identity, handle: str, offset: int, stream: str, *,
                     outcome: str, page: Page | None = None, error: str | None = None) -> None:
        now = time.monotonic()
        key = (identity.key, handle[:40], outcome)
        if now - self._page_records.get(key, -PAGE_RECORD_WINDOW) < PAGE_RECORD_WINDOW:
            return
        for old in [k for k, t in self._page_records.items() if now - t >= PAGE_RECORD_WINDOW]:
            del self._page_records[old]
        self._page_records[key] = now
        call = self.audit.new_call_id()
        self.audit.start(call, identity, tool="read_output",
                         command=page.command if page else None, host=page.host if page else None,
                         parameters={"handle": handle[:40], "offset": offset, "stream": stream},
                         decision=None)
        self.audit.end(call, identity, outcome=outcome,
                       **({"bytes_out": len(page.text.encode()),
                           "note": f"further reads of this handle within "
                                   f"{PAGE_RECORD_WINDOW:g} s are not recorded one by one"}
                          if page else {"error": (error or outcome)[:500]}))

    async def status(self, identity: Identity) -> dict[str, Any]:
        """The agent's state as this caller may see it: their hosts, their commands."""
        tailnet = await self.tailnet_status() if self.tailnet_status else {"mode": self.mode}
        visible = set(self.visible_hosts(identity))
        hosts = await self.pool.connection_status()
        default = self.hosts.default
        status: dict[str, Any] = {
            "mode": self.mode,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "catalog_commands": len(self.visible_commands(identity)),
            "default_host": default if default in visible else None,
            "hosts": {name: state for name, state in hosts.items() if name in visible},
            "tailnet": tailnet,
        }
        if identity.is_operator:
            status["policy"] = self.policy.source
            status["audit"] = {"path": str(self.audit.path), "budget_bytes": self.audit.budget,
                               "files_removed_for_budget": self.audit.removed,
                               "signed": self.audit.signer is not None}
            if self.shipper is not None:
                status["audit"]["shipping"] = dataclasses.asdict(self.shipper.status())
            status["ssh_connections"] = dict(self.pool.connections())
        return status


def _short(exc: BaseException | str) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
