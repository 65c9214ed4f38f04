"""Agents that do the work: the built-in LLM tool loop, outside commands (process adapter), known
agent CLIs (claude-code, codex, ... through their presets), webhooks (http adapter), remote A2A
agents (a2a adapter), confined to a workspace and checked
by the task's verify command.

Depends on the core model, memory and the Store and Gateway protocols.
"""

from __future__ import annotations

from typing import assert_never

from ruflo.agents.base import (
    COMPANY_TOOLS,
    SOLO_TOOLS,
    SWARM_TOOLS,
    Executor,
    Limits,
    OutcomeKind,
    RunContext,
    SubtaskSpec,
    TaskOutcome,
    TaskTool,
)
from ruflo.agents.verify import Verified, store_outcome, verify_task
from ruflo.model import AdapterKind, Agent

__all__ = ["COMPANY_TOOLS", "SOLO_TOOLS", "SWARM_TOOLS", "Executor", "Limits", "OutcomeKind",
           "RunContext", "SubtaskSpec", "TaskOutcome", "TaskTool", "Verified", "executor_for",
           "store_outcome", "verify_task"]


def executor_for(agent: Agent) -> Executor:
    """The executor for the agent's adapter, wrapped so the task's verify command decides."""
    inner: Executor
    if agent.adapter is AdapterKind.LLM:
        from ruflo.agents.loop import LLMExecutor

        inner = LLMExecutor()
    elif agent.adapter is AdapterKind.PROCESS:
        from ruflo.agents.process import ProcessExecutor

        inner = ProcessExecutor()
    elif agent.adapter is AdapterKind.HTTP:
        from ruflo.agents.http import HttpExecutor

        inner = HttpExecutor()
    elif agent.adapter is AdapterKind.A2A:
        from ruflo.agents.a2a import A2AExecutor

        inner = A2AExecutor()
    elif (agent.adapter is AdapterKind.CLAUDE_CODE or agent.adapter is AdapterKind.CODEX
          or agent.adapter is AdapterKind.GEMINI_CLI or agent.adapter is AdapterKind.OPENCODE
          or agent.adapter is AdapterKind.AIDER):
        from ruflo.agents.presets import preset_for
        from ruflo.agents.presets.executor import PresetExecutor

        inner = PresetExecutor(preset_for(agent.adapter))
    else:
        assert_never(agent.adapter)
    return Verified(inner)
