"""Where the agent's messages go: log records on stderr (text or JSON lines), and the
lines meant for the person watching (progress, the start-up banner).

`--log-format json` (TAILNET_AGENT_LOG_FORMAT=json) is for log shippers: every record
is one JSON object on one line of stderr, with `time`, `level`, `logger`, `message`,
and `identity`, `host`, `command`, `tool`, `outcome` when the code that logged knows
them (passed as `extra=`). In that mode the console lines (`say`) become records
too, so stderr carries nothing but JSON and stdout stays empty.

Known secret values (auth key, API key, key passphrases) are replaced by
`[REDACTED]` in every record, whatever its format, exception text included.
Leaf module: imports nothing from the agent.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

REDACTED = "[REDACTED]"
# Attributes a log call may set with `extra=` that JSON records carry as fields.
CONTEXT_FIELDS = ("identity", "host", "command", "tool", "outcome", "call")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

console = logging.getLogger("tailnet_agent.console")
_json_mode = False
_handler: logging.Handler | None = None


class _Redacting(logging.Formatter):
    def __init__(self, fmt: str | None, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        # Only values long enough to be secrets: hiding "a" would mangle every line.
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


class TextFormatter(_Redacting):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(TEXT_FORMAT, secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(_Redacting):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(None, secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = self.redact(str(value))
        if record.exc_info:
            entry["error"] = self.redact(self.formatException(record.exc_info))
        # ASCII: a value holding U+2028 or a newline stays on this record's line.
        return json.dumps(entry, ensure_ascii=True)


def configure(verbose: int, fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Log to stderr in `fmt`; -v shows INFO, -vv DEBUG and tailscaled's own log."""
    global _json_mode, _handler
    _json_mode = fmt == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if _json_mode else TextFormatter(secrets))
    root = logging.getLogger()
    if _handler is not None:  # called again once the settings (and their secrets) are known
        root.removeHandler(_handler)
    _handler = handler
    root.addHandler(handler)
    root.setLevel(logging.WARNING if verbose == 0 else logging.INFO if verbose == 1
                  else logging.DEBUG)
    # Tool calls are always worth a line: who ran what, where.
    logging.getLogger("tailnet_agent.calls").setLevel(logging.INFO)
    console.setLevel(logging.INFO)
    if verbose < 2:
        logging.getLogger("tailscale_userspace.tailscaled").setLevel(logging.INFO)
        # one line per LocalAPI poll and WhoIs is noise below -vv
        logging.getLogger("httpx").setLevel(logging.WARNING)


def json_mode() -> bool:
    return _json_mode


def say(line: str) -> None:
    """A line for the person watching: stdout as text, or a record in JSON mode."""
    if _json_mode:
        # The line itself is the record's message (no arguments, so no %-formatting):
        # the log flood limiter (agent.web.log_limit) keys on the message, and every
        # console line would be one kind under a "%s" template, the banner cut after 5.
        console.info(line)
    else:
        print(line, flush=True)
