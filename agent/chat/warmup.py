"""The anthropic SDK made ready in the background, so the first turn does not wait for it.

The SDK is imported lazily (it costs ~45 MiB, and an agent without an API key never
needs it), but a first turn would then spend about a second importing it and another
~0.2 s building the SDK's response types on its first stream. With a key configured,
the chat starts this warm-up when the app is built: a background thread imports the
SDK and runs one canned stream through it over an in-memory transport (no network),
so the first real stream finds everything built. The server announces "Ready." only
once the warm-up is over (`settled`), so a question asked right then does not wait for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import json
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_warm: concurrent.futures.Future[bool] | None = None


def start() -> concurrent.futures.Future[bool]:
    """Start the warm-up once per process; the future is done when it has finished, with
    True if the canned stream went through the SDK (False: only the import, or not even
    that; a turn then does the rest itself)."""
    global _warm
    with _lock:
        if _warm is None:
            _warm = concurrent.futures.Future()
            # Running from now on: a waiter that is cancelled (a stopped turn) cannot
            # cancel the one warm-up every later turn waits for.
            _warm.set_running_or_notify_cancel()
            threading.Thread(target=_run, args=(_warm,), name="anthropic-warm-up",
                             daemon=True).start()
        return _warm


async def ready() -> None:
    """Wait (without blocking the event loop) until the SDK is imported and warm."""
    await asyncio.shield(asyncio.wrap_future(start()))


async def settled(limit: float = 30.0) -> None:
    """Wait, at most `limit` seconds, for the warm-up if one was started (else return)."""
    with _lock:
        warm = _warm
    if warm is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(warm)), limit)


def _run(done: concurrent.futures.Future[bool]) -> None:
    streamed = False
    try:
        import anthropic  # noqa: F401 - the import is the point

        asyncio.run(_one_stream())
        streamed = True
    except Exception as exc:  # a failed warm-up only means a slower first turn
        log.info("warming the anthropic SDK up failed (the first turn will be slower): %s", exc)
    finally:
        done.set_result(streamed)


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"


CANNED_STREAM = "".join([
    _event("message_start", {"message": {
        "id": "msg_warm", "type": "message", "role": "assistant", "model": "warm-up",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1}}}),
    _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    _event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
    _event("content_block_stop", {"index": 0}),
    _event("content_block_start", {"index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_warm", "name": "ping", "input": {}}}),
    _event("content_block_delta", {"index": 1, "delta": {
        "type": "input_json_delta", "partial_json": "{}"}}),
    _event("content_block_stop", {"index": 1}),
    _event("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None},
                             "usage": {"output_tokens": 1}}),
    _event("message_stop", {}),
]).encode()


async def _one_stream() -> None:
    import anthropic

    # The HTTP library the SDK's client is built on (httpx, or httpx2 in newer SDKs), for
    # its in-memory MockTransport.
    http_library = importlib.import_module(
        anthropic.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])

    def answer(request: Any) -> Any:
        return http_library.Response(200, headers={"content-type": "text/event-stream"},
                                     content=CANNED_STREAM)

    http = anthropic.DefaultAsyncHttpxClient(transport=http_library.MockTransport(answer))
    # An address that cannot exist, so a log line of the HTTP library cannot be mistaken
    # for a call to the API: nothing leaves the process.
    client = anthropic.AsyncAnthropic(api_key="warm-up", base_url="http://sdk-warm-up.invalid",
                                      http_client=http)
    try:
        async with client.messages.stream(
            model="warm-up", max_tokens=1, system="warm-up",
            messages=[{"role": "user", "content": "warm-up"}],
            tools=[{"name": "ping", "description": "warm-up",
                    "input_schema": {"type": "object", "properties": {}}}],
        ) as stream:
            async for _ in stream:
                pass
            await stream.get_final_message()
    finally:
        await client.close()
