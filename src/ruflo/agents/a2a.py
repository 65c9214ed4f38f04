"""The a2a adapter: the task is sent to a remote A2A agent, found by its agent card, and followed
until it ends; its messages go to the transcript, its artifacts are the result (text parts) and
files in the workspace (parts with a filename), and the task's verify command decides.

Depends on a2a-sdk (the optional `a2a` extra), httpx and the Executor types. The agent's
`adapter_config`::

    url: "https://agents.example/"        # where the card is (…/.well-known/agent-card.json),
                                          # or the card's own URL
    headers: {Authorization: "Bearer ..."}  # optional, sent with every request
    timeout: 300                          # optional, seconds for the whole attempt

A remote task that fails, is rejected, asks for input or does not end within the timeout is a
failed attempt with the reason in words (the remote task is cancelled on a timeout).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx

from ruflo.agents.base import OutcomeKind, RunContext, TaskOutcome
from ruflo.agents.http import endpoint
from ruflo.agents.loop import Transcript
from ruflo.agents.process import outside_prompt
from ruflo.agents.tools import truncate
from ruflo.agents.workspace import Workspace
from ruflo.errors import WorkspaceError
from ruflo.event_kinds import EventKind
from ruflo.memory.notes import Memory
from ruflo.model import Agent, Hive, Task

CARD_SUFFIX = "/.well-known/agent-card.json"
CANCEL_SECONDS = 5.0
"""How long a remote agent gets to answer the cancel of a task given up on."""


def card_location(url: str) -> tuple[str, str | None]:
    """(base URL, card path relative to it) for a card URL or an agent's base URL."""
    parts = urlsplit(url)
    if parts.path.endswith(".json"):
        base, _, card = url.rpartition(CARD_SUFFIX) if CARD_SUFFIX in url else \
            url.rpartition("/")
        return base, (CARD_SUFFIX if CARD_SUFFIX in url else "/" + card)
    return url.rstrip("/"), None


class A2AExecutor:
    """Sends each task to the agent's remote A2A agent and records how it went."""

    async def run(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext) -> TaskOutcome:
        url, headers, timeout = endpoint(agent, "a2a", "url of the remote agent's card", ctx)
        memory = ctx.memory if ctx.memory is not None else Memory(ctx.store)
        transcript = Transcript(ctx.store, hive, agent, task, ctx.limits.transcript_chars)
        prompt = outside_prompt(task, hive, ctx.workspace, memory, agent)
        transcript.add(EventKind.A2A_REQUEST, url=url, text=prompt)
        remote = Remote(transcript, ctx)
        try:
            return await remote.run(url, headers, prompt, seconds=timeout)
        except TimeoutError:
            reason = f"the A2A agent at {url} did not finish within {timeout:g} s"
        except ImportError:
            reason = ("the a2a adapter needs a2a-sdk, which is not installed here: install "
                      "the a2a extra (pip install 'ruflo[a2a]')")
        except (httpx.HTTPError, OSError, ValueError) as error:
            reason = f"the A2A agent at {url} failed: {error.__class__.__name__}: {error}"
        except Exception as error:  # the SDK's client errors (A2AClientError and kin)
            if not _sdk_error(error):
                raise
            reason = f"the A2A agent at {url} answered an error: {error}"
        transcript.add(EventKind.A2A_RESPONSE, state=None, error=reason)
        return TaskOutcome(OutcomeKind.FAILED, reason=reason)


def _sdk_error(error: Exception) -> bool:
    from a2a.client.errors import A2AClientError
    from a2a.utils.errors import A2AError

    return isinstance(error, A2AClientError | A2AError)


