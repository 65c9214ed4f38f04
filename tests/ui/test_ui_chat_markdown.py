"""Chat answers as Markdown in a real browser (Debian's Chromium): a code block (highlighted, with
a copy button) and a table render as such, while streaming too; the XSS corpus, streamed and
stored, runs nothing and leaves no live element behind; axe finds nothing serious."""

from __future__ import annotations

from typing import Any

import pytest
from ui_harness import GATEWAY_KEY, Served, Servers, ask, axe_violations, describe, expect, shoot

from ruflo.gateway.scripted import ScriptedGateway
from xss_corpus import CORPUS

pytestmark = pytest.mark.browser

ANSWER = ("Here is **the plan**:\n\n| step | owner |\n|------|-------|\n| build | ana |\n"
          "| test | bo |\n\n```python\ndef ship(x):\n    return x + 1  # go\n```\n\n"
          "- first\n- second\n\nSee [the docs](https://example.org/docs).")
TABLE_FIRST = "| a | b |\n|---|---|\n| 1 | 2 |\n\n" + "more words " * 3000

LIVE_ELEMENTS = """() => {
  const thread = document.getElementById('thread');
  const found = [];
  for (const node of thread.querySelectorAll('*')) {
    const tag = node.tagName.toLowerCase();
    if (['script', 'iframe', 'object', 'embed', 'svg', 'math', 'style', 'img', 'form',
         'meta', 'link', 'base', 'details'].includes(tag)) found.push('<' + tag + '>');
    for (const attr of node.attributes) {
      if (attr.name.startsWith('on') || attr.name === 'style') found.push(tag + '[' + attr.name + ']');
    }
    if (tag === 'a' && !/^(https?:|mailto:)/.test(node.getAttribute('href') || '')) {
      found.push('a[href=' + node.getAttribute('href') + ']');
    }
  }
  return found;
}"""


def scripted(servers: Servers, *rules: dict[str, Any]) -> ScriptedGateway:
    return servers.scripted({"models": ["gpt-4o-mini"], "keys": [GATEWAY_KEY],
                             "rules": list(rules), "default": {"echo": True}})


def test_a_markdown_answer_renders_code_and_table_with_a_copy_button(
        servers: Servers, browser: Any) -> None:
    gateway = scripted(servers, {"match": {"last_user": "plan"},
                                 "reply": {"content": ANSWER, "chunk": 7}})
    served = servers.start(gateway_url=gateway.base_url)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=served.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(served.url + "/")
        ask(page, "the plan please")
        body = page.locator("#thread .message.assistant .message-body")
        expect()(page.locator("#thread .message.assistant.streaming")).to_have_count(0)
        check_rendered(body)
        shoot(page, "chat-markdown")
        page.get_by_role("button", name="Copy the code").click()
        expect()(page.get_by_role("button", name="Copy the code")).to_have_text("Copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == "def ship(x):\n    return x + 1  # go\n"
        violations = axe_violations(page)
        assert not violations, describe(violations)

        page.reload()  # the stored answer renders the same
        check_rendered(page.locator("#thread .message.assistant .message-body"))
        user = page.locator("#thread .message.user .message-body")
        expect()(user).to_have_text("the plan please")
    finally:
        context.close()


def check_rendered(body: Any) -> None:
    expect()(body.locator("strong")).to_have_text("the plan")
    expect()(body.locator("table th")).to_have_text(["step", "owner"])
    expect()(body.locator("table td")).to_have_text(["build", "ana", "test", "bo"])
    code = body.locator("pre code.language-python")
    expect()(code).to_have_text("def ship(x):\n    return x + 1  # go\n")
    expect()(code.locator("span.hl-k").first).to_have_text("def")
    expect()(body.locator("li")).to_have_text(["first", "second"])
    link = body.get_by_role("link", name="the docs")
    expect()(link).to_have_attribute("href", "https://example.org/docs")
    expect()(link).to_have_attribute("rel", "noopener noreferrer nofollow")


def test_the_answer_is_rendered_while_it_streams(servers: Servers, page: Any) -> None:
    gateway = scripted(servers, {"match": {"last_user": "table"},
                                 "reply": {"content": TABLE_FIRST, "chunk": 4,
                                           "chunk_delay": 0.005}})
    served = servers.start(gateway_url=gateway.base_url)
    page.goto(served.url + "/")
    ask(page, "a table then a long story")
    streaming = page.locator("#thread .message.assistant.streaming")
    # The table is HTML while the rest of the answer is still arriving as text.
    expect()(streaming.locator(".rendered table td")).to_have_text(["1", "2"])
    expect()(streaming.locator(".tail")).not_to_be_empty()
    page.get_by_role("button", name="Stop").click()
    expect()(streaming).to_have_count(0)
    expect()(page.locator("#thread .message.assistant table td")).to_have_text(["1", "2"])
    expect()(page.locator("#thread .message.assistant .note")).to_have_text(
        "stopped before the end")


def test_the_xss_corpus_runs_nothing_streamed_or_stored(servers: Servers, page: Any) -> None:
    hostile = "\n\n".join(CORPUS)
    gateway = scripted(servers, {"match": {"last_user": "hostile"},
                                 "reply": {"content": hostile, "chunk": 5}})
    served = servers.start(gateway_url=gateway.base_url)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(served.url + "/")
    ask(page, "hostile please")
    expect()(page.locator("#thread .message.assistant.streaming")).to_have_count(0)
    body = page.locator("#thread .message.assistant .message-body")
    expect()(body).to_contain_text("raw link")
    check_inert(page, served)
    assert dialogs == []
    assert errors == []

    page.reload()  # and again from the store
    expect()(page.locator("#thread .message.assistant .message-body")).to_contain_text(
        "click me")
    check_inert(page, served)
    # A person's own message is shown as typed, never as HTML.
    ask(page, CORPUS[2] + " hostile")
    expect()(page.locator("#thread .message.user .message-body").last).to_have_text(
        CORPUS[2] + " hostile")
    expect()(page.locator("#thread .message.assistant.streaming")).to_have_count(0)
    check_inert(page, served)
    for body in page.locator("#thread .message-body").all():
        body.hover()  # no mouse handler survived either
    assert dialogs == []
    assert errors == []


def check_inert(page: Any, served: Served) -> None:
    assert page.evaluate("() => window.__xss") is None
    assert page.evaluate(LIVE_ELEMENTS) == []
    assert page.url.startswith(served.url)
