"""Claude's Markdown as safe HTML: markdown-it-py with raw HTML turned off.

With `html=False` any tag in the model's text is escaped, never passed through;
markdown-it's link validation already refuses javascript:/vbscript:/data: URLs.
Images are off: the page's CSP would block remote ones anyway, and a model has
no reason to embed them.

Three changes to markdown-it's output, all for the page's strict CSP and small screens:
table alignment becomes a class (markdown-it writes `style="text-align:..."`, which
`style-src 'self'` blocks), a table sits in a box that scrolls sideways instead of
squeezing its columns, and a code block gets a copy button (agent/chat/static/chat.js).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup

ALIGNMENTS = {"text-align:left": "left", "text-align:center": "center",
              "text-align:right": "right"}

COPY_BUTTON = ('<button type="button" class="copy" data-copy aria-label="Copy code">'
               "Copy</button>")


def _alignment_classes(state: StateCore) -> None:
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and "style" in token.attrs:
            style = str(token.attrs.pop("style"))
            if style in ALIGNMENTS:
                token.attrJoin("class", f"align-{ALIGNMENTS[style]}")


def _table_open(self: RendererHTML, tokens: Sequence[Token], idx: int, options: Any,
                env: Any) -> str:
    # tabindex: a box that scrolls must be reachable by keyboard to scroll it.
    return '<div class="table-wrap" tabindex="0">' + self.renderToken(tokens, idx, options, env)


def _table_close(self: RendererHTML, tokens: Sequence[Token], idx: int, options: Any,
                 env: Any) -> str:
    return self.renderToken(tokens, idx, options, env) + "</div>\n"


def _code(default: str) -> Any:
    def render(self: RendererHTML, tokens: Sequence[Token], idx: int, options: Any,
               env: Any) -> str:
        html: str = getattr(RendererHTML, default)(self, tokens, idx, options, env)
        html = html.replace("<pre>", '<pre tabindex="0">', 1)
        language = tokens[idx].info.strip().split(" ", 1)[0] or "code"
        head = f'<div class="code-head"><span>{escapeHtml(language)}</span>{COPY_BUTTON}</div>'
        return f'<div class="code">{head}{html}</div>\n'

    return render


@cache
def _parser() -> MarkdownIt:
    md = (
        MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        .enable(["table", "strikethrough"])
        .disable("image")
    )
    md.core.ruler.push("alignment_classes", _alignment_classes)
    md.add_render_rule("table_open", _table_open)
    md.add_render_rule("table_close", _table_close)
    md.add_render_rule("fence", _code("fence"))
    md.add_render_rule("code_block", _code("code_block"))
    return md


def render_markdown(text: str) -> Markup:
    return Markup(_parser().render(text))  # noqa: S704 - html=False escapes every tag
