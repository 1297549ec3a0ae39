"""Server-sent events framing (https://html.spec.whatwg.org/#server-sent-events)."""

from __future__ import annotations


def sse_message(event: str, data: str) -> bytes:
    # A newline inside data would end the field: each line goes in its own data field,
    # and the browser joins them back with "\n".
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    body = "".join(f"data: {line}\n" for line in lines)
    return f"event: {event}\n{body}\n".encode()
