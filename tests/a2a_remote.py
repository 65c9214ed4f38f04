"""A small remote A2A agent built with a2a-sdk, served by uvicorn on a loopback port, for the
tests of the a2a adapter: it answers each task as `behaviour` says (write a file and complete,
fail, or hang until cancelled) and keeps the prompts it was sent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from a2a.helpers.proto_helpers import new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandlerV2
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    Part,
    Task,
    TaskState,
    TaskStatus,
)
from starlette.applications import Starlette

from server_thread import ServerThread


class Remote(AgentExecutor):
    """The remote agent's work: `behaviour` is "write", "fail" or "hang"."""

    behaviour: ClassVar[str] = "write"
    prompts: ClassVar[list[str]] = []
    cancelled: ClassVar[list[str]] = []

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None
        assert context.context_id is not None
        Remote.prompts.append(context.get_user_input())
        await event_queue.enqueue_event(Task(id=context.task_id, context_id=context.context_id,
                                             status=TaskStatus(
                                                 state=TaskState.TASK_STATE_SUBMITTED)))
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work(updater.new_agent_message([new_text_part("on it")]))
        if Remote.behaviour == "fail":
            await updater.failed(updater.new_agent_message([new_text_part("the disk is full")]))
        elif Remote.behaviour == "hang":
            await asyncio.Event().wait()  # until the task is cancelled
        else:
            await updater.add_artifact([new_text_part("wrote calc.txt"),
                                        Part(text="ok\n", filename="calc.txt"),
                                        Part(text="x", filename="../outside.txt")],
                                       name="work")
            await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None
        Remote.cancelled.append(context.task_id)
        current = context.current_task
        assert current is not None
        await TaskUpdater(event_queue, context.task_id, current.context_id).cancel()


@contextmanager
def remote_agent(behaviour: str) -> Iterator[str]:
    """Serve the remote agent; yields its base URL (the card is at the well-known path)."""
    Remote.behaviour = behaviour
    Remote.prompts = []
    Remote.cancelled = []
    app = Starlette()
    thread = ServerThread(app, None)
    url = f"http://127.0.0.1:{thread.port}"
    card = AgentCard(name="remote", description="a test agent", version="1",
                     supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC",
                                                          protocol_version="1.0")],
                     capabilities=AgentCapabilities(streaming=True),
                     default_input_modes=["text/plain"], default_output_modes=["text/plain"])
    handler = DefaultRequestHandlerV2(Remote(), InMemoryTaskStore(), card)
    app.router.routes.extend([*create_agent_card_routes(card),
                              *create_jsonrpc_routes(handler, "/")])
    thread.start()
    try:
        yield url
    finally:
        thread.stop()
