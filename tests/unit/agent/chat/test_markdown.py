"""Claude's Markdown as the page's strict CSP wants it."""

from __future__ import annotations

from agent.chat.markdown import render_markdown

TABLE = "| name | size | ok |\n|:--|--:|:-:|\n| a | 1 | y |\n"


def test_table_alignment_is_a_class_never_an_inline_style() -> None:
    html = str(render_markdown(TABLE))
    assert "style=" not in html
    assert html.count('class="align-right"') == 2 and html.count('class="align-center"') == 2
    assert html.count('class="align-left"') == 2


def test_a_table_scrolls_sideways_in_a_box_the_keyboard_reaches() -> None:
    html = str(render_markdown(TABLE))
    assert html.startswith('<div class="table-wrap" tabindex="0"><table>')
    assert html.rstrip().endswith("</table>\n</div>")


def test_code_blocks_get_a_copy_button_and_stay_escaped() -> None:
    html = str(render_markdown("```sh\necho '<b>' && rm -rf /\n```\n\n    indented <i>\n"))
    assert html.count('<button type="button" class="copy" data-copy') == 2
    assert '<pre tabindex="0"><code class="language-sh">echo \'&lt;b&gt;\'' in html
    assert "&lt;i&gt;" in html and "<i>" not in html
