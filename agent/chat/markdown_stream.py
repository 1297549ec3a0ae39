"""Markdown that is still being written, shown without a flash of raw syntax.

While an answer streams, the page re-renders the whole block server-side for each
batch of deltas (agent.chat.turn_view). Rendering a prefix as it is would show
`**bol`, a lone `|` header row or a half-typed `[link](` as text for a moment and
then snap into formatting. `settled(text)` returns what can be shown now instead:

- inline markup left open at the end (`**`, `*`, `__`, `_`, `~~`, a code span) is
  closed, so bold text appears bold as it arrives;
- markers with nothing after them yet (a `#`, `-`, `|` or backticks alone on the
  line being written, a `**` at the very end, a code fence's opening line) wait for
  the next delta;
- a table's header row waits for its delimiter row, and a half-written link shows
  its label only.

It only removes characters or appends closing markers, and the result goes through
the same markdown-it renderer (HTML off) as any answer.
"""

from __future__ import annotations

import re

from markupsafe import Markup

from .markdown import render_markdown

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
FENCE_PART = re.compile(r"^\s*[`~]*\s*$")
DELIMITER_ROW = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
ROW = re.compile(r"^\s*\|")
WORDLESS = re.compile(r"^[^\w]*$")
TRAILING_MARKERS = re.compile(r"[*_~`]+\Z")
OPEN_LINK = re.compile(r"\[([^\]\n]*)\](\([^)\n]*)?\Z")
OPEN_BRACKET = re.compile(r"\[([^\]\n]*)\Z")
OPEN_AUTOLINK = re.compile(r"<[^>\s]*\Z")
DELIMITERS = ("**", "__", "~~", "*", "_")


def render_partial_markdown(text: str) -> Markup:
    return render_markdown(settled(text))


def settled(text: str) -> str:
    lines = text.split("\n")
    tail = lines.pop()  # the line being written ("" right after a newline)
    if _in_fence(lines):
        # Inside a code block everything is code; only a closing fence being typed waits.
        return "\n".join([*lines, "" if FENCE_PART.match(tail) else tail])
    if WORDLESS.match(tail) or FENCE.match(tail):
        tail = ""
    start = max((i + 1 for i, line in enumerate(lines) if not line.strip()), default=0)
    done, block = lines[:start], [*lines[start:], tail]
    block = _hold_back_table_head(block)
    paragraph = "\n".join(block)
    paragraph = _settle_links(paragraph)
    paragraph = TRAILING_MARKERS.sub("", paragraph)
    closers = _closers(paragraph)
    if closers:
        # A closing marker right after a space would not close anything.
        paragraph = paragraph.rstrip(" \t") + closers
    return "\n".join([*done, paragraph])


def _in_fence(lines: list[str]) -> bool:
    opener = ""
    for line in lines:
        match = FENCE.match(line)
        if match is None:
            continue
        marker = match.group(1)
        if not opener:
            opener = marker
        elif marker[0] == opener[0] and len(marker) >= len(opener) and \
                not line.strip().strip(marker[0]):
            opener = ""
    return bool(opener)


def _hold_back_table_head(block: list[str]) -> list[str]:
    """A run of `|` rows at the end is a table only once its delimiter row is complete.

    The last entry of `block` is the line being written ("" when there is none).
    """
    lines, tail = block[:-1], block[-1]
    run = len(lines)
    while run > 0 and ROW.match(lines[run - 1]):
        run -= 1
    rows = lines[run:]
    if tail and ROW.match(tail) is None:
        return block  # the table, if any, is over
    if not rows and not tail:
        return block
    if len(rows) >= 2 and DELIMITER_ROW.match(rows[1]):
        return block
    return [*lines[:run], ""]


def _settle_links(text: str) -> str:
    text = OPEN_LINK.sub(r"\1", text)
    text = OPEN_BRACKET.sub(r"\1", text)
    return OPEN_AUTOLINK.sub("", text)


def _closers(text: str) -> str:
    """Closing markers for inline markup still open at the end of `text`."""
    stack: list[str] = []
    code = 0  # length of the backtick run that opened a code span, 0 outside one
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and not code:
            i += 2
            continue
        if char == "`":
            run = len(text) - i - len(text[i:].lstrip("`"))
            if not code:
                code = run
            elif run == code:
                code = 0
            i += run
            continue
        if code or char not in "*_~":
            i += 1
            continue
        delimiter = next((d for d in DELIMITERS if text.startswith(d, i)), "")
        if not delimiter:  # a single "~": not markup
            i += 1
            continue
        before = text[i - 1] if i else " "
        after = text[i + len(delimiter)] if i + len(delimiter) < len(text) else " "
        can_open = not after.isspace() and not (delimiter[0] == "_" and before.isalnum())
        can_close = not before.isspace() and not (delimiter[0] == "_" and after.isalnum())
        if stack and stack[-1] == delimiter and can_close:
            stack.pop()
        elif can_open:
            stack.append(delimiter)
        i += len(delimiter)
    return ("`" * code if code else "") + "".join(reversed(stack))
