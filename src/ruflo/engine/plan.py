"""A hive's first board: tasks from a workload file, or an objective planned into tasks by one
metered coordination call to the LLM. Depends on the model, the Gateway protocol and pydantic.

The planner must answer JSON: {"tasks": [{"id", "title", "description", "skills", "depends_on",
"verify"}]}. Anything else is refused with the reason and nothing is posted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ruflo.errors import PolicyError
from ruflo.model import CostKind, Hive, Task

if TYPE_CHECKING:
    from ruflo.gateway.base import Gateway

MAX_PLANNED_TASKS = 20

PLANNER_PROMPT = """You plan work for a hive of {agents} agents that share one workspace folder \
(a code repository or documents). Split the objective into a few tasks that agents can do in \
parallel where possible; say which task waits on which.

Answer with JSON only, no prose, exactly this shape:
{{"tasks": [{{"id": "short-id", "title": "what to do, in a few words", \
"description": "enough detail to do it alone", "skills": ["python"], \
"depends_on": ["id of a task that must be done first"], \
"verify": "a shell command whose exit code 0 proves the task is done, or null"}}]}}

At most {limit} tasks. Ids are short, unique, made of letters, digits, - and _. A task may only \
depend on tasks in the list, without cycles."""


class _PlannedTask(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str = Field(min_length=1, max_length=300)
    description: str = ""
    skills: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    verify: str | None = None
    priority: int = Field(default=1, ge=0, le=1000)
    effort: float = Field(default=1.0, gt=0, le=1000)


class _Plan(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tasks: list[_PlannedTask] = Field(min_length=1, max_length=MAX_PLANNED_TASKS)


def board_id(hive_id: str, local_id: str) -> str:
    """A task's id on the store: unique across hives, still readable (`3f9a2c1b.build`)."""
    return f"{hive_id[:8]}.{local_id}"


PLAN_MAX_TOKENS = 4096
"""Most tokens the planner's answer may take (a plan of MAX_PLANNED_TASKS tasks fits)."""


def tasks_for_hive(hive_id: str, tasks: Sequence[Task]) -> list[Task]:
    """Workload or planned tasks with store-wide ids (dependencies renamed alike)."""
    return [replace(t, id=board_id(hive_id, t.id), hive_id=hive_id,
                    depends_on=tuple(board_id(hive_id, d) for d in t.depends_on))
            for t in tasks]


async def plan_objective(gateway: Gateway, hive: Hive, *, model: str, agents: int,
                         max_tokens: int = PLAN_MAX_TOKENS) -> tuple[list[Task], str]:
    """Ask the LLM to split the hive's objective into tasks (one coordination call, metered to
    the hive, its answer capped at `max_tokens`: what the hive's budget books for it). Returns
    the tasks (ids ready for the store) and the raw answer."""
    from ruflo.gateway.base import CallContext

    messages = [
        {"role": "system", "content": PLANNER_PROMPT.format(agents=agents,
                                                            limit=MAX_PLANNED_TASKS)},
        {"role": "user", "content": f"Objective: {hive.objective}"},
    ]
    answer = await gateway.chat(messages, model=model, max_tokens=max_tokens,
                                context=CallContext(hive_id=hive.id,
                                                    kind=CostKind.COORDINATION))
    text = answer.content or ""
    return tasks_for_hive(hive.id, parse_plan(text, hive.id)), text


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def answer_json(text: str) -> Any:
    """A model's JSON answer, inside a ``` fence or not. Raises json.JSONDecodeError."""
    body = text.strip()
    fenced = _FENCE.match(body)
    return json.loads(fenced.group(1) if fenced else body)


def first_problem(error: ValidationError) -> str:
    """Where an answer first breaks its schema, and how, in one line."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"{where}: {first['msg']}"


def parse_plan(text: str, hive_id: str = "") -> list[Task]:
    """The planner's answer as tasks (local ids). Raises PolicyError saying what was wrong."""
    try:
        data = answer_json(text)
    except json.JSONDecodeError as error:
        raise PolicyError(_refused(f"it is not JSON ({error.msg} at line {error.lineno}, "
                                   f"column {error.colno}): {_clip(text)}")) from None
    try:
        plan = _Plan.model_validate(data)
    except ValidationError as error:
        raise PolicyError(_refused(first_problem(error))) from None
    ids = [t.id for t in plan.tasks]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise PolicyError(_refused(f"duplicate task ids {', '.join(duplicates)}"))
    for task in plan.tasks:
        unknown = [d for d in task.depends_on if d not in ids or d == task.id]
        if unknown:
            raise PolicyError(_refused(f"task {task.id!r} depends on {', '.join(unknown)}, "
                                       "not another task of the plan"))
    from ruflo.policies import find_cycle

    cycle = find_cycle({t.id: list(t.depends_on) for t in plan.tasks})
    if cycle:
        raise PolicyError(_refused("its tasks wait on each other in a cycle: "
                                   + " → ".join(cycle)))
    return [Task(id=t.id, hive_id=hive_id, title=t.title, description=t.description,
                 skills=tuple(t.skills), priority=t.priority, effort=t.effort,
                 depends_on=tuple(dict.fromkeys(t.depends_on)), verify=t.verify or None)
            for t in plan.tasks]


def _refused(why: str) -> str:
    return (f"the planner's answer was not a usable task list: {why}; nothing was posted. "
            "Try again, pick another model with --model, or give the tasks with --workload")


def _clip(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit - 1] + "…")
