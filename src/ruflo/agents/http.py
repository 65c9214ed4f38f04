"""The http adapter: the task is POSTed to a webhook, whose answer is the outcome.

Depends on httpx and the Executor types. The agent's `adapter_config`::

    url: "http://127.0.0.1:9000/hook"
    headers: {Authorization: "Bearer ..."}    # optional
    timeout: 300                              # optional, seconds

The body sent: `{"task": {...}, "agent": {...}, "hive": {...}, "prompt": "..."}`. The answer:
a JSON object `{"outcome": "complete"|"abstain"|"failed"|"escalate", "result": ..., "reason":
...}`, or any other 2xx body, taken as the result of a completed task. A non-2xx status or a
connection failure is a failed attempt with the reason in words.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import httpx

from ruflo.agents.base import OutcomeKind, RunContext, TaskOutcome
from ruflo.agents.loop import Transcript
from ruflo.agents.process import number, outside_prompt
from ruflo.agents.tools import truncate
from ruflo.errors import ConfigError
from ruflo.event_kinds import EventKind
from ruflo.memory.notes import Memory
from ruflo.model import JSON, Agent, Hive, Task

ANSWER_KINDS = {OutcomeKind.COMPLETE, OutcomeKind.ABSTAIN, OutcomeKind.FAILED,
                OutcomeKind.ESCALATE}


def public_fields(record: Any, *drop: str) -> JSON:
    data: JSON = json.loads(json.dumps(asdict(record), default=str))
    for name in drop:
        data.pop(name, None)
    return data


def endpoint(agent: Agent, adapter: str, what: str,
             ctx: RunContext) -> tuple[str, dict[str, str], float]:
    """(url, headers, timeout) from an outside agent's adapter config (http, a2a), checked;
    `what` names the url in the refusal."""
    config = agent.adapter_config
    url = config.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"agent {agent.name} uses the {adapter} adapter but its adapter config "
                          f"has no http(s) {what}")
    headers = config.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"agent {agent.name}: adapter headers must map names to strings")
    return url, headers, number(config, "timeout", ctx.limits.http_timeout, agent)


class HttpExecutor:
    """POSTs each task to the agent's webhook and records the answer."""

    async def run(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext) -> TaskOutcome:
        url, headers, timeout = endpoint(agent, "http", "url", ctx)
        memory = ctx.memory if ctx.memory is not None else Memory(ctx.store)
        transcript = Transcript(ctx.store, hive, agent, task, ctx.limits.transcript_chars)
        body = {"task": public_fields(task), "agent": public_fields(agent, "adapter_config"),
                "hive": public_fields(hive, "config"),
                "prompt": outside_prompt(task, hive, ctx.workspace, memory, agent)}
        transcript.add(EventKind.HTTP_REQUEST, url=url)
        try:
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
                response = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as error:
            reason = f"the webhook {url} could not be reached: {error.__class__.__name__}: {error}"
            transcript.add(EventKind.HTTP_RESPONSE, status=None, error=reason)
            return TaskOutcome(OutcomeKind.FAILED, reason=reason)
        text = response.text
        transcript.add(EventKind.HTTP_RESPONSE, status=response.status_code, body=text)
        if not response.is_success:
            return TaskOutcome(OutcomeKind.FAILED, result=truncate(text, 2000) or None,
                               reason=f"the webhook answered {response.status_code}")
        return parse_answer(text, ctx.limits.tool_output_chars)


def parse_answer(text: str, limit: int) -> TaskOutcome:
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        return TaskOutcome(OutcomeKind.COMPLETE, result=truncate(text, limit) or "(empty)")
    if not isinstance(answer, dict) or "outcome" not in answer:
        return TaskOutcome(OutcomeKind.COMPLETE, result=truncate(text, limit))
    try:
        kind = OutcomeKind(str(answer["outcome"]))
    except ValueError:
        kind = OutcomeKind.FAILED
        answer = {"reason": f"the webhook answered an unknown outcome {answer['outcome']!r}"}
    if kind not in ANSWER_KINDS:
        return TaskOutcome(OutcomeKind.FAILED,
                           reason=f"the webhook answered outcome {kind.value!r}, which the http "
                                  "adapter does not accept")
    result, reason = answer.get("result"), answer.get("reason")
    return TaskOutcome(kind, result=truncate(str(result), limit) if result is not None else None,
                       reason=str(reason) if reason is not None else None)
