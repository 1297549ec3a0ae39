"""Output as data: a catalog command's output parsed into rows, with the `jc` library.

A command that names a parser (whitelist/parsers.py) returns its output as data too:
what jc makes of the whole stdout, as it was kept (redacted at ingest,
agent/output/spool.py), so the data never holds what the text does not. jc (MIT) parses
the output of some 150 tools; we use its parser modules directly, named below, rather
than `jc.parse(name, ...)`: the import is explicit (PyInstaller bundles what it sees
imported), and a plugin parser in the user's jc data folder cannot stand in for one.

What jc does with output it does not expect varies: it raises whatever the text made it
trip on (IndexError, KeyError, AttributeError, ValueError...), or it returns rows built
from the wrong columns. Either way the call gets no data and a one-line note saying why
("could not parse ..."), never a traceback; its text output is unchanged. Rows without
the parser's key field, or with fields a closed parser never gives, count as not parsed.
Output is parsed only when it is whole and the command succeeded: a failed, timed-out or
cut command's stdout says nothing reliable in rows.

jc's size conversion (`jc.utils.convert_size_to_int`, for `df -h` or `free -h` amounts
like 3.9G) builds two namedtuple classes on every call, nearly all of a `df -hP` parse. It
is a pure function of its arguments, so a bounded cache sits in front of it
(`_cached_sizes`): a `df -hP` of 6 file systems then takes 72 µs of CPU instead of 3.2 ms
(tests/bench/bench_parsing.py). Human-readable amounts have few distinct values (three
digits and a unit), so a fleet's repeat.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jc.utils
from jc.parsers import df, free, os_release, ps, systemctl, uptime

from whitelist import Command
from whitelist.parsers import PARSERS, OutputParser

from .results import CommandResult

MAX_PARSED = 1 << 20  # bytes of stdout parsed at most; bigger output stays text
IN_THREAD = 64 * 1024  # output at least this big is parsed in a worker thread

_JC: Mapping[str, Callable[..., Any]] = MappingProxyType({
    "df": df.parse, "free": free.parse, "uptime": uptime.parse, "ps": ps.parse,
    "systemctl": systemctl.parse, "os_release": os_release.parse,
})
if set(_JC) != set(PARSERS):  # whitelist/parsers.py names what a catalog may use
    raise ImportError(f"parsers without a jc module: {sorted(set(PARSERS) ^ set(_JC))}")


def _cached_sizes() -> None:
    convert = jc.utils.convert_size_to_int
    if not isinstance(convert, functools._lru_cache_wrapper):
        jc.utils.convert_size_to_int = functools.lru_cache(maxsize=4096)(convert)


_cached_sizes()


@dataclass(frozen=True)
class Parsed:
    """A command's output as data (`data`), or why there is none (`note`)."""

    data: Any = None  # a list of rows, or one object (a parser with many=False)
    note: str = ""


def parse_text(parser: OutputParser, text: str) -> Parsed:
    """`text` read by `parser`: its data, or a note saying why it could not be parsed."""
    try:
        data = _JC[parser.name](text, quiet=True)
    except Exception as exc:  # jc trips over unexpected text in many ways; none is ours
        reason = str(exc).splitlines()[0][:160] if str(exc) else ""
        return _not_parsed(parser, f"jc's parser raised {type(exc).__name__}"
                           + (f": {reason}" if reason else ""))
    rows = data if parser.many else [data]
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        return _not_parsed(parser, f"jc gave {type(data).__name__}, not rows")
    if not parser.many and not data:
        return _not_parsed(parser, "nothing in it was recognised")
    for row in rows:
        if row.get(parser.key) is None:
            return _not_parsed(parser, f"a row without {parser.key}: it is not {parser.name} "
                               "output, or not in the form it reads")
        unknown = set(row) - set(parser.fields) if parser.closed else set()
        if unknown:
            return _not_parsed(parser, f"unexpected column(s) {', '.join(sorted(unknown))[:120]}"
                               f": it is not {parser.name} output, or not in the form it reads")
    return Parsed(data=data)


def _not_parsed(parser: OutputParser, reason: str) -> Parsed:
    return Parsed(note=f"could not parse the output as {parser.name} ({reason}); it reads: "
                  f"{parser.reads}. The output is shown as text")


async def parse_result(command: Command, result: CommandResult) -> Parsed | None:
    """The whole (redacted) stdout of `result` as data, if `command` names a parser (None
    otherwise). Call it while `result.output` still holds what was kept."""
    parser = command.parser
    if parser is None:
        return None
    if result.timed_out or result.exit_status is None:
        return Parsed(note="not parsed: the command did not finish (timed out or killed)")
    if result.exit_status != 0:
        return Parsed(note=f"not parsed: the command failed (exit status {result.exit_status})")
    if result.truncated or result.output is None:
        return Parsed(note="not parsed: the output was cut (max_output or the agent's disk "
                      "budget), so its rows would be incomplete")
    size = result.output.stdout.size
    if size > MAX_PARSED:
        return Parsed(note=f"not parsed: {size} bytes of output, more than the "
                      f"{MAX_PARSED} bytes the agent parses")
    text = result.output.stdout.text()
    if size >= IN_THREAD:
        return await asyncio.to_thread(parse_text, parser, text)
    return parse_text(parser, text)
