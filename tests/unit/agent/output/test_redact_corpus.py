"""Redaction's corpus: every secret format in six positions, read back through every view of a
command's output; and ordinary output that must come back unchanged.

Each case goes the way a command's output goes: chunks into a CommandOutput (redacted as
they arrive, agent/output/spool.py) with a LiveOutput listening, then the result shown as
head and tail (agent/output/store.py), then pages read by handle. The views checked are
the result, every live batch, pages starting at and one byte after the secret and its
line, and 8-byte pages across it. On main before redaction moved to the spool, 176 of
the 240 cases showed part of a secret in at least one view (scripts in the commit
message); see tests/support/secret_corpus.py for the formats.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agent.access.identity import Identity
from agent.output.live import LiveOutput
from agent.output.redact import Redactor
from agent.output.results import CommandResult
from agent.output.spool import CommandOutput
from agent.output.store import OutputStore
from tests.support.secret_corpus import ORDINARY, Planted, corpus, leaks

ALICE = Identity(login="alice@example.com", node="a")
HEAD, TAIL = 2000, 500
FILLER = "".join(f"log line {n:05d} all is well\n" for n in range(200))
CORPUS = corpus()


@dataclass(frozen=True)
class Layout:
    output: str
    split_at: int | None = None  # feed the output in two chunks, cut here


def layout(planted: Planted, position: str) -> Layout:
    text, secret = planted.text, planted.first_secret
    at = text.index(secret)
    if position == "whole":
        return Layout(text)
    if position == "line start":
        return Layout(FILLER + text + " trailing words\n" + FILLER)
    if position == "mid-line":
        return Layout(FILLER + "found in the config: " + text + " (end)\n" + FILLER)
    if position == "split across chunks":
        # On a long line, as the live view's long-line cut met it.
        before = FILLER + "x" * 4100 + ","
        return Layout(before + text + "\n" + FILLER,
                      split_at=len(before) + at + len(secret) // 2)
    if position == "at the head cut":
        # The head ends inside the secret: nothing on the line to cut back to.
        pad = HEAD - 1 - at - len(secret) // 2
        return Layout("x" * pad + "," + text + "\n" + FILLER + FILLER)
    assert position == "page start + 1"
    return Layout(FILLER + text + "\n" + FILLER)


POSITIONS = ("whole", "line start", "mid-line", "split across chunks", "at the head cut",
             "page start + 1")


def views(planted: Planted, shape: Layout) -> list[str]:
    """What the caller may see of this output, every way there is."""
    data = shape.output.encode()
    chunks = [data] if shape.split_at is None else [data[:shape.split_at],
                                                     data[shape.split_at:]]
    live = LiveOutput()
    output = CommandOutput(1 << 24, 1 << 16, listener=live.feed)
    shown = []
    for chunk in chunks:
        output.feed(False, chunk)
        shown.append(live.drain())  # a progress notification after each chunk
    output.finish()
    shown.append(live.drain())
    store = OutputStore(head=HEAD, tail=TAIL)
    result = store.present(CommandResult(host="h", command="c", rendered="c", stdout="",
                                         stderr="", exit_status=0, duration_ms=1.0,
                                         truncated=False, output=output), ALICE)
    shown.append(result.stdout)
    handle = result.output_handle
    if handle is None:
        return shown
    total = output.stdout.size
    line = shape.output.index(planted.text)
    secret = shape.output.index(planted.first_secret)
    for offset in {line, line + 1, secret, secret + 1}:
        shown.append(store.read(ALICE, handle, offset=min(offset, total)).text)
    offset: int | None = max(0, secret - 64)
    pages = []
    while offset is not None and offset < secret + len(planted.text) + 64:
        page = store.read(ALICE, handle, offset=min(offset, total), max_bytes=8)
        pages.append(page.text)
        offset = page.next_offset
    shown.append("".join(pages))
    store.close()
    return shown


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("planted", CORPUS, ids=[p.name for p in CORPUS])
def test_every_format_in_every_position_is_redacted_in_every_view(
        planted: Planted, position: str) -> None:
    for text in views(planted, layout(planted, position)):
        assert not leaks(planted, text), (planted.name, position, text[:300])


def test_the_corpus_is_as_big_as_promised() -> None:
    assert len(CORPUS) >= 30 and len(POSITIONS) == 6
    assert len({p.name for p in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_ordinary_output_comes_back_unchanged(name: str) -> None:
    text = ORDINARY[name]
    assert Redactor().redact(text) == (text, {})
    output = CommandOutput(1 << 20, 1 << 16)
    for at in range(0, len(text.encode()), 97):  # in small chunks, as SSH may deliver it
        output.feed(False, text.encode()[at:at + 97])
    output.finish()
    assert output.stdout.text() == text and not output.redacted
