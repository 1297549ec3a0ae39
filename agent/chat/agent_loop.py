"""One chat turn: Claude and our MCP tools, round after round, until Claude answers.

The tools are called through an in-process MCP client connected to the same
`MCPServer` remote clients use, so the chat takes the same checks. Everything the
page needs goes to `ChatTurn.log` (agent.chat.events); the conversation is updated
only with consistent message lists, also when the turn fails or is stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mcp
import mcp_types
from mcp.client.session import ClientRequestContext
from mcp.server.mcpserver import MCPServer

from agent.mcp.confirm import selector_list
from agent.settings import DEFAULT_MODEL

from .api_errors import api_error_message
from .cards import ToolCard, cards_for, declined_card
from .confirm_target import CONFIRMED_TOOLS, Target, ToolPreparer, target
from .events import (
    ConfirmNeeded,
    Event,
    EventLog,
    TextDelta,
    TextFinished,
    TextStarted,
    ToolFinished,
    ToolOutput,
    ToolStarted,
    TurnFailed,
    TurnFinished,
    TurnStopped,
)
from .history import Conversation, DisplayItem, Turn, close_failed_turn
from .mcp_calls import accept_confirmation, identity_meta, tool_result_for_model
from .tooldefs import anthropic_tools

if TYPE_CHECKING:
    # Imported where a chat turn runs (and warmed in the background when a key is set,
    # agent/chat/warmup.py): the SDK costs ~45 MiB, and an agent without a key never
    # needs it.
    import anthropic

log = logging.getLogger(__name__)

ClientFactory = Callable[[], Awaitable["anthropic.AsyncAnthropic"]]


@dataclass(frozen=True)
class LoopOptions:
    model: str = DEFAULT_MODEL
    max_rounds: int = 8
    max_tokens: int = 2048
    overloaded_retries: int = 2  # on top of the SDK's own retries
    overloaded_backoff: float = 2.0  # seconds, doubled per attempt
    confirm_timeout: float = 600.0  # an unanswered confirmation counts as "cancel"


class TurnError(Exception):
    """Claude could not be asked; the message is for the person at the page."""


class _StreamBroke(Exception):
    """The Messages API failed during a stream: the SDK's error, and whether text had
    already reached the page (then the turn is not retried)."""

    def __init__(self, error: Exception, streamed: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.streamed = streamed


@dataclass
class _Confirmation:
    future: asyncio.Future[bool]
    card: ConfirmNeeded


@dataclass
class ChatTurn:
    id: str
    question: str
    conversation: Conversation
    # The Anthropic client to ask with (the app's one client, shared by turns).
    anthropic_client: ClientFactory
    mcp_server: MCPServer
    default_host: str | None
    system: str
    identity_token: str
    options: LoopOptions
    base_url: str | None = None
    # The tools this person may use (None: all); the policy still decides every call.
    allowed_tools: frozenset[str] | None = None
    # Prepares an execute_command or run_on_hosts call as the service will (this person's
    # view): what its confirm box shows, and whether it asks at all. None: never asks.
    prepare: ToolPreparer | None = None
    log: EventLog = field(default_factory=EventLog)
    finished: bool = False
    started: float = field(default_factory=time.time)
    _pending: dict[str, _Confirmation] = field(default_factory=dict)
    # The question the person's click answered: the one elicitation we may accept, and
    # only if it asks exactly this (the call prepared again must be the call confirmed).
    # Cleared when the call returns or its first elicitation is answered.
    _confirmed_question: str | None = None
    _confirmed_minutes: int = 0  # identical calls approved for this long (0: this call only)
    _blocks: int = 0
    # What a stop has to close: text blocks still streaming, the call in progress and
    # the results of this round's calls that already came back.
    _open_texts: dict[str, list[str]] = field(default_factory=dict)
    _active: ConfirmNeeded | ToolStarted | None = None
    _round_results: list[dict[str, Any]] = field(default_factory=list)

    def _emit(self, event: Event) -> None:
        self.log.append(event)

    def decide(self, call: str, confirmed: bool, minutes: int = 0) -> ConfirmNeeded | None:
        """The person clicked confirm or cancel; returns the card, or None if not pending."""
        pending = self._pending.get(call)
        if pending is None or pending.future.done():
            return None
        self._confirmed_minutes = minutes if confirmed else 0
        pending.future.set_result(confirmed)
        return pending.card

    async def _elicit(
        self, context: ClientRequestContext, params: mcp_types.ElicitRequestParams
    ) -> mcp_types.ElicitResult:
        question, self._confirmed_question = self._confirmed_question, None
        if question is None or params.message != question:
            log.info("declined an elicitation that no click confirmed: %s", params.message)
            return mcp_types.ElicitResult(action="decline")
        return accept_confirmation(params, self._confirmed_minutes)

    async def run(self) -> None:
        turn = Turn(
            id=self.id,
            messages=[{"role": "user", "content": self.question}],
            items=[DisplayItem("user", self.question)],
        )
        try:
            await self._run(turn, await self.anthropic_client())
        except BaseException as exc:
            # The MCP client's task group wraps what the loop raised in an ExceptionGroup.
            error = _unwrap(exc)
            if isinstance(error, asyncio.CancelledError):
                self._stopped(turn)
                raise
            if not isinstance(error, Exception):
                raise
            if isinstance(error, TurnError):
                self._fail(turn, str(error))
            else:
                log.error("chat turn %s failed", self.id, exc_info=error)
                self._fail(turn, f"the chat failed unexpectedly: {type(error).__name__}: "
                                 f"{error}. The agent's log has the details.")
        finally:
            self.conversation.add(turn)
            self.finished = True
            self._emit(TurnFinished())

    def _fail(self, turn: Turn, message: str) -> None:
        close_failed_turn(turn, message, self._round_results)
        turn.items.append(DisplayItem("error", message))
        self._emit(TurnFailed(message))

    def _stopped(self, turn: Turn) -> None:
        """The person pressed Stop (or started a new chat): close what was open."""
        for block, parts in self._open_texts.items():
            text = "".join(parts)
            self._emit(TextFinished(block, text))
            if text:
                turn.items.append(DisplayItem("assistant", text))
        self._open_texts.clear()
        active, self._active = self._active, None
        message = "You stopped this turn."
        if isinstance(active, ConfirmNeeded):
            card = declined_card(active.tool, active.host, active.rendered,
                                 command=active.command, stopped=True)
            self._show(turn, active.call, [card])
        elif isinstance(active, ToolStarted):
            card = ToolCard(tool=active.tool, host=active.host, command=active.label,
                            rendered=active.rendered, stopped=True,
                            error="Stopped while it ran: the command was cancelled.")
            self._show(turn, active.call, [card])
            message += " The command it was running was cancelled."
        close_failed_turn(turn, "the person stopped this turn", self._round_results)
        turn.items.append(DisplayItem("notice", message))
        self._emit(TurnStopped(message))

    def _show(self, turn: Turn, call: str, cards: list[ToolCard]) -> None:
        turn.items.extend(DisplayItem("card", card=c) for c in cards)
        self._emit(ToolFinished(call, tuple(cards)))

    async def _run(self, turn: Turn, client: anthropic.AsyncAnthropic) -> None:
        async with mcp.Client(
            self.mcp_server, mode="legacy", elicitation_callback=self._elicit
        ) as tools_client:
            tools = anthropic_tools([
                t for t in (await tools_client.list_tools()).tools
                if self.allowed_tools is None or t.name in self.allowed_tools
            ])
            for _ in range(self.options.max_rounds):
                message = await self._ask(client, self.conversation.messages() + turn.messages,
                                          tools)
                wants_tools = message.stop_reason == "tool_use"
                # A tool_use cut off by max_tokens is incomplete and would stay without
                # its tool_result: keep it out of the history.
                content = [_block_param(b) for b in message.content
                           if wants_tools or b.type != "tool_use"]
                turn.messages.append(
                    {"role": "assistant", "content": content or "(empty answer)"}
                )
                for block in message.content:
                    if block.type == "text" and block.text:
                        turn.items.append(DisplayItem("assistant", block.text))
                uses = [b for b in message.content if b.type == "tool_use"]
                if not wants_tools or not uses:
                    return
                self._round_results = []
                for use in uses:
                    self._round_results.append(await self._call(tools_client, use, turn))
                turn.messages.append({"role": "user", "content": self._round_results})
                self._round_results = []
        raise TurnError(
            f"Claude was still calling tools after {self.options.max_rounds} rounds, so the "
            "turn was stopped. Ask a narrower question."
        )

    async def _ask(self, client: anthropic.AsyncAnthropic, messages: list[dict[str, Any]],
                   tools: Sequence[dict[str, Any]]) -> Any:
        import anthropic

        delay = self.options.overloaded_backoff
        attempt = 0
        while True:
            try:
                return await self._stream(client, messages, tools)
            except _StreamBroke as broke:
                exc = broke.error
                # The SDK has retried already; overload can last longer than its backoff.
                # Text already on the page cannot be taken back, so no retry after it.
                if (not isinstance(exc, anthropic.OverloadedError) or broke.streamed
                        or attempt >= self.options.overloaded_retries):
                    raise TurnError(api_error_message(exc, self.base_url)) from exc
                log.info("Anthropic API overloaded; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay *= 2
                attempt += 1

    async def _stream(self, client: anthropic.AsyncAnthropic, messages: list[dict[str, Any]],
                      tools: Sequence[dict[str, Any]]) -> Any:
        import anthropic

        blocks: dict[int, str] = {}
        try:
            async with client.messages.stream(
                model=self.options.model,
                max_tokens=self.options.max_tokens,
                system=self.system,
                messages=messages,  # type: ignore[arg-type]
                tools=tools,  # type: ignore[arg-type]
            ) as stream:
                async for event in stream:
                    if event.type == "content_block_start" and event.content_block.type == "text":
                        self._blocks += 1
                        block = blocks[event.index] = f"{self.id}-t{self._blocks}"
                        self._open_texts[block] = []
                        self._emit(TextStarted(block))
                    elif (event.type == "content_block_delta" and event.delta.type == "text_delta"
                          and event.index in blocks):
                        self._open_texts[blocks[event.index]].append(event.delta.text)
                        self._emit(TextDelta(blocks[event.index], event.delta.text))
                    elif event.type == "content_block_stop" and event.index in blocks:
                        block = blocks[event.index]
                        text = "".join(self._open_texts.pop(block, []))
                        self._emit(TextFinished(block, text))
                return await stream.get_final_message()
        except anthropic.APIError as exc:
            # What streamed before the error stays on the page, as it was.
            for block in [b for b in blocks.values() if b in self._open_texts]:
                self._emit(TextFinished(block, "".join(self._open_texts.pop(block))))
            raise _StreamBroke(exc, streamed=bool(blocks)) from exc

    async def _call(self, client: mcp.Client, use: Any, turn: Turn) -> dict[str, Any]:
        name: str = use.name
        arguments: dict[str, Any] = dict(use.input) if isinstance(use.input, dict) else {}
        host = str(arguments.get("host") or self.default_host or "")
        call = f"{self.id}-{use.id}"

        def answer(text: str, *, is_error: bool) -> dict[str, Any]:
            self._active = None
            return {"type": "tool_result", "tool_use_id": use.id, "content": text,
                    "is_error": is_error}

        if name == "run_on_hosts":  # the hosts asked for, until the plan names them
            host = ", ".join(selector_list(arguments.get("hosts") or []))
        command_name = str(arguments.get("command") or "")
        preparation = (self.prepare(name, arguments)
                       if self.prepare is not None and name in CONFIRMED_TOOLS else None)
        shown = (target(preparation, host) if preparation is not None
                 else Target(host, "", None, None))
        host, rendered = shown.host, shown.rendered
        if shown.question is not None:
            # A call that cannot run, one a time-limited approval covers and one a second
            # person must approve need no click; the service says why, or cites, or waits.
            confirmed = await self._confirm(ConfirmNeeded(call, name, host, command_name,
                                                          rendered, shown.runs_as,
                                                          shown.hosts, shown.strategy))
            if not confirmed:
                self._show(turn, call, [declined_card(name, host, rendered,
                                                      command=command_name)])
                return answer(
                    f"The user declined to run '{command_name}' ({rendered}); it did not run.",
                    is_error=True,
                )
            self._confirmed_question = shown.question

        started_event = self._active = ToolStarted(call, name, host, arguments, rendered)
        self._emit(started_event)
        started = time.monotonic()
        try:
            result = await client.call_tool(
                name, arguments, meta=identity_meta(self.identity_token),
                progress_callback=lambda _p, _t, text: self._live(call, text),
            )
        except Exception as exc:  # a protocol-level failure; tool errors come as is_error
            log.warning("tool call %s failed: %s", name, exc)
            error = f"the tool call failed: {type(exc).__name__}: {exc}"
            self._show(turn, call, [ToolCard(tool=name, host=host, error=error)])
            return answer(error, is_error=True)
        finally:
            self._confirmed_question = None
        elapsed = (time.monotonic() - started) * 1000
        self._show(turn, call, cards_for(name, result, host=host, elapsed_ms=elapsed))
        return answer(tool_result_for_model(result), is_error=result.is_error)

    async def _live(self, call: str, text: str | None) -> None:
        if text:
            self._emit(ToolOutput(call, text))

    async def _confirm(self, card: ConfirmNeeded) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[card.call] = _Confirmation(future, card)
        self._active = card
        self._emit(card)
        try:
            return await asyncio.wait_for(future, self.options.confirm_timeout)
        except TimeoutError:
            return False
        finally:
            self._pending.pop(card.call, None)


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _block_param(block: Any) -> dict[str, Any]:
    """A response content block as a request content block (only the fields the API takes)."""
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    data: dict[str, Any] = block.model_dump(exclude_none=True)
    return data
