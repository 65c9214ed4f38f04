"""Issue 22's mixed hive on its page, in Debian's Chromium: the built-in agent, the real Claude
Code and the real Codex finish the three-task workload while the page is open, and the page shows
the three tasks done and, under each agent's name, that agent's transcript — its turns, its tool
calls and their results (Claude Code's Edit, Codex's shell and apply_patch, the built-in agent's
edit_file) — and none of another agent's. A transcript of hostile tool names, arguments and
results (the XSS corpus) is shown as inert text."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from ui_harness import GATEWAY_KEY, Servers, expect, shoot

from mixed_hive import CREW, TOOL_CALLS, create_mixed_hive, require_clis, run_hive, script
from ruflo.event_kinds import EventKind
from ruflo.model import Agent, Hive, HiveStatus, Mode
from xss_corpus import CORPUS

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""What the page shows as "?" (hive.js inert)."""

pytestmark = pytest.mark.browser


@pytest.mark.integration
@pytest.mark.slow
def test_the_hive_page_shows_each_agents_transcript(servers: Servers, page: Any,
                                                    tmp_path: Path) -> None:
    require_clis()
    gateway = servers.scripted(script(GATEWAY_KEY))
    served = servers.start(gateway_url=gateway.base_url)
    hive, agents = create_mixed_hive(served.store, tmp_path)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{served.url}/hives/{hive.id}")
    expect()(page.locator("#hive-name")).to_have_text("mixed")

    ended: list[Hive | BaseException] = []

    def work() -> None:
        try:
            ended.append(asyncio.run(run_hive(served.store, hive.id, gateway.base_url,
                                              GATEWAY_KEY)))
        except BaseException as error:  # the test thread raises it below
            ended.append(error)

    worker = threading.Thread(target=work, name="mixed-hive")
    worker.start()
    worker.join(200)
    assert ended, "the hive did not end within 200 s"
    [final] = ended
    if isinstance(final, BaseException):
        raise final
    assert final.status is HiveStatus.DONE, final.pause_reason

    # Followed live: the board has the three tasks done, each by one agent.
    expect()(page.locator("#count-done")).to_have_text("3", timeout=20_000)
    done = page.locator("#tasks-done li.task")
    titles = sorted(done.locator(".task-title").all_inner_texts())
    assert titles == sorted(f"Fix {name}.py" for name in CREW)
    expect()(page.locator("#hive-status")).to_have_text("done")

    for agent in agents:
        box = page.locator(f"#transcripts section.transcript[data-agent-id='{agent.id}']")
        expect()(box.locator("h3")).to_have_text(f"{agent.name} · {agent.adapter.value}")
        entries = box.locator("li")
        # The agent's own tool calls, in order, each with its result.
        calls = box.locator("li[data-kind='tool_call'] .transcript-head")
        expect()(calls).to_have_count(len(TOOL_CALLS[agent.adapter]), timeout=20_000)
        heads = calls.all_inner_texts()
        assert [h.split("tool call ", 1)[1] for h in heads] == TOOL_CALLS[agent.adapter], heads
        results = box.locator("li[data-kind='tool_result'] .transcript-head").all_inner_texts()
        assert [r.split("tool result ", 1)[-1] for r in results] == TOOL_CALLS[agent.adapter], results
        assert box.locator("li[data-kind='agent_turn']").count() >= 1, agent.name
        expect()(box.locator("li[data-kind='task_verified']")).to_have_count(1)
        expect()(box.locator("li[data-kind='task_done']")).to_have_count(1)
        task = box.locator("li[data-kind='task_done'] .transcript-head").inner_text()
        assert task in {f"task done (Fix {name}.py)" for name in CREW}, task
        if agent.adapter.is_agent_cli:
            exited = box.locator("li[data-kind='process_exited']")
            expect()(exited.locator(".transcript-head")).to_contain_text("process exited 0")
            expect()(exited.locator(".transcript-detail")).to_contain_text(".py fixed")
        # Only this agent's events are under its name.
        foreign = {name for tools in TOOL_CALLS.values() for name in tools}
        foreign -= set(TOOL_CALLS[agent.adapter])
        shown = entries.all_inner_texts()
        assert not [t for t in shown for name in foreign if f"tool call {name}" in t], shown
    # The tool calls' arguments are shown too: Claude Code's Edit names its file and new line.
    claude = page.locator("#transcripts section.transcript[data-agent-id='mixed-claude']")
    edit = claude.locator("li[data-kind='tool_call']").nth(1)
    expect()(edit.locator(".transcript-detail")).to_contain_text("fixed'")
    shoot(page, "agent-transcripts")
    assert errors == []


def test_a_hostile_transcript_is_shown_as_text(servers: Servers, page: Any) -> None:
    served = servers.start(gateway_url=None)
    hive = Hive(id="hostile", name="hostile", mode=Mode.SWARM, objective="x")
    served.store.create_hive(hive, agents=[Agent(id="hostile-a", hive_id=hive.id,
                                                 name="<b>agent</b>")], tasks=[])
    for n, payload in enumerate(CORPUS):
        call = f"call-{n}"
        served.store.append_event(hive.id, EventKind.TOOL_CALL, agent_id="hostile-a", data={
            "turn": n, "call_id": call, "name": payload, "arguments": {"cmd": payload}})
        served.store.append_event(hive.id, EventKind.TOOL_RESULT, agent_id="hostile-a", data={
            "turn": n, "call_id": call, "ok": False, "content": payload})
        served.store.append_event(hive.id, EventKind.AGENT_TURN, agent_id="hostile-a", data={
            "turn": n, "content": payload, "tool_calls": [{"name": payload}]})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{served.url}/hives/{hive.id}")
    box = page.locator("#transcripts section.transcript[data-agent-id='hostile-a']")
    expect()(box.locator("h3")).to_have_text("<b>agent</b> · llm")
    expect()(box.locator("li")).to_have_count(3 * len(CORPUS))
    heads = box.locator("li[data-kind='tool_result'] .transcript-head").all_text_contents()
    # Results carry only the call id here, as Claude Code's do: named after their call.
    assert [h.split("tool result ", 1)[1] for h in heads] == [
        f"{CONTROL.sub('?', payload)} (failed)" for payload in CORPUS]
    assert page.evaluate("window.__xss") is None
    # Text, not markup: each entry holds only the page's own spans.
    tags = box.evaluate("node => Array.from(node.querySelectorAll('li *'), e => e.tagName)")
    assert set(tags) == {"SPAN"}, set(tags)
    assert errors == []
