"""The Markdown renderer on its own, in the browser: reply text in, element tree out.

Each case renders into a detached element and compares a compact outline of the result
(tag names and text), so no model and no server round trip is involved beyond the page.
"""

from __future__ import annotations

import pytest

OUTLINE = """async (text) => {
  const { renderMarkdown } = await import('/markdown.js');
  const root = document.createElement('div');
  renderMarkdown(text, root);
  const outline = (node) => node.nodeType === Node.TEXT_NODE
    ? JSON.stringify(node.textContent)
    : node.tagName.toLowerCase() + (node.childNodes.length
        ? '(' + [...node.childNodes].map(outline).join(' ') + ')' : '');
  return [...root.childNodes].map(outline).join(' ');
}"""


@pytest.fixture(scope="module")
def outline(browser, server):
    """One page for every case: rendering does not touch the page's own state."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/")
    yield lambda text: page.evaluate(OUTLINE, text)
    context.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", 'p("plain")'),
        ("a\nb", 'p("a" br "b")'),
        ("one\n\ntwo", 'p("one") p("two")'),
        ("**bold *and italic* here**", 'p(strong("bold " em("and italic") " here"))'),
        ("snake_case_name stays", 'p("snake_case_name stays")'),
        ("2 * 3 * 4", 'p("2 * 3 * 4")'),
        ("`**not bold**`", 'p(code("**not bold**"))'),
        ("# Title", 'h3("Title")'),
        ("3. three\n4. four", 'ol(li("three") li("four"))'),
        ("> quoted\n> more", 'blockquote(p("quoted" br "more"))'),
        ("---", "hr"),
        ("Go to https://example.org/a.", 'p("Go to " a("https://example.org/a") ".")'),
        ("[x](data:text/html,hi)", 'p("[x](data:text/html,hi)")'),
        ("<b>not bold</b>", 'p("<b>not bold</b>")'),
    ],
)
def test_markdown_renders_to_these_elements(outline, text, expected):
    assert outline(text) == expected


def test_an_unclosed_code_fence_is_already_code_while_the_reply_streams(outline):
    assert outline("Here:\n```py\nx = 1") == (
        'p("Here:") div(div(span("py") button("Copy")) pre(code("x = 1")))'
    )
