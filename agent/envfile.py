"""Reading a `.env` file: `KEY=VALUE` lines, optional `export`, quotes and `#` comments.

The same dialect docker compose and python-dotenv read, for the subset people
write by hand; anything else is an error that names the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

from agent.errors import ConfigError

ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_env_file(path: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not ENV_KEY.match(key):
            # The line may hold a secret: name the key (or the line number), never the value.
            shown = key if ENV_KEY.match(key) else "this line"
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {shown!r}")
        result[key] = _value(value.strip(), f"{path}:{number}")
    return result


def _value(raw: str, where: str) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = _closing_quote(raw, quote)
        if end < 0:
            raise ConfigError(f"{where}: unterminated {quote} quote")
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise ConfigError(f"{where}: unexpected text after the closing quote")
        inner = raw[1:end]
        if quote == '"':
            inner = re.sub(
                r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), inner
            )
        return inner
    # Unquoted: a `#` after whitespace starts a comment.
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def _closing_quote(raw: str, quote: str) -> int:
    index = 1
    while index < len(raw):
        if raw[index] == "\\" and quote == '"':
            index += 2
            continue
        if raw[index] == quote:
            return index
        index += 1
    return -1
