"""ScriptedGateway rules shared by the test folders that run the built-in agent for real."""

from __future__ import annotations

import json
from typing import Any


def work_rules(name: str, *, delay: float = 0.0) -> list[dict[str, Any]]:
    """Turn 1 writes `<name>.txt` (after `delay` seconds), turn 2 completes: one whole
    attempt of the task titled `name`."""
    match = f"^Task: {name}$|^Task: {name}\\n"
    first: dict[str, Any] = {
        "name": f"{name}-write", "match": {"last_user": match, "turn": 1},
        "reply": {"tool_calls": [{"name": "write_file",
                                  "arguments": {"path": f"{name}.txt", "content": name}}]}}
    if delay:
        first["delay"] = delay
    done = {"name": f"{name}-complete", "match": {"last_user": match, "turn": 2},
            "reply": {"tool_calls": [{"name": "complete",
                                      "arguments": {"result": f"wrote {name}.txt"}}]}}
    return [first, done]


def plan_rule(*titles: str) -> dict[str, Any]:
    """The planner's answer: one task per title (engine/plan.py's JSON)."""
    return {"name": "plan", "match": {"system": "You plan work"}, "reply": {"content": json.dumps(
        {"tasks": [{"id": f"t{n}", "title": title} for n, title in enumerate(titles)]})}}
