"""Request bodies over a per-path limit get 413 with a message, chunked ones included."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Beyond this many bytes of an oversized body we stop reading and close the connection.
DRAIN_LIMIT = 16 * 1024 * 1024


class BodyLimitMiddleware:
    """Refuse request bodies over a per-path-prefix limit with 413 and a message.

    Checks Content-Length up front and counts the bytes of chunked bodies as they
    arrive, so a client cannot get past it by leaving the header out.
    """

    def __init__(self, app: ASGIApp, limits: Sequence[tuple[str, int]], default: int) -> None:
        self.app = app
        self.limits = sorted(limits, key=lambda item: len(item[0]), reverse=True)
        self.default = default

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.default

    async def _refuse(self, send: Send, limit: int) -> None:
        body = (f"413 Request Entity Too Large: this endpoint accepts at most {limit} bytes "
                "per request body; send less.\n").encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def _drain(self, receive: Receive, received: int) -> None:
        """Read (and drop) the rest of a body sent without Content-Length, up to a bound.

        A client still sending when we answer would see a reset instead of our 413.
        """
        while received < DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            received += len(message.get("body", b""))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(send, limit)
                    return
        # Read the whole body first (it is small by definition), so the app never
        # sees part of an oversized request and cannot turn the refusal into its own error.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await self._drain(receive, received)
                await self._refuse(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
