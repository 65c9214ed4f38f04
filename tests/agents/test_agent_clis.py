"""The real agent CLIs (Claude Code, Codex) as hive agents, through the ScriptedGateway in
their own protocols: each reads a file and edits it with its own tools, the task's verify passes,
every call it makes is in the ledger through the relay; a budget stop or a refused key met
mid-attempt ends the program within 10 s and pauses the hive, and resume finishes the task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_clis import fix_rules, require_agent_cli
from ruflo.agents import OutcomeKind, executor_for
from ruflo.agents.commands import command_env
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.control import resume_hive
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import AdapterKind, Agent, Budget, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATEWAY_KEY = "sk-test"
"""The agents fixtures' gateway key (tests/agents/conftest.py; not imported: another folder's
conftest module can stand under that name in a whole-suite run)."""

CLIS = ["claude-code", "codex"]
BUG, FIX = "    return a - b", "    return a + b"
CALC = f"def add(a, b):\n{BUG}\n"
VERIFY = "grep -qx '    return a + b' calc.py"
FAST = LiveParams(lease_seconds=30.0, time_unit=0.05, poll_seconds=0.2)
STOP_WITHIN = 10.0
"""Seconds from the refused call to the program's end (the issue's bound)."""


@pytest.mark.parametrize("cli", CLIS)
async def test_the_real_cli_reads_and_edits_a_file_and_its_calls_are_in_the_ledger(
        cli: str, make_board, scripted, gateway_for, workspace: Path) -> None:
    require_agent_cli(cli)
    (workspace / "calc.py").write_text(CALC)
    agent = Agent(id="a1", hive_id="h1", name=cli, adapter=AdapterKind(cli),
                  adapter_config={"timeout": 120})
    board = make_board(agent=agent, verify=VERIFY)
    gateway = scripted({"keys": [GATEWAY_KEY], "default": {"content": "ok"},
                        "rules": fix_rules(cli, "calc.py", BUG, FIX, final="Fixed add.")})
    client: GatewayClient = gateway_for(gateway, board.store)

    outcome = await executor_for(agent).run(board.task, agent, board.hive,
                                            board.context(client, env=command_env()))

    assert outcome.kind is OutcomeKind.COMPLETE, outcome
    assert outcome.verified is True
    assert outcome.result == "Fixed add."
    assert (workspace / "calc.py").read_text() == f"def add(a, b):\n{FIX}\n"
    served = [r["rule"] for r in gateway.requests]
    assert [r for r in served if r and r.startswith(cli)] == [
        f"{cli}:calc.py:read", f"{cli}:calc.py:edit", f"{cli}:calc.py:done"]
    ledger = board.store.ledger(hive_id=board.hive.id)
    assert len(ledger) == len(gateway.requests), "every call the program made was metered"
    assert {(e.agent_id, e.task_id) for e in ledger} == {("a1", "t1")}
    assert sum(e.total_tokens for e in ledger) == gateway.served.total_tokens
    calls = [e.data["name"] for e in board.transcript("tool_call")]
    assert calls == (["Read", "Edit"] if cli == "claude-code" else ["shell", "apply_patch"])
    results = board.transcript("tool_result")
    assert "a - b" in results[0].data["content"]
    assert all(r.data["ok"] for r in results)
    [exited] = board.transcript("process_exited")
    assert exited.data["exit_code"] == 0
    assert exited.data["final"] == "Fixed add."
    [started] = board.transcript("process_started")
    assert {r["key"] for r in gateway.requests} == {GATEWAY_KEY}, \
        "the relay swapped the attempt's token for the gateway key"
    assert not any(GATEWAY_KEY in str(e.data) for e in board.transcript())
    assert started.data["agent_cli"] == cli


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'data' / 'ruflo.db'}")
    yield opened
    opened.close()


def cli_hive(store: SqlStore, tmp_path: Path, cli: str, budget: Budget | None = None) -> Hive:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "calc.py").write_text(CALC)
    hive = Hive(id="hive0", name="cli", mode=Mode.SWARM, objective="keep add correct",
                workspace=str(workspace), budget=budget or Budget())
    agent = Agent(id="hive0-a0", hive_id=hive.id, name=cli, skills=("python",),
                  adapter=AdapterKind(cli), adapter_config={"timeout": 120})
    task = Task(id="hive0-t1", hive_id=hive.id, title="Fix add", skills=("python",),
                verify=VERIFY)
    store.create_hive(hive, agents=[agent], tasks=[task])
    return hive


async def drive(store: SqlStore, hive: Hive, client: GatewayClient) -> Hive:
    engine = BoardEngine(store, hive.id, gateway=client, params=FAST, env=command_env())
    return await asyncio.wait_for(engine.run(), 120)


def stopped_within(store: SqlStore, hive: Hive, refused_at: float) -> float:
    [stopped] = [e for e in store.events(hive.id, kinds=["process_exited"])
                 if e.data.get("stopped")]
    return stopped.ts.timestamp() - refused_at


def refusal_clock(rule: dict[str, Any], seen: list[float]) -> dict[str, Any]:
    """`rule` noting the wall time it answers at (its match's predicate runs per request)."""
    def note(body: Any) -> bool:
        seen.append(time.time())
        return True
    return {**rule, "match": {**rule["match"], "when": note}}


@pytest.mark.parametrize("cli", CLIS)
async def test_a_budget_stop_mid_attempt_ends_the_cli_and_pauses_and_resume_finishes(
        cli: str, store: SqlStore, scripted, tmp_path: Path) -> None:
    require_agent_cli(cli)
    read, edit, done = fix_rules(cli, "calc.py", BUG, FIX)
    gateway: ScriptedGateway = scripted({"keys": [GATEWAY_KEY], "default": {"content": "ok"},
                                         "rules": [read, edit, done]})
    hive = cli_hive(store, tmp_path, cli, budget=Budget(max_tokens=1000))
    async with GatewayClient(gateway.base_url, GATEWAY_KEY, store=store) as client:
        paused = await drive(store, hive, client)
        assert paused.status is HiveStatus.PAUSED, paused
        assert "spent its budget" in (paused.pause_reason or "")
        [exceeded] = store.events(hive.id, kinds=["budget_exceeded"])
        assert stopped_within(store, hive, exceeded.ts.timestamp()) < STOP_WITHIN
        [task] = store.list_tasks(hive.id)
        assert task.state is TaskState.OPEN, "the claim went back to the board"
        assert (Path(hive.workspace) / "calc.py").read_text() == CALC

        resume_hive(store, hive.id, budget=Budget(max_tokens=10_000_000))
        final = await drive(store, hive, client)
    assert final.status is HiveStatus.DONE, final.pause_reason
    [task] = store.list_tasks(hive.id)
    assert task.state is TaskState.DONE
    assert task.verified is True
    assert "a + b" in (Path(hive.workspace) / "calc.py").read_text()


@pytest.mark.parametrize("cli", CLIS)
async def test_a_refused_key_mid_attempt_ends_the_cli_and_pauses_and_resume_finishes(
        cli: str, store: SqlStore, scripted, tmp_path: Path) -> None:
    require_agent_cli(cli)
    read, edit, done = fix_rules(cli, "calc.py", BUG, FIX)
    refused_at: list[float] = []
    refusal = refusal_clock({"name": "refuse", "match": edit["match"], "fault": "key_refused",
                             "times": 1}, refused_at)
    gateway: ScriptedGateway = scripted({"keys": [GATEWAY_KEY], "default": {"content": "ok"},
                                         "rules": [read, refusal, edit, done]})
    hive = cli_hive(store, tmp_path, cli)
    async with GatewayClient(gateway.base_url, GATEWAY_KEY, store=store) as client:
        paused = await drive(store, hive, client)
        assert paused.status is HiveStatus.PAUSED, paused
        assert paused.pause_reason == "gateway refused the key"
        assert refused_at, "the program made the call that met the refusal"
        assert stopped_within(store, hive, refused_at[-1]) < STOP_WITHIN
        assert store.list_tasks(hive.id)[0].state is TaskState.OPEN

        resume_hive(store, hive.id)
        final = await drive(store, hive, client)
    assert final.status is HiveStatus.DONE, final.pause_reason
    assert store.list_tasks(hive.id)[0].verified is True
    assert "a + b" in (Path(hive.workspace) / "calc.py").read_text()
