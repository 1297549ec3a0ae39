"""Claude's Markdown as safe HTML: markdown-it-py with raw HTML turned off.

With `html=False` any tag in the model's text is escaped, never passed through;
markdown-it's link validation already refuses javascript:/vbscript:/data: URLs.
Images are off: the page's CSP would block remote ones anyway, and a model has
no reason to embed them.
"""

from __future__ import annotations

from functools import cache

from markdown_it import MarkdownIt
from markupsafe import Markup


@cache
def _parser() -> MarkdownIt:
    return (
        MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        .enable(["table", "strikethrough"])
        .disable("image")
    )


def render_markdown(text: str) -> Markup:
    return Markup(_parser().render(text))  # noqa: S704 - html=False escapes every tag
