"""What the person at the page reads when the Anthropic API fails: one line, and what
to do next."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import anthropic


def api_error_message(exc: Exception, base_url: str | None) -> str:
    import anthropic

    where = f"the Anthropic API at {base_url}" if base_url else "the Anthropic API"
    if isinstance(exc, anthropic.AuthenticationError):
        return (f"{where} refused the API key (401). Check ANTHROPIC_API_KEY and restart "
                "the agent.")
    if isinstance(exc, anthropic.PermissionDeniedError):
        return f"{where} refused this request (403): the key may not have access to this model."
    if isinstance(exc, anthropic.RateLimitError):
        return (f"{where} is rate-limiting this key (429), even after retries. Wait a minute, "
                "then ask again.")
    if isinstance(exc, anthropic.OverloadedError):
        return (f"{where} is overloaded (529) and stayed so after retries. Try again in a "
                "little while.")
    if isinstance(exc, anthropic.NotFoundError):
        return (f"{where} answered 404: is ANTHROPIC_MODEL a model this key can use, and "
                "ANTHROPIC_BASE_URL right?")
    if isinstance(exc, anthropic.APIStatusError):
        return f"{where} answered HTTP {exc.status_code}: {_api_message(exc)}"
    if isinstance(exc, anthropic.APITimeoutError):
        return f"{where} did not answer in time. Check the network and ask again."
    if isinstance(exc, anthropic.APIConnectionError):
        return (f"could not reach {where}: {exc}. Check the network (and ANTHROPIC_BASE_URL "
                "if set), then ask again.")
    return f"asking Claude failed: {type(exc).__name__}: {exc}"


def _api_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(exc.message)
