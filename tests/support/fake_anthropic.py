"""A scripted Anthropic Messages API on 127.0.0.1, for tests that must not reach the internet.

It speaks the wire format the `anthropic` SDK expects: `POST /v1/messages`, with
`stream: true` a `text/event-stream` of message_start, content_block_start /
content_block_delta (text_delta, input_json_delta in several partial_json
chunks) / content_block_stop, message_delta (stop_reason, usage) and
message_stop, each with its `event:` name; without `stream`, one JSON message.
Errors come back with the API's JSON error body and status.

A script is a list of `Step`s. For each request the first step whose `when`
matches the last user message (its text, or the content of its tool_result
blocks) and that has uses left answers it:

    FakeAnthropic([
        Step(when="disk", reply=[ToolUse("check_disk", {})]),
        Step(when="Filesystem", reply=[Text(lambda req: "Here: " + last_tool_output(req))]),
    ])

Every request is recorded (`.requests`) so a test can check what the model was sent.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.waiting import wait_until_sync

Request_ = dict[str, Any]


@dataclass(frozen=True)
class Text:
    text: str | Callable[[Request_], str]
    chunk: int = 7  # characters per text_delta
    # Streaming stops after `hold_after` deltas until the test sets `hold`: a test can
    # look at (or reload) a page in the middle of an answer, as long as it likes.
    hold: threading.Event | None = None
    hold_after: int = 0

    def resolve(self, request: Request_) -> str:
        return self.text(request) if callable(self.text) else self.text


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any] | Callable[[Request_], dict[str, Any]]

    def resolve(self, request: Request_) -> dict[str, Any]:
        return self.input(request) if callable(self.input) else self.input


@dataclass(frozen=True)
class ApiError:
    status: int  # 429, 529, 401, ...
    type: str  # rate_limit_error, overloaded_error, authentication_error, ...
    message: str
    retry_after: float | None = None


Block = Text | ToolUse


@dataclass
class Step:
    reply: list[Block] | ApiError
    when: str = ""  # case-insensitive substring of the last user message; "" matches all
    times: int | None = None  # uses left; None: unlimited

    def matches(self, request: Request_) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        return self.when.lower() in last_user_text(request).lower()


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or []:
        if block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            parts.append(_content_text(block.get("content", "")))
    return "\n".join(parts)


def last_user_text(request: Request_) -> str:
    for message in reversed(request.get("messages", [])):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def tool_results(request: Request_) -> list[dict[str, Any]]:
    """Every tool_result block the model was sent in this request, oldest first."""
    return [
        block
        for message in request.get("messages", [])
        if message.get("role") == "user" and isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


def last_tool_output(request: Request_) -> str:
    """The stdout of the newest tool_result (our tools return JSON with a stdout key)."""
    results = tool_results(request)
    if not results:
        return ""
    text = _content_text(results[-1].get("content", ""))
    try:
        data = json.loads(text)
    except ValueError:
        return text
    return str(data.get("stdout", text)) if isinstance(data, dict) else text


def _usage(request: Request_) -> int:
    return max(1, len(json.dumps(request.get("messages", []))) // 4)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _held(gate: threading.Event) -> None:
    while not gate.is_set():  # noqa: ASYNC110 - a threading.Event, set from the test's thread
        await asyncio.sleep(0.01)


class FakeAnthropic:
    def __init__(self, script: list[Step], *, delay: float = 0.0) -> None:
        self.script = script
        self.delay = delay  # seconds between stream events, to make streaming observable
        self.requests: list[Request_] = []
        self.headers: list[dict[str, str]] = []
        # (time.time(), event type) of every streamed event, as it was handed to the server
        self.sent: list[tuple[float, str]] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the API -------------------------------------------------------------------------

    def _step(self, request: Request_) -> Step:
        for step in self.script:
            if step.matches(request):
                if step.times is not None:
                    step.times -= 1
                return step
        raise LookupError(f"no scripted step matches: {last_user_text(request)[:200]!r}")

    async def _messages(self, http: Request) -> Response:
        if "x-api-key" not in http.headers and "authorization" not in http.headers:
            return self._error(ApiError(401, "authentication_error",
                                        "x-api-key header is required"))
        try:
            request: Request_ = await http.json()
        except ClientDisconnect:  # the client gave up mid-request (a chat turn was stopped)
            return Response(status_code=499)
        self.requests.append(request)
        self.headers.append(dict(http.headers))
        try:
            step = self._step(request)
        except LookupError as exc:
            return self._error(ApiError(400, "invalid_request_error", str(exc)))
        if isinstance(step.reply, ApiError):
            return self._error(step.reply)
        blocks = [self._content(b, request) for b in step.reply]
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        message = {
            "id": "msg_" + secrets.token_hex(12),
            "type": "message",
            "role": "assistant",
            "model": request.get("model", "claude-fake"),
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": _usage(request), "output_tokens": 1},
        }
        headers = {"request-id": "req_" + secrets.token_hex(8)}
        if not request.get("stream"):
            out = sum(len(json.dumps(b)) // 4 for b in blocks)
            message["usage"] = {"input_tokens": _usage(request), "output_tokens": out}
            return JSONResponse(message, headers=headers)
        return StreamingResponse(
            self._stream(message, step.reply, blocks),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )

    def _content(self, block: Block, request: Request_) -> dict[str, Any]:
        if isinstance(block, Text):
            return {"type": "text", "text": block.resolve(request)}
        return {"type": "tool_use", "id": "toolu_" + secrets.token_hex(12), "name": block.name,
                "input": block.resolve(request)}

    async def _stream(self, message: dict[str, Any], script: list[Block],
                      blocks: list[dict[str, Any]]) -> Any:
        async for event in self._events(message, script, blocks):
            self.sent.append((time.time(), event.split(b"\n", 1)[0][7:].decode()))
            yield event

    async def _events(self, message: dict[str, Any], script: list[Block],
                      blocks: list[dict[str, Any]]) -> Any:
        start = {**message, "content": [], "stop_reason": None}
        yield _sse("message_start", {"type": "message_start", "message": start})
        yield _sse("ping", {"type": "ping"})
        output_tokens = 0
        for index, (spec, block) in enumerate(zip(script, blocks, strict=True)):
            if block["type"] == "text":
                yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}})
                chunk = spec.chunk if isinstance(spec, Text) else 7
                for number, piece in enumerate(_pieces(block["text"], chunk)):
                    if isinstance(spec, Text) and spec.hold is not None and \
                            number == spec.hold_after:
                        await _held(spec.hold)
                    await asyncio.sleep(self.delay)
                    output_tokens += 1
                    yield _sse("content_block_delta", {
                        "type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": piece}})
            else:
                yield _sse("content_block_start", {
                    "type": "content_block_start", "index": index,
                    "content_block": {**block, "input": {}}})
                encoded = json.dumps(block["input"])
                # Split the JSON at arbitrary points, as the API does.
                for piece in _pieces(encoded, max(1, len(encoded) // 3 + 1)):
                    await asyncio.sleep(self.delay)
                    output_tokens += 1
                    yield _sse("content_block_delta", {
                        "type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece}})
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield _sse("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": max(1, output_tokens)}})
        yield _sse("message_stop", {"type": "message_stop"})

    def _error(self, error: ApiError) -> Response:
        headers = {"request-id": "req_" + secrets.token_hex(8)}
        if error.retry_after is not None:
            headers["retry-after"] = str(error.retry_after)
        # The SDK reads this header to decide whether to retry; the API sends it too.
        headers["x-should-retry"] = "true" if error.status in (408, 409, 429, 529) or \
            error.status >= 500 else "false"
        body = {"type": "error", "error": {"type": error.type, "message": error.message},
                "request_id": headers["request-id"]}
        return JSONResponse(body, status_code=error.status, headers=headers)

    # -- lifecycle -----------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])

    def start(self) -> FakeAnthropic:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        server = self._server
        wait_until_sync(lambda: server.started, 10, "the fake Anthropic API started")
        return self

    def stop(self) -> None:
        for step in self.script:  # a held stream would keep the server from stopping
            for block in step.reply if isinstance(step.reply, list) else ():
                if isinstance(block, Text) and block.hold is not None:
                    block.hold.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pieces(text: str, size: int) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i:i + size]


__all__ = [
    "ApiError",
    "FakeAnthropic",
    "Step",
    "Text",
    "ToolUse",
    "last_tool_output",
    "last_user_text",
    "tool_results",
]
