"""What the built-in agent sends: its system prompt, the task message, and the cache breakpoints
of a request. Depends on the core model, the Executor types and the tools' `truncate`.

Prompts are built so each request of an attempt starts with the whole previous request, byte
for byte: the tool list and the system prompt (who the agent is, how to work; the same for every
task of the agent) come first and never change, earlier messages are never rewritten, and what
varies — the task, the notes found for it — goes into the task message after them. A provider's
prompt cache can then reuse all but the newest turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ruflo.agents.base import RunContext, TaskTool
from ruflo.agents.tools import truncate
from ruflo.model import Agent, Hive, MemoryEntry, Task

if TYPE_CHECKING:
    from ruflo.gateway.base import ChatMessage

EPHEMERAL = {"type": "ephemeral"}
CACHE_PROVIDERS = ("anthropic/", "claude")
"""Model names (lowercased, after any `litellm_proxy/`) that go to Anthropic through LiteLLM,
which takes `cache_control` marks; other providers may refuse the field, so they get none."""


def task_prompt(task: Task) -> str:
    lines = [f"Task: {task.title}"]
    if task.description:
        lines += ["", task.description]
    if task.skills:
        lines += ["", f"Skills: {', '.join(task.skills)}"]
    if task.verify:
        lines += ["", f"When you call complete, this command will be run in the workspace and "
                      f"its exit code decides success: `{task.verify}`. Run it yourself first."]
    return "\n".join(lines)


def task_message(task: Task, notes: list[MemoryEntry]) -> str:
    """The attempt's first user message: the task, then the notes found for it (they vary from
    task to task, so they come after the stable system prompt)."""
    text = task_prompt(task)
    if notes:
        text += "\n\nNotes from the hive that may help:\n" + "\n".join(
            f"- [{n.key}] {truncate(n.content, 800)}" for n in notes)
    return text


def system_prompt(agent: Agent, hive: Hive, ctx: RunContext) -> str:
    """Who the agent is and how it works: the same for every task it does in the hive."""
    who = f"You are {agent.name}, a {agent.title or agent.role} in a hive of agents"
    lines = [f"{who} working on: {hive.objective}." if hive.objective else f"{who}."]
    if agent.skills:
        lines.append(f"Your skills: {', '.join(agent.skills)}.")
    if agent.capabilities:
        lines.append(agent.capabilities)
    lines += [
        "You work in a shared workspace folder: every path is relative to it, and you cannot "
        "leave it. Read before you edit; edit_file needs the exact text to replace. Run the "
        "tests (or the task's verify command) before you call complete.",
        "Leave notes with memory_store when you learn something the others will need.",
    ]
    if TaskTool.ABSTAIN in ctx.task_tools:
        lines.append("If the task does not fit your skills, call abstain with the reason.")
    if TaskTool.POST_SUBTASKS in ctx.task_tools:
        lines.append("If the task is too big for one agent, split it with post_subtasks.")
    if TaskTool.DELEGATE in ctx.task_tools and ctx.reports:
        reports = "; ".join(f"{a.name} ({a.title or a.role}): {a.capabilities or ', '.join(a.skills)}"
                            for a in ctx.reports)
        lines.append(f"Your reports, to whom you may delegate: {reports}.")
    if TaskTool.ESCALATE in ctx.task_tools:
        lines.append("If you are blocked, escalate to your manager with the reason.")
    return "\n".join(lines)


def takes_cache_marks(model: str, agent: Agent) -> bool:
    """Whether requests for `model` carry cache breakpoints: the agent's `cache_breakpoints`
    setting (true/false) if it has one, else whether the model goes to Anthropic (CACHE_PROVIDERS)."""
    setting = agent.adapter_config.get("cache_breakpoints")
    if isinstance(setting, bool):
        return setting
    name = model.lower().removeprefix("litellm_proxy/")
    return name.startswith(CACHE_PROVIDERS)


def with_cache_marks(messages: list[ChatMessage]) -> list[ChatMessage]:
    """A copy of `messages` for a model that takes cache breakpoints: every text as a content
    block (so a message reads the same whether it carries a mark or not), with Anthropic's
    ephemeral mark on the system prompt (stable for every task of the agent) and on the newest
    message with text (all of it is the next request's prefix): two of the four breakpoints
    Anthropic allows. The stored conversation is not changed."""
    marked: list[ChatMessage] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) and content:
            message = {**message, "content": [{"type": "text", "text": content}]}
        marked.append(message)
    targets = [0] if marked and marked[0].get("role") == "system" else []
    newest = next((i for i in range(len(marked) - 1, 0, -1)
                   if isinstance(marked[i].get("content"), list)), None)
    if newest is not None:
        targets.append(newest)
    for index in targets:
        blocks: list[dict[str, Any]] = list(marked[index]["content"])
        blocks[-1] = {**blocks[-1], "cache_control": EPHEMERAL}
        marked[index] = {**marked[index], "content": blocks}
    return marked
