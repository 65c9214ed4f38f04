"""Fixtures for live company-mode tests: a real SQLite store, a ScriptedGateway over real HTTP,
the real GatewayClient, and a three-level org (root, two managers, four engineers)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ruflo.agents.commands import command_env
from ruflo.engine.board_engine import LiveParams
from ruflo.engine.clock import REAL_CLOCK, LiveClock
from ruflo.engine.company import CompanyEngine
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, Budget, Hive, Mode, TaskState
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

KEY = "sk-company-test"
FAST = LiveParams(lease_seconds=5.0, time_unit=0.05, poll_seconds=0.2)
"""Long enough that a loaded machine never loses a lease by a late renewal (exact call counts)."""
RUFLO = Path(sys.executable).parent / "ruflo"


def engine(store: SqlStore, hive_id: str, client: GatewayClient | None,
           params: LiveParams = FAST, clock: LiveClock = REAL_CLOCK) -> CompanyEngine:
    return CompanyEngine(store, hive_id, gateway=client, params=params, env=command_env(),
                         clock=clock)


async def ruflo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The real `ruflo` program, off the event loop so the test's engine keeps running."""
    return await asyncio.to_thread(subprocess.run, [str(RUFLO), *args], env=env,
                                   capture_output=True, text=True, timeout=60, check=False)


def at_rest(store: SqlStore, hive_id: str) -> bool:
    """No ticket is claimed: no agent of the hive works now."""
    return not store.list_tasks(hive_id, states=[TaskState.CLAIMED])


@pytest.fixture
def gateway_key() -> str:
    return KEY
PLAN_USAGE = {"prompt_tokens": 300, "completion_tokens": 60}
WORK_USAGE = {"prompt_tokens": 200, "completion_tokens": 20}

ORG: list[tuple[str, str | None, tuple[str, ...], str]] = [
    ("ceo", None, (), "runs the company, plans the objective"),
    ("eng-lead", "ceo", (), "leads the python backend engineers"),
    ("docs-lead", "ceo", (), "leads the technical writers"),
    ("dev-1", "eng-lead", ("python",), "python backend engineer"),
    ("dev-2", "eng-lead", ("python",), "python backend engineer"),
    ("writer-1", "docs-lead", ("docs",), "technical writer"),
    ("writer-2", "docs-lead", ("docs",), "technical writer"),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'data' / 'ruflo.db'}")
    yield opened
    opened.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """The store on SQLite, and on Postgres (a fresh schema) for the tests that take both."""
    url = (f"sqlite:///{tmp_path / 'data' / 'ruflo.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_schema_url"))
    opened = open_store(url)
    yield opened
    opened.close()


def org_agents(hive_id: str, budgets: dict[str, Budget] | None = None) -> list[Agent]:
    budgets = budgets or {}
    return [Agent(id=f"{hive_id}-{name}", hive_id=hive_id, name=name, role=name.split("-")[0],
                  title=name, capabilities=caps, skills=skills,
                  reports_to=f"{hive_id}-{boss}" if boss else None,
                  budget=budgets.get(name, Budget()))
            for name, boss, skills, caps in ORG]


def make_company(store: SqlStore, tmp_path: Path, *, objective: str = "Ship the greeter",
                 budget: Budget | None = None, agent_budgets: dict[str, Budget] | None = None,
                 config: dict[str, Any] | None = None) -> Hive:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    hive = Hive(id=f"co{len(store.list_hives())}", name="company", mode=Mode.COMPANY,
                objective=objective, workspace=str(workspace), budget=budget or Budget(),
                config=config or {})
    store.create_hive(hive, agents=org_agents(hive.id, agent_budgets))
    return hive


