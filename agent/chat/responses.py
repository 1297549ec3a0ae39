"""The chat's responses: its strict security headers, HTML, and the refusal of a
request that did not come from the page itself."""

from __future__ import annotations

from starlette.responses import HTMLResponse, Response

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def html(content: str, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return HTMLResponse(content, status_code, headers={**SECURITY_HEADERS, **(headers or {})})


def no_content(headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=204, headers={**SECURITY_HEADERS, **(headers or {})})


def forbidden() -> Response:
    return Response(
        "403 Forbidden: this request did not come from the chat page itself "
        "(cross-site or without the page's token), so it was refused. Reload the page and "
        "use its controls.\n",
        status_code=403,
        media_type="text/plain",
        headers=SECURITY_HEADERS,
    )
