"""Where the agent's messages go: log records on stderr (text or JSON lines), and the
lines meant for the person watching (progress, the start-up banner).

`--log-format json` (TAILNET_AGENT_LOG_FORMAT=json) is for log shippers: every record
is one JSON object on one line of stderr, with `time`, `level`, `logger`, `message`,
and `identity`, `host`, `command`, `tool`, `outcome`, `call`, `fanout` when the code that
logged knows them (passed as `extra=`). In that mode the console lines (`say`) become records
too, so stderr carries nothing but JSON and stdout stays empty.

Known secret values (auth key, API key, key passphrases) are replaced by
`[REDACTED]` in every record, whatever its format, exception text included.

Python warnings are records too (logger `py.warnings`, through
`logging.captureWarnings`): one line each, in the chosen format, and one line per kind
(category, module, message) for the whole run, never Python's two-line text on stderr.
Known noise from dependencies (QUIET_WARNINGS) is silenced by category and module before
those dependencies are imported: `agent.cli` imports none before `main` calls
`configure`.
Leaf module: imports nothing from the agent.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime

REDACTED = "[REDACTED]"
# Attributes a log call may set with `extra=` that JSON records carry as fields.
CONTEXT_FIELDS = ("identity", "host", "command", "tool", "outcome", "call", "fanout")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Warnings that tell our users nothing they could act on: (module of the category, its
# class, the modules it is attributed to, a regular expression).
QUIET_WARNINGS: tuple[tuple[str, str, str], ...] = (
    # asyncssh names cryptography's DSA classes (it still reads ssh-dss keys); cryptography
    # 51 deprecates them at each use: five warnings at every asyncssh import.
    ("cryptography.utils", "CryptographyDeprecationWarning", r"asyncssh(\.|$)"),
)
# Kinds of warning remembered; past that, a new kind is still logged, but not held.
WARNING_KINDS_KEPT = 1000

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
    route_warnings()
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


class _OncePerKind(logging.Filter):
    """Lets the first record of each kind through: the message, which for a warning is
    its category, module and text (see `_warning_line`)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.getMessage()
        if kind in self.seen:
            return False
        if len(self.seen) < WARNING_KINDS_KEPT:
            self.seen.add(kind)
        return True


def _module_of(filename: str) -> str:
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return filename


def _warning_line(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, line: str | None = None) -> str:
    """One line for a warning, without its place in the file (one line per kind)."""
    text = " ".join(str(message).split())
    return f"{category.__name__}: {text} (in {_module_of(filename)})"


def quiet_known_noise() -> None:
    """Drop the QUIET_WARNINGS; before the modules they are attributed to are imported."""
    for module_name, class_name, attributed_to in QUIET_WARNINGS:
        try:
            category = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue  # not installed, or renamed: the tests of each entry point would say
        warnings.filterwarnings("ignore", category=category, module=attributed_to)


def route_warnings() -> None:
    """Warnings become log records, once per kind; QUIET_WARNINGS are dropped."""
    quiet_known_noise()
    warnings.formatwarning = _warning_line
    logging.captureWarnings(True)
    records = logging.getLogger("py.warnings")
    if not any(isinstance(f, _OncePerKind) for f in records.filters):
        records.addFilter(_OncePerKind())


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
