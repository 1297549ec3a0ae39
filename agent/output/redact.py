"""Secrets in command output are replaced as the output arrives, before it is stored: the
spools (agent/output/spool.py) only ever hold redacted bytes, so every view of them (head
and tail, pages at any offset, live lines, the audit excerpt) shows what was redacted
once, here. The formats are agent/output/secret_formats.py.

Matching uses RE2 (google-re2, Google's binding of the C++ library): all formats are one
`RE2::Set`, so a chunk is scanned once for all of them in linear time, and only the
blocks of a chunk the set says hold a secret are searched, format by format, for the
spans. Every byte a command prints goes through here, which is why the engine matters:
Python's `re` needs a pass per format (detect-secrets' list took 128 ms of CPU per MiB
of mixed output), this takes about 12 (tests/bench/bench_redact.py), and RE2's linear
time means output crafted against a backtracking engine cannot stall the agent.

A `StreamRedactor` follows one stream. No secret spans a line, so it releases output up
to the last line end at once and holds the partial line back (the carry) until its
end arrives: a secret cut in two by an SSH chunk is seen whole. A line longer than
`MAX_CARRY` is released except its last `HOLD` bytes (more than any secret's shortest
form), the cut moved so it never splits a secret; a secret still growing at the cut is
redacted so far and what continues it (up to white space or a quote) is dropped as it
arrives. A private key block is replaced from its BEGIN line to its END line, across
chunks and lines: between the two nothing is released at all.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

import re2

from .secret_formats import FORMATS, PRIVATE_KEY

MAX_CARRY = 16 * 1024  # bytes of a partial line held back whole
HOLD = 4 * 1024  # of a longer line, the tail held back
_BLOCK = 4 * 1024  # a chunk that holds a secret is searched in blocks of about this size
_KEY_END_HOLD = 160  # inside a key block: enough of the end to see a split END line
# BEGIN ... PRIVATE KEY (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP ... BLOCK), and its END.
_KEY = rb"[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"


def marker(kind: str) -> str:
    return f"[REDACTED: {kind}]"


@dataclass(frozen=True)
class _Span:
    start: int
    end: int  # what is replaced
    kind: str
    match_start: int  # the whole match, context included
    match_end: int
    order: int  # of the same span, the format listed first names it (vendors before context)


class _Engine:
    """The formats compiled once per process: a set for the scan, one regexp per format."""

    def __init__(self) -> None:
        options = re2.Options()
        options.encoding = re2.Options.Encoding.LATIN1  # bytes, whatever the encoding
        options.log_errors = False
        self.set = re2.Set.SearchSet(options)
        self.regexes: list[Any] = []
        for fmt in FORMATS:
            pattern = fmt.pattern.encode("ascii")
            self.set.Add(pattern)
            self.regexes.append(re2.compile(pattern, options))
        self.set.Compile()
        self.groups = [r.groupindex.get(b"s") for r in self.regexes]
        self.key_begin = re2.compile(rb"-----BEGIN" + _KEY, options)
        self.key_end = re2.compile(rb"-----END" + _KEY, options)
        self.key_line = re2.compile(rb"-----(?:BEGIN|END)" + _KEY, options)
        # Where a secret cut at a long line's held tail stops continuing.
        self.token_end = re2.compile(rb"[\s\"']", options)

    def spans(self, text: bytes) -> list[_Span]:
        """The secrets in `text`, each format's (overlaps included), in order.

        One pass of the set says whether any format matches at all (most chunks: none).
        If one does, the set is asked again for each block of about `_BLOCK` bytes (whole
        lines: no secret spans two), and the formats it names there are searched in that
        block only."""
        if not self.set.Match(text):
            return []
        spans = []
        block_start = 0
        while block_start < len(text):
            block_end = _line_end(text, block_start + _BLOCK)
            block = text[block_start:block_end]
            for index in self.set.Match(block) or ():
                fmt, regex, group = FORMATS[index], self.regexes[index], self.groups[index]
                for match in regex.finditer(block):
                    start, end = match.span(group) if group is not None else match.span()
                    if fmt.placeholders and _PLACEHOLDER.fullmatch(block[start:end].strip(b"\"'")):
                        continue
                    spans.append(_Span(block_start + start, block_start + end, fmt.kind,
                                       block_start + match.start(), block_start + match.end(),
                                       index))
            block_start = block_end
        spans.sort(key=lambda s: (s.start, -s.end, s.order))
        return spans


def _line_end(text: bytes, at: int) -> int:
    """Just past the first line end at or after `at` (the end of `text` if none)."""
    ends = [end for end in (text.find(b"\n", at), text.find(b"\r", at)) if end >= 0]
    return min(ends) + 1 if ends else len(text)


# `password: ${DB_PASSWORD}`, `secret: true`, `passwd: files systemd` (nsswitch.conf):
# values that name or describe a secret without being one.
_PLACEHOLDER = re.compile(
    rb"(?i)(?:true|false|null|none|nil|yes|no|required|optional|files|compat|systemd|sss|"
    rb"ldap|nis|winbind|\*+|x+|\.+|<[^>]*>|\[[^\]]*\]|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|"
    rb"\{\{.*\}\}|%\([a-z_]+\)s)")


@cache
def _engine() -> _Engine:
    return _Engine()


def _replace(text: bytes, spans: list[_Span], counts: Counter[str]) -> bytes:
    pieces: list[bytes] = []
    at = 0
    for span in spans:
        if span.end <= at:
            continue  # inside a secret already replaced
        pieces += [text[at:max(at, span.start)], marker(span.kind).encode()]
        counts[span.kind] += 1
        at = span.end
    if not pieces:
        return text
    pieces.append(text[at:])
    return b"".join(pieces)


class StreamRedactor:
    """One output stream, redacted as it arrives: `feed` returns what may be released now,
    `finish` the rest at the end. `counts` tells what was replaced, by kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._carry = b""
        self._in_key = False
        self._continuing = False  # a secret cut at a long line's tail goes on

    @property
    def held(self) -> int:
        return len(self._carry)

    def feed(self, data: bytes) -> bytes:
        return self._run(self._carry + data, final=False)

    def finish(self) -> bytes:
        out = self._run(self._carry, final=True)
        self._carry, self._in_key, self._continuing = b"", False, False
        return out

    def _run(self, data: bytes, *, final: bool) -> bytes:
        engine = _engine()
        out: list[bytes] = []
        pos = 0
        while True:
            if self._in_key:
                end = engine.key_end.search(data, pos)
                if end is None:  # all key material: nothing is released
                    self._carry = b"" if final else data[max(pos, len(data) - _KEY_END_HOLD):]
                    return b"".join(out)
                pos, self._in_key = end.end(), False
            if self._continuing:
                stop = engine.token_end.search(data, pos)
                if stop is None:
                    self._carry = b""
                    return b"".join(out)
                pos, self._continuing = stop.start(), False
            cut, spans, continuing = self._cut(data, pos, final)
            begin = engine.key_begin.search(data, pos, cut) if cut > pos else None
            if begin is not None:
                region = data[pos:begin.start()]
                out += [_replace(region, engine.spans(region), self.counts),
                        marker(PRIVATE_KEY).encode()]
                self.counts[PRIVATE_KEY] += 1
                pos, self._in_key = begin.end(), True
                continue
            region = data[pos:cut]
            if spans is None:
                spans = engine.spans(region)
            out.append(_replace(region, spans, self.counts))
            self._carry, self._continuing = data[cut:], continuing
            return b"".join(out)

    @staticmethod
    def _cut(data: bytes, pos: int, final: bool) -> tuple[int, list[_Span] | None, bool]:
        """Where the release stops: the end (final), the last line end, or for a long line
        the start of its held tail, moved off any secret. With the spans of a long line's
        region (relative to `pos`) when they had to be found for that, and whether a
        secret reaching the end of `data` may go on past the cut."""
        size = len(data)
        if final:
            return size, None, False
        line_end = max(data.rfind(b"\n", pos), data.rfind(b"\r", pos), pos - 1) + 1
        if size - line_end <= MAX_CARRY:
            return line_end, None, False
        engine = _engine()
        cut = size - HOLD
        # A key line across the cut: hold it back whole.
        for mark in engine.key_line.finditer(data, max(pos, cut - 128), min(size, cut + 128)):
            if mark.start() < cut < mark.end():
                cut = mark.start()
        spans = engine.spans(data[pos:])
        continuing = False
        moved = True
        while moved:
            moved = False
            for span in spans:
                start, end = pos + span.match_start, pos + span.match_end
                if start < cut < end:
                    # A secret across the cut goes out whole (redacted); one that reaches
                    # the end of what arrived may go on: its continuation is dropped.
                    cut, moved = end, True
                    continuing = end == size
        return cut, [s for s in spans if pos + s.match_end <= cut], continuing


