"""Chat answers rendered from Markdown to sanitized HTML: what a reader needs survives (code
blocks highlighted, tables, lists, links), and nothing from the XSS corpus stays able to run."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from ruflo.server.chat_markdown import render
from xss_corpus import CORPUS

SAFE_TAGS = {"p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul",
             "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr",
             "th", "td", "a", "span"}
SAFE_ATTRIBUTES = {"href", "title", "class", "start", "rel"}


class Elements(HTMLParser):
    """Every element and attribute as a browser's parser finds them (text stays text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def live_parts(html: str) -> list[str]:
    """What in the HTML could run or leave: unknown elements, handlers, odd links."""
    parser = Elements()
    parser.feed(html)
    parser.close()
    trouble = []
    for tag, attrs in parser.found:
        if tag not in SAFE_TAGS:
            trouble.append(f"<{tag}>")
        for name, value in attrs:
            if name not in SAFE_ATTRIBUTES:
                trouble.append(f"{tag}[{name}]")
            if name == "href" and not re.match(r"(https?:|mailto:)", value or ""):
                trouble.append(f"href={value}")
    return trouble


def test_markdown_becomes_html_with_code_tables_lists_and_links() -> None:
    html = render("# Title\n\nSome **bold** and `code`.\n\n- one\n- two\n\n1. first\n\n"
                  "| name | size |\n|------|-----:|\n| a    | 1    |\n\n"
                  "```python\ndef f(x):\n    return x + 1  # add\n```\n\n"
                  "[docs](https://example.org/docs) and ~~old~~\n")
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html
    assert "<code>code</code>" in html
    assert "<ul>\n<li>one</li>" in html
    assert "<ol>\n<li>first</li>" in html
    assert "<th>name</th>" in html
    assert "<td>a</td>" in html
    assert '<pre><code class="language-python"><span class="hl-k">def</span>' in html
    assert '<span class="hl-c1"># add</span>' in html
    assert '<a href="https://example.org/docs" rel="noopener noreferrer nofollow">docs</a>' \
        in html
    assert "<s>old</s>" in html


def test_an_unknown_language_or_a_half_written_answer_still_renders() -> None:
    unknown = render("```nosuchlanguage\n<b>x</b>\n```")
    assert unknown.startswith("<pre><code")
    assert "&lt;b&gt;x&lt;/b&gt;\n</code></pre>" in unknown
    assert "nosuchlanguage" not in unknown
    half = render("Here is a table:\n\n| a | b |\n|---|---|\n| 1 | 2")
    assert "<td>1</td>" in half
    assert "<pre><code" in render("```python\ndef half_written(")


@pytest.mark.parametrize("payload", CORPUS)
def test_nothing_of_the_xss_corpus_survives(payload: str) -> None:
    html = render(payload)
    assert live_parts(html) == [], html


def test_the_whole_corpus_at_once_and_plain_text_stay_readable() -> None:
    html = render("\n\n".join(CORPUS))
    assert live_parts(html) == [], html
    assert "raw link" in html
    assert "click me" in html
    assert render("a < b & c > d") == "<p>a &lt; b &amp; c &gt; d</p>\n"