def plan_rule(manager: str, ticket: str, tickets: Sequence[dict[str, Any]] | None = None, *,
              action: str = "split", delay: float = 0.0, times: int | None = None,
              **extra: Any) -> dict[str, Any]:
    """The manager's planning call for a ticket answers with the plan tool."""
    arguments: dict[str, Any] = {"action": action, **extra}
    if tickets is not None:
        arguments["tickets"] = list(tickets)
    rule: dict[str, Any] = {
        "name": f"plan-{manager}-{ticket}",
        "match": {"system": f"^You are {manager},", "last_user": f"^Ticket: {ticket}",
                  "tool": "plan"},
        "reply": {"tool_calls": [{"name": "plan", "arguments": arguments}],
                  "usage": PLAN_USAGE}}
    if delay:
        rule["delay"] = delay
    if times is not None:
        rule["times"] = times
    return rule


def work_rules(agent: str, title: str, path: str, content: str) -> list[dict[str, Any]]:
    """A whole attempt of the built-in agent: write a file, then complete."""
    match = {"system": f"^You are {agent},", "last_user": f"^Task: {title}", "tool": "complete"}
    return [
        {"name": f"{agent}-write-{path}", "match": {**match, "turn": 1},
         "reply": {"tool_calls": [{"name": "write_file", "arguments": {
             "path": path, "content": content}}], "usage": WORK_USAGE}},
        {"name": f"{agent}-complete-{path}", "match": {**match, "turn": 2},
         "reply": {"tool_calls": [{"name": "complete", "arguments": {
             "result": f"wrote {path}"}}], "usage": WORK_USAGE}},
    ]


def integrate_rule(agent: str, title: str) -> dict[str, Any]:
    return {"name": f"{agent}-integrate-{title}",
            "match": {"system": f"^You are {agent},", "last_user": f"^Task: {title}",
                      "tool": "complete"},
            "reply": {"tool_calls": [{"name": "complete", "arguments": {
                "result": f"integrated {title}"}}], "usage": WORK_USAGE}}


def leaf(title: str, report: str, path: str, skills: str) -> dict[str, Any]:
    return {"title": title, "report": report, "skills": [skills],
            "verify": f"grep -qx {path.split('.')[0]} {path}"}


def company_script(server: ScriptedGateway, *, eng_lead_delay: float = 0.0) -> None:
    """The whole three-level run: the ceo splits the objective for its two leads, each lead
    splits its ticket for its two engineers, engineers write files, owners integrate."""
    rules: list[dict[str, Any]] = []
    if eng_lead_delay:
        rules.append(plan_rule("eng-lead", "Build the code", [], delay=eng_lead_delay, times=1))
    rules += [
        plan_rule("ceo", "Ship the greeter", [
            {"title": "Build the code", "report": "eng-lead", "skills": ["python"]},
            {"title": "Write the docs", "report": "docs-lead", "skills": ["docs"]}]),
        plan_rule("eng-lead", "Build the code", [leaf("Write a.py", "dev-1", "a.py", "python"),
                                                 leaf("Write b.py", "dev-2", "b.py", "python")]),
        plan_rule("docs-lead", "Write the docs", [
            leaf("Write guide.md", "writer-1", "guide.md", "docs"),
            leaf("Write faq.md", "writer-2", "faq.md", "docs")]),
        # After a lost eng-lead, the ceo plans its ticket itself, for the engineers it adopted.
        plan_rule("ceo", "Build the code", [leaf("Write a.py", "dev-1", "a.py", "python"),
                                            leaf("Write b.py", "dev-2", "b.py", "python")]),
    ]
    for agent, title, path in [("dev-1", "Write a.py", "a.py"), ("dev-2", "Write b.py", "b.py"),
                               ("writer-1", "Write guide.md", "guide.md"),
                               ("writer-2", "Write faq.md", "faq.md")]:
        rules += work_rules(agent, title, path, path.split(".")[0])
    rules += [integrate_rule("eng-lead", "Build the code"),
              integrate_rule("ceo", "Build the code"),
              integrate_rule("docs-lead", "Write the docs"),
              integrate_rule("ceo", "Ship the greeter")]
    server.add_rules(*rules)


VERIFY_ALL = "test -f a.py && test -f b.py && test -f guide.md && test -f faq.md"
