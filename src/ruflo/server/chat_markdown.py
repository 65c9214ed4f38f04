"""Chat answers as safe HTML: Markdown (CommonMark with tables and strikethrough) rendered by
markdown-it-py with raw HTML off, code blocks highlighted by Pygments, and the result sanitized
by nh3 (the Ammonia sanitizer) with a short allowlist: no scripts, no event handlers, no styles,
no images, links only to http(s) and mailto, opened without a referrer or an opener.
Depends on markdown-it-py, Pygments and nh3.
"""

from __future__ import annotations

import html
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

TAGS = frozenset({
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a", "span",
})
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
"""Classes are allowed apart, by name: code's language and the highlighter's token classes."""
URL_SCHEMES = frozenset({"http", "https", "mailto"})
MAX_HIGHLIGHT = 100_000
"""Code blocks longer than this are shown plain: highlighting is not worth the time."""
_LANGUAGE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+#-_.")
_FORMATTER = HtmlFormatter(nowrap=True, classprefix="hl-")


def _highlight(code: str, language: str, _attrs: object) -> str:
    """Highlighted spans for a fenced block in a known language; "" lets markdown-it escape it."""
    name = language.strip().lower()
    if not name or len(code) > MAX_HIGHLIGHT or not set(name) <= _LANGUAGE:
        return ""
    try:
        lexer = get_lexer_by_name(name)
    except ClassNotFound:
        return ""
    return str(highlight(code, lexer, _FORMATTER))


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "highlight": _highlight,
                                     "typographer": False}).enable(["table", "strikethrough"])


@lru_cache(maxsize=1)
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(tags=set(TAGS), attributes={k: set(v) for k, v in ATTRIBUTES.items()},
                       url_schemes=set(URL_SCHEMES), link_rel="noopener noreferrer nofollow",
                       allowed_classes={"code": {f"language-{x}" for x in _languages()},
                                        "span": _token_classes()})


def render(text: str) -> str:
    """The sanitized HTML of a Markdown text (a partial one too: the answer as it streams)."""
    return str(_cleaner().clean(_parser().render(text)))


@lru_cache(maxsize=1)
def _languages() -> frozenset[str]:
    from pygments.lexers import get_all_lexers

    return frozenset(alias for _, aliases, _, _ in get_all_lexers() for alias in aliases
                     if set(alias) <= _LANGUAGE)


@lru_cache(maxsize=1)
def _token_classes() -> set[str]:
    from pygments.token import STANDARD_TYPES

    return {f"hl-{short}" for short in STANDARD_TYPES.values() if short}


def plain(text: str) -> str:
    """Text shown as it is (a person's own message), escaped for HTML."""
    return html.escape(text)
