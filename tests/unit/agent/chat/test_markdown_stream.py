"""Markdown shown while it streams: no prefix of an answer shows raw Markdown syntax."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from agent.chat.markdown import render_markdown
from agent.chat.markdown_stream import render_partial_markdown, settled

ANSWER = """\
## Disk on **web-1**

The root filesystem is *fine*: `/` is at **20%**, with __74G__ free.
See [the docs](https://example.com/df) or <https://example.com>.

| Filesystem | Size | Use% |
|:-----------|-----:|:----:|
| /dev/vda   | 252G |  20% |
| tmpfs      |  12G |   0% |

- one ~~old~~ item with `inline code`
- a *second* item, snake_case_names stay as they are
1. numbered **bold and *nested* text**

> a quote with **bold**

```sh
df -h -- /
echo '**not bold**' | grep '|'
```

That is `2 * 3 = 6` and 2 * 3 = 6 too. Done.
"""


class VisibleText(HTMLParser):
    """Text a reader sees outside code (code shows its content verbatim, markers and all)."""

    def __init__(self) -> None:
        super().__init__()
        self.code = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.code += tag in ("code", "pre")

    def handle_endtag(self, tag: str) -> None:
        self.code -= tag in ("code", "pre")

    def handle_data(self, data: str) -> None:
        if not self.code:
            self.text.append(data)


def visible(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    return "".join(parser.text).replace("Copy", "")


RAW = re.compile(r"\*|__|~~|`|^\s*#|\||\]\(|^\s*[-=]{2,}\s*$|\[", re.MULTILINE)


def test_no_prefix_of_an_answer_shows_raw_markdown() -> None:
    for end in range(len(ANSWER) + 1):
        shown = visible(str(render_partial_markdown(ANSWER[:end])))
        # "2 * 3" is arithmetic, not markup; it is text in the final answer too.
        raw = RAW.findall(re.sub(r"2 \*( 3)?", "", shown))
        assert not raw, f"prefix {ANSWER[:end]!r} shows {raw}: {shown!r}"


def test_the_whole_answer_renders_exactly_as_a_finished_one() -> None:
    assert render_partial_markdown(ANSWER) == render_markdown(ANSWER)


@pytest.mark.parametrize(("prefix", "shown"), [
    ("Some **bol", "Some **bol**"),
    ("Some **", "Some "),
    ("a `code", "a `code`"),
    ("snake_case_na", "snake_case_na"),
    ("| a | b |\n", ""),
    ("| a | b |\n|---|--", ""),
    ("| a | b |\n|---|---|\n| 1", "| a | b |\n|---|---|\n| 1"),
    ("see [the docs](https://exa", "see the docs"),
    ("```sh\necho *", "```sh\necho *"),
    ("```sh\necho\n``", "```sh\necho\n"),
    ("text\n```py", "text\n"),
    ("## ", ""),
])
def test_settled(prefix: str, shown: str) -> None:
    assert settled(prefix) == shown
