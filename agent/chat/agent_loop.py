"""One chat turn: Claude and our MCP tools, round after round, until Claude answers.

The tools are called through an in-process MCP client connected to the same
`MCPServer` remote clients use, so the chat takes the same checks. Everything the
page needs arrives on `ChatTurn.events`; the conversation is updated only with
consistent message lists, also when the turn fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import mcp
import mcp_types
from mcp.client.session import ClientRequestContext
from mcp.server.mcpserver import MCPServer

from agent.core.errors import ConfigError
from agent.mcp.context import IDENTITY_META_KEY
from agent.settings import DEFAULT_MODEL
from whitelist import Catalog, Command, WhitelistError

from .api_errors import api_error_message
from .cards import ToolCard, cards_for, declined_card, result_text
from .confirm_target import CONFIRMED_TOOLS, FanoutPlanner, confirmation_target
from .history import Conversation, DisplayItem, Turn
from .tooldefs import anthropic_tools

if TYPE_CHECKING:
    # Imported where a chat turn runs: the SDK costs ~45 MiB and 0.8 s at start-up, and
    # an agent without an API key never needs it.
    import anthropic

log = logging.getLogger(__name__)

# Claude reads tool output; a 1 MB log would cost a fortune and drown the answer.
MODEL_OUTPUT_LIMIT = 16_000


@dataclass(frozen=True)
class LoopOptions:
    model: str = DEFAULT_MODEL
    max_rounds: int = 8
    max_tokens: int = 2048
    overloaded_retries: int = 2  # on top of the SDK's own retries
    overloaded_backoff: float = 2.0  # seconds, doubled per attempt
    confirm_timeout: float = 600.0  # an unanswered confirmation counts as "cancel"


# Events, in the order the page shows them.
@dataclass(frozen=True)
class TextStarted:
    block: str


@dataclass(frozen=True)
class TextDelta:
    block: str
    text: str


@dataclass(frozen=True)
class TextFinished:
    block: str
    text: str


@dataclass(frozen=True)
class ConfirmNeeded:
    call: str
    tool: str
    host: str
    command: str
    rendered: str
    runs_as: str | None = None  # a `become` command: the user sudo runs it as


@dataclass(frozen=True)
class ToolStarted:
    call: str
    tool: str
    host: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolOutput:
    """Lines a running command printed (MCP progress), shown in its card as they arrive."""

    call: str
    text: str


@dataclass(frozen=True)
class ToolFinished:
    call: str
    cards: tuple[ToolCard, ...]


@dataclass(frozen=True)
class TurnFailed:
    message: str


@dataclass(frozen=True)
class TurnFinished:
    pass


Event = (
    TextStarted | TextDelta | TextFinished | ConfirmNeeded | ToolStarted | ToolOutput
    | ToolFinished | TurnFailed | TurnFinished
)


class TurnError(Exception):
    """Claude could not be asked; the message is for the person at the page."""


def _clip(text: str) -> str:
    if len(text) <= MODEL_OUTPUT_LIMIT:
        return text
    cut = len(text) - MODEL_OUTPUT_LIMIT
    return text[:MODEL_OUTPUT_LIMIT] + f"\n[... {cut} more characters not shown to the model]"


def _clip_result(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            k: _clip(v) if k in ("stdout", "stderr") and isinstance(v, str) else _clip_result(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_clip_result(v) for v in data]
    return data


def tool_result_for_model(result: mcp_types.CallToolResult) -> str:
    if result.structured_content is not None and not result.is_error:
        return json.dumps(_clip_result(result.structured_content), ensure_ascii=False)
    return _clip(result_text(result))


def identity_meta(token: str) -> mcp_types.RequestParamsMeta:
    """The call's `_meta`: names the chat user to our MCP server (agent.mcp.context.caller)."""
    return cast(mcp_types.RequestParamsMeta, {IDENTITY_META_KEY: token})


def accept_confirmation(params: mcp_types.ElicitRequestParams,
                        minutes: int = 0) -> mcp_types.ElicitResult:
    """Accept a confirmation form: every yes/no field answered yes, identical calls approved
    for the `minutes` the person chose (within the form's bound), nothing else filled in."""
    if not isinstance(params, mcp_types.ElicitRequestFormParams):
        return mcp_types.ElicitResult(action="decline")
    properties = params.requested_schema.get("properties", {})
    content: dict[str, str | int | float | bool | list[str] | None] = {
        name: True for name, spec in properties.items()
        if isinstance(spec, dict) and spec.get("type") == "boolean"
    }
    bound = properties.get("approve_minutes", {}).get("maximum")
    if minutes > 0 and isinstance(bound, int):
        content["approve_minutes"] = min(minutes, bound)
    return mcp_types.ElicitResult(action="accept", content=content)