def _clean(data: bytes) -> bool:
    """No format and no key block anywhere in `data`: what a stream would release unchanged.

    Exact for a text up to MAX_CARRY bytes: a stream cuts such a text only at line ends,
    and no pattern has an anchor, so a format that matches none of the whole text matches
    none of its lines either. Audit records are dozens of short strings per call (a
    host name, a call id...); this one pass of the set is most of them (at 300 hosts the
    two stream passes per string were a quarter of a warm fan-out's CPU)."""
    engine = _engine()
    return not engine.set.Match(data) and engine.key_begin.search(data) is None


class Redactor:
    """Redaction of a whole text at once (parameters and messages for the audit log, the
    excerpt of a command shown unredacted)."""

    def scrub(self, value: Any) -> Any:
        """`value` (a record: strings in dicts, lists and tuples; keys are not scrubbed) with
        every string redacted. The strings are first scanned together, once: joined by line
        ends, a text in which no format and no key block matches holds none in any of its
        strings (no pattern has an anchor, and a line end is no word character, so `\\b`
        sees each string's edges as it would alone), and then `value` comes back as it is.
        A record of a call has about fifteen strings, none a secret: at 1,000 hosts one
        scan per string was a sixth of a warm fan-out's CPU. When the scan finds something
        (a secret, or a format matching across two strings), each string is redacted alone.
        """
        strings: list[str] = []
        _strings(value, strings)
        if not strings or _clean("\n".join(strings).encode("utf-8", errors="surrogatepass")):
            return value
        return self._scrub_each(value)

    def _scrub_each(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)[0]
        if isinstance(value, dict):
            return {k: self._scrub_each(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub_each(v) for v in value]
        return value

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        data = text.encode("utf-8", errors="surrogatepass")
        if len(data) <= MAX_CARRY and _clean(data):
            return text, Counter()
        stream = StreamRedactor()
        out = stream.feed(data) + stream.finish()
        if stream.counts:
            text = out.decode("utf-8", errors="replace")
        return text, stream.counts


def _strings(value: Any, into: list[str]) -> None:
    """Every string in `value` (dict values, list and tuple items), in order. (A string,
    number or None inside is taken without a call of its own: a record is mostly those.)"""
    if isinstance(value, str):
        into.append(value)
        return
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return
    for item in items:
        kind = type(item)
        if kind is str:
            into.append(item)
        elif not (kind is int or kind is bool or kind is float or item is None):
            _strings(item, into)
