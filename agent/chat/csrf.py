"""CSRF protection for the chat's POSTs.

Browsers send `Sec-Fetch-Site` on every request they make; a form or fetch from
another site says `cross-site` (or `same-site` for a sibling subdomain) and we
refuse it. Old browsers that omit the header must echo the page's token, which
another origin cannot read.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

TOKEN_HEADER = "X-Chat-Token"  # noqa: S105 - a header name, not a secret
TOKEN_FIELD = "chat_token"  # noqa: S105 - a form field name


async def same_origin(request: Request, token: str) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        # "none" is a user typing the URL or a bookmark: never a POST from a page.
        return site == "same-origin"
    sent = request.headers.get(TOKEN_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(TOKEN_FIELD)
        sent = value if isinstance(value, str) else None
    return sent is not None and hmac.compare_digest(sent.encode(), token.encode())