class Remote:
    """One attempt's conversation with the remote agent."""

    def __init__(self, transcript: Transcript, ctx: RunContext) -> None:
        self.transcript = transcript
        self.ctx = ctx

    async def run(self, url: str, headers: dict[str, str], prompt: str, *,
                  seconds: float) -> TaskOutcome:
        from a2a.client import ClientConfig, create_client
        from a2a.helpers.proto_helpers import new_text_message
        from a2a.types.a2a_pb2 import Role, SendMessageRequest

        base, card_path = card_location(url)
        request = SendMessageRequest(message=new_text_message(prompt, role=Role.ROLE_USER))
        task: Any = None
        async with httpx.AsyncClient(headers=headers, timeout=seconds,
                                     follow_redirects=False) as http:
            try:
                async with asyncio.timeout(seconds):
                    client = await create_client(base, ClientConfig(httpx_client=http),
                                                 relative_card_path=card_path)
                    async for item in client.send_message(request):
                        task = self._note(item, task)
            except TimeoutError:
                if task is not None:
                    await self._cancel(client, task.id)
                raise
        return self._outcome(task)

    def _note(self, item: Any, task: Any) -> Any:
        """Record one streamed item in the transcript; the task as it now stands."""
        from a2a.helpers.proto_helpers import get_message_text
        from a2a.types.a2a_pb2 import TaskState

        if item.HasField("message"):
            self.transcript.add(EventKind.A2A_MESSAGE, text=get_message_text(item.message))
            return task
        if item.HasField("task"):
            task = item.task
        if item.HasField("status_update"):
            status = item.status_update.status
            self.transcript.add(EventKind.A2A_STATUS, state=TaskState.Name(status.state),
                                text=get_message_text(status.message))
            if task is not None:
                task.status.CopyFrom(status)
        elif item.HasField("artifact_update"):
            artifact = item.artifact_update.artifact
            self.transcript.add(EventKind.A2A_ARTIFACT, name=artifact.name,
                                parts=len(artifact.parts))
            if task is not None:
                task.artifacts.append(artifact)
        return task

    def _outcome(self, task: Any) -> TaskOutcome:
        from a2a.helpers.proto_helpers import get_message_text
        from a2a.types.a2a_pb2 import TaskState

        if task is None:
            return TaskOutcome(OutcomeKind.FAILED, reason="the A2A agent answered no task")
        state = task.status.state
        said = get_message_text(task.status.message)
        self.transcript.add(EventKind.A2A_RESPONSE, state=TaskState.Name(state), text=said)
        if state != TaskState.TASK_STATE_COMPLETED:
            what = {TaskState.TASK_STATE_INPUT_REQUIRED: "asked for input, which a hive can't "
                                                         "give",
                    TaskState.TASK_STATE_AUTH_REQUIRED: "asked for authentication"}.get(
                        state, f"ended {TaskState.Name(state).removeprefix('TASK_STATE_')}"
                        .lower())
            return TaskOutcome(OutcomeKind.FAILED, result=said or None,
                               reason=f"the A2A agent {what}" + (f": {said}" if said else ""))
        texts = [said] if said else []
        for artifact in task.artifacts:
            texts += self._keep(artifact)
        limit = self.ctx.limits.tool_output_chars
        return TaskOutcome(OutcomeKind.COMPLETE,
                           result=truncate("\n".join(texts), limit) or "(no result)")

    def _keep(self, artifact: Any) -> list[str]:
        """The artifact's text parts; its parts with a filename are written to the workspace."""
        texts: list[str] = []
        workspace = Workspace.open(self.ctx.workspace)
        for part in artifact.parts:
            if part.filename and (part.HasField("text") or part.HasField("raw")):
                content = part.text if part.HasField("text") else part.raw.decode(
                    "utf-8", errors="replace")
                try:
                    note = workspace.write_file(part.filename, content)
                except WorkspaceError as refused:
                    note = f"refused file {part.filename!r}: {refused}"
                self.transcript.add(EventKind.A2A_FILE, path=part.filename, note=note)
            elif part.HasField("text"):
                texts.append(part.text)
        return texts

    async def _cancel(self, client: Any, task_id: str) -> None:
        """Ask the remote agent to cancel the task given up on; what it answered (or that it
        did not) goes to the transcript, and the attempt ends failed either way."""
        from a2a.types.a2a_pb2 import CancelTaskRequest, TaskState

        try:
            async with asyncio.timeout(CANCEL_SECONDS):
                cancelled = await client.cancel_task(CancelTaskRequest(id=task_id))
            self.transcript.add(EventKind.A2A_CANCEL, task_id=task_id,
                                state=TaskState.Name(cancelled.status.state))
        except Exception as error:  # recorded; the attempt has failed already
            self.transcript.add(EventKind.A2A_CANCEL, task_id=task_id,
                                error=f"{error.__class__.__name__}: {error}"[:500])