@dataclass
class _Confirmation:
    future: asyncio.Future[bool]
    card: ConfirmNeeded


@dataclass
class ChatTurn:
    id: str
    question: str
    conversation: Conversation
    anthropic_client: anthropic.AsyncAnthropic
    mcp_server: MCPServer
    catalog: Catalog
    default_host: str | None
    system: str
    identity_token: str
    options: LoopOptions
    base_url: str | None = None
    # The tools this person may use (None: all); the policy still decides every call.
    allowed_tools: frozenset[str] | None = None
    # Does a time-limited approval cover this command line on this host? (None: never.)
    approved: Callable[[str, str], bool] | None = None
    # Who a command runs as on a host (the confirm box says "as root").
    runs_as: Callable[[Command, str], str | None] = lambda command, _host: command.runs_as()
    # Records a call refused before it reached the tools; returns what to show.
    refused: Callable[[str, dict[str, Any], str, str], str] = lambda c, a, h, e: e
    # What a run_on_hosts call would run on, for its one confirmation (this person's view).
    fanout_plan: FanoutPlanner | None = None
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    finished: bool = False
    _pending: dict[str, _Confirmation] = field(default_factory=dict)
    # The one tool call whose elicitation we may accept: set after the person's click,
    # cleared when the call returns or its first elicitation is answered.
    _confirmed_call: str | None = None
    _confirmed_minutes: int = 0  # identical calls approved for this long (0: this call only)
    _blocks: int = 0

    def _emit(self, event: Event) -> None:
        self.events.put_nowait(event)

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
        if self._confirmed_call is None:
            log.info("declined an elicitation that no click confirmed: %s", params.message)
            return mcp_types.ElicitResult(action="decline")
        self._confirmed_call = None
        return accept_confirmation(params, self._confirmed_minutes)

    async def run(self) -> None:
        turn = Turn(
            messages=[{"role": "user", "content": self.question}],
            items=[DisplayItem("user", self.question)],
        )
        try:
            await self._run(turn)
        except Exception as exc:
            # The MCP client's task group wraps what the loop raised in an ExceptionGroup.
            error = _unwrap(exc)
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
            # A client per turn: its connections belong to this event loop and end with it.
            await self.anthropic_client.close()

    def _fail(self, turn: Turn, message: str) -> None:
        close_failed_turn(turn, message)
        turn.items.append(DisplayItem("error", message))
        self._emit(TurnFailed(message))

    async def _run(self, turn: Turn) -> None:
        async with mcp.Client(
            self.mcp_server, mode="legacy", elicitation_callback=self._elicit
        ) as client:
            tools = anthropic_tools([
                t for t in (await client.list_tools()).tools
                if self.allowed_tools is None or t.name in self.allowed_tools
            ])
            for _ in range(self.options.max_rounds):
                message = await self._ask(self.conversation.messages() + turn.messages, tools)
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
                results = [await self._call(client, use, turn) for use in uses]
                turn.messages.append({"role": "user", "content": results})
        raise TurnError(
            f"Claude was still calling tools after {self.options.max_rounds} rounds, so the "
            "turn was stopped. Ask a narrower question."
        )

    async def _ask(self, messages: list[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> Any:
        import anthropic

        delay = self.options.overloaded_backoff
        attempt = 0
        while True:
            try:
                return await self._stream(messages, tools)
            except anthropic.OverloadedError as exc:
                # The SDK has retried already; overload can last longer than its backoff.
                # Text already on the page cannot be taken back, so no retry after it.
                streamed = bool(getattr(exc, "_streamed", False))
                if attempt >= self.options.overloaded_retries or streamed:
                    raise TurnError(api_error_message(exc, self.base_url)) from exc
                log.info("Anthropic API overloaded; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay *= 2
                attempt += 1
            except anthropic.APIError as exc:
                raise TurnError(api_error_message(exc, self.base_url)) from exc

    async def _stream(
        self, messages: list[dict[str, Any]], tools: Sequence[dict[str, Any]]
    ) -> Any:
        import anthropic

        blocks: dict[int, str] = {}
        texts: dict[int, list[str]] = {}
        try:
            async with self.anthropic_client.messages.stream(
                model=self.options.model,
                max_tokens=self.options.max_tokens,
                system=self.system,
                messages=messages,  # type: ignore[arg-type]
                tools=tools,  # type: ignore[arg-type]
            ) as stream:
                async for event in stream:
                    if event.type == "content_block_start" and event.content_block.type == "text":
                        self._blocks += 1
                        blocks[event.index] = f"{self.id}-t{self._blocks}"
                        texts[event.index] = []
                        self._emit(TextStarted(blocks[event.index]))
                    elif (event.type == "content_block_delta" and event.delta.type == "text_delta"
                          and event.index in blocks):
                        texts[event.index].append(event.delta.text)
                        self._emit(TextDelta(blocks[event.index], event.delta.text))
                    elif event.type == "content_block_stop" and event.index in blocks:
                        self._emit(TextFinished(blocks[event.index], "".join(texts[event.index])))
                return await stream.get_final_message()
        except anthropic.APIError as exc:
            exc._streamed = bool(blocks)  # type: ignore[attr-defined]
            raise

    async def _call(self, client: mcp.Client, use: Any, turn: Turn) -> dict[str, Any]:
        name: str = use.name
        arguments: dict[str, Any] = dict(use.input) if isinstance(use.input, dict) else {}
        host = str(arguments.get("host") or self.default_host or "")
        call = f"{self.id}-{use.id}"

        def answer(text: str, *, is_error: bool) -> dict[str, Any]:
            return {"type": "tool_result", "tool_use_id": use.id, "content": text,
                    "is_error": is_error}

        def show(cards: list[ToolCard]) -> None:
            turn.items.extend(DisplayItem("card", card=c) for c in cards)
            self._emit(ToolFinished(call, tuple(cards)))

        command_name = arguments.get("command")
        command = (self.catalog.commands.get(command_name)
                   if name in CONFIRMED_TOOLS and isinstance(command_name, str) else None)
        if command is not None and command.destructive:
            try:
                host, rendered, runnable = confirmation_target(name, command, arguments, host,
                                                               self.fanout_plan)
            except (WhitelistError, ConfigError) as exc:  # refused before the tool ran: recorded
                error = self.refused(command.name, arguments, host, str(exc))
                show([ToolCard(tool=name, host=host, command=command.name, error=error)])
                return answer(error, is_error=True)
            # A time-limited approval still running covers it: no click (the service cites it).
            confirmed = not runnable or (
                self.approved is not None and self.approved(host, rendered)) or (
                await self._confirm(ConfirmNeeded(call, name, host, command.name, rendered,
                                                  self.runs_as(command, host))))
            if not confirmed:
                show([declined_card(name, host, rendered)])
                return answer(
                    f"The user declined to run '{command.name}' ({rendered}); it did not run.",
                    is_error=True,
                )
            self._confirmed_call = call

        self._emit(ToolStarted(call, name, host, arguments))
        started = time.monotonic()
        try:
            result = await client.call_tool(
                name, arguments, meta=identity_meta(self.identity_token),
                progress_callback=lambda _p, _t, text: self._live(call, text),
            )
        except Exception as exc:  # a protocol-level failure; tool errors come as is_error
            log.warning("tool call %s failed: %s", name, exc)
            error = f"the tool call failed: {type(exc).__name__}: {exc}"
            show([ToolCard(tool=name, host=host, error=error)])
            return answer(error, is_error=True)
        finally:
            self._confirmed_call = None
        elapsed = (time.monotonic() - started) * 1000
        show(cards_for(name, result, host=host, elapsed_ms=elapsed))
        return answer(tool_result_for_model(result), is_error=result.is_error)

    async def _live(self, call: str, text: str | None) -> None:
        if text:
            self._emit(ToolOutput(call, text))

    async def _confirm(self, card: ConfirmNeeded) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[card.call] = _Confirmation(future, card)
        self._emit(card)
        try:
            return await asyncio.wait_for(future, self.options.confirm_timeout)
        except TimeoutError:
            return False
        finally:
            self._pending.pop(card.call, None)


def close_failed_turn(turn: Turn, message: str) -> None:
    """Make a turn that failed part-way a valid history to send the next question with.

    Every tool_use needs its tool_result, and roles must alternate; the closing
    assistant message also tells Claude, next time, that this question got no answer.
    """
    last = turn.messages[-1]
    if last["role"] == "assistant":
        content = last["content"]
        uses = [b["id"] for b in content if b.get("type") == "tool_use"] \
            if isinstance(content, list) else []
        if not uses:
            return  # the answer is complete; what failed came after it
        turn.messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use, "is_error": True,
             "content": f"Not run: the turn failed ({message})."}
            for use in uses
        ]})
    turn.messages.append({"role": "assistant", "content": f"(No answer: {message})"})


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
