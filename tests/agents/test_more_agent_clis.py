"""The real Gemini CLI, OpenCode and aider as hive agents, through the ScriptedGateway in their
own protocols (Gemini's streamGenerateContent; chat completions for the other two): each reads a
file of a git repository and edits it in its attempt's worktree, the task's verify passes, the
edit is merged into the hive's branch, and every call the program made is in the ledger through
the relay. A budget stop or a refused key met mid-attempt ends the program within 10 s and
pauses the hive; resume finishes the task."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_clis import fix_rules, require_agent_cli
from ruflo.agents.commands import command_env
from ruflo.agents.gitwork import init_repo
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.control import resume_hive
from ruflo.engine.isolation import isolation_config
from ruflo.event_kinds import EventKind
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import AdapterKind, Agent, Budget, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "sk-more-clis"
CLIS = ["gemini-cli", "opencode", "aider"]
BUG, FIX = "    return a - b", "    return a + b"
CALC = f"def add(a, b):\n{BUG}\n"
VERIFY = "grep -qx '    return a + b' calc.py"
FAST = LiveParams(lease_seconds=30.0, time_unit=0.05, poll_seconds=0.2)
FINAL = "Fixed add."


def git_show(repo: Path, what: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", what], check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'data' / 'ruflo.db'}")
    yield opened
    opened.close()


@pytest.fixture
def gateway() -> Iterator[ScriptedGateway]:
    server = ScriptedGateway({"keys": [KEY], "default": {"content": "ok"}})
    server.start()
    yield server
    server.stop()


def cli_hive(store: SqlStore, tmp_path: Path, cli: str, budget: Budget | None = None) -> Hive:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text(CALC)
    init_repo(repo)
    isolation, _ = isolation_config(repo, None)
    hive = Hive(id="hive0", name=cli, mode=Mode.SWARM, objective="keep add correct",
                workspace=str(repo), budget=budget or Budget(), config=isolation)
    # aider runs with --no-git (its git use writes, and the sandbox shows git read-only), so it
    # does not find the files itself: it is given the file.
    config = {"timeout": 120, **({"files": ["calc.py"]} if cli == "aider" else {})}
    agent = Agent(id="hive0-a0", hive_id=hive.id, name=cli, skills=("python",),
                  adapter=AdapterKind(cli), adapter_config=config)
    task = Task(id="hive0-t1", hive_id=hive.id, title="Fix add in calc.py", skills=("python",),
                description="add(a, b) must return the sum; the code is in calc.py",
                verify=VERIFY)
    store.create_hive(hive, agents=[agent], tasks=[task])
    return hive


async def drive(store: SqlStore, hive: Hive, client: GatewayClient) -> Hive:
    engine = BoardEngine(store, hive.id, gateway=client, params=FAST, env=command_env())
    return await asyncio.wait_for(engine.run(), 150)


def why(store: SqlStore, hive: Hive) -> str:
    return "; ".join(f"{e.kind}: {str(e.data)[:400]}" for e in store.events(hive.id, kinds=[
        EventKind.PROCESS_EXITED, EventKind.PROCESS_OUTPUT, EventKind.TASK_FAILED,
        EventKind.TASK_RELEASED, EventKind.AGENT_PAUSED]))


@pytest.mark.parametrize("cli", CLIS)
async def test_the_real_cli_reads_and_edits_a_file_in_its_worktree_and_is_metered(
        cli: str, store: SqlStore, gateway: ScriptedGateway, tmp_path: Path) -> None:
    require_agent_cli(cli)
    gateway.set_rules(fix_rules(cli, "calc.py", BUG, FIX, final=FINAL))
    hive = cli_hive(store, tmp_path, cli)
    async with GatewayClient(gateway.base_url, KEY, store=store) as client:
        final = await drive(store, hive, client)

    assert final.status is HiveStatus.DONE, why(store, hive)
    [task] = store.list_tasks(hive.id)
    assert task.state is TaskState.DONE
    assert task.verified is True
    repo = Path(hive.workspace)
    # The edit was made in the attempt's worktree and merged into the hive's branch; the
    # user's folder is untouched until they apply it.
    assert git_show(repo, f"ruflo/{hive.id}:calc.py") == f"def add(a, b):\n{FIX}\n"
    assert (repo / "calc.py").read_text() == CALC
    # The edit rule answers only a request carrying the file's text: the program read it
    # (aider reads the file it is given before its first request).
    served = [r["rule"] for r in gateway.requests if r["rule"]]
    assert [r for r in served if r.endswith((":read", ":edit"))] == (
        ["aider:calc.py:edit"] if cli == "aider"
        else [f"{cli}:calc.py:read", f"{cli}:calc.py:edit"])
    # Every call the program made went through the relay: one ledger entry each, billed to
    # this agent and task, with the gateway's own key (never the attempt's token) upstream.
    ledger = store.ledger(hive_id=hive.id)
    assert len(ledger) == len(gateway.requests) > 0
    assert {(e.agent_id, e.task_id) for e in ledger} == {("hive0-a0", "hive0-t1")}
    assert sum(e.total_tokens for e in ledger) == gateway.served.total_tokens
    assert {r["key"] for r in gateway.requests} == {KEY}
    assert {r["protocol"] for r in gateway.requests} == (
        {"gemini"} if cli == "gemini-cli" else {"chat"})
    [started] = store.events(hive.id, kinds=[EventKind.PROCESS_STARTED])
    assert started.data["agent_cli"] == cli
    [exited] = [e for e in store.events(hive.id, kinds=[EventKind.PROCESS_EXITED])
                if e.data.get("agent_cli") == cli]
    assert exited.data["exit_code"] == 0
    assert FINAL in exited.data["final"]
    calls = [e.data["name"] for e in store.events(hive.id, kinds=[EventKind.TOOL_CALL])]
    assert calls == {"gemini-cli": ["read_file", "replace"], "opencode": ["read", "edit"],
                     "aider": ["edit"]}[cli]
    results = store.events(hive.id, kinds=[EventKind.TOOL_RESULT])
    assert results
    assert all(r.data["ok"] for r in results)
    if cli == "opencode":  # Gemini CLI's stream-json leaves a file's text out of the result
        assert "a - b" in results[0].data["content"]
    turns = store.events(hive.id, kinds=[EventKind.AGENT_TURN])
    assert any(FINAL in (t.data.get("content") or "") for t in turns)


@pytest.mark.parametrize("cli", CLIS)
async def test_a_budget_stop_mid_attempt_ends_the_cli_and_pauses_and_resume_finishes(
        cli: str, store: SqlStore, gateway: ScriptedGateway, tmp_path: Path) -> None:
    require_agent_cli(cli)
    rules = fix_rules(cli, "calc.py", BUG, FIX, final=FINAL)
    if cli == "aider":
        # aider makes one call per request unless it must go on: its first edit breaks the
        # syntax, its linter says so, and it asks the model again — past the budget.
        broken = "calc.py\n```\n<<<<<<< SEARCH\ndef add(a, b):\n=======\ndef add(a, b)\n" \
                 ">>>>>>> REPLACE\n```\n"
        rules.insert(0, {"name": "aider:broken", "match": rules[0]["match"], "times": 1,
                         "reply": {"content": broken}})
    gateway.set_rules(rules)
    # Spent by the first call (aider's prompt is the smallest: no tools in it).
    hive = cli_hive(store, tmp_path, cli, budget=Budget(max_tokens=500 if cli == "aider" else 1000))
    async with GatewayClient(gateway.base_url, KEY, store=store) as client:
        paused = await drive(store, hive, client)
        assert paused.status is HiveStatus.PAUSED, why(store, hive)
        assert "spent its budget" in (paused.pause_reason or "")
        [stopped] = [e for e in store.events(hive.id, kinds=[EventKind.PROCESS_EXITED])
                     if e.data.get("stopped")]
        [exceeded] = store.events(hive.id, kinds=[EventKind.BUDGET_EXCEEDED])
        assert (stopped.ts - exceeded.ts).total_seconds() < 10, "ended within 10 s"
        [task] = store.list_tasks(hive.id)
        assert task.state is TaskState.OPEN, "the claim went back to the board"

        resume_hive(store, hive.id, budget=Budget(max_tokens=10_000_000))
        final = await drive(store, hive, client)
    assert final.status is HiveStatus.DONE, why(store, hive)
    [task] = store.list_tasks(hive.id)
    assert task.state is TaskState.DONE
    assert task.verified is True
    assert git_show(Path(hive.workspace), f"ruflo/{hive.id}:calc.py") == \
        f"def add(a, b):\n{FIX}\n"


@pytest.mark.parametrize("cli", CLIS)
async def test_a_refused_key_mid_attempt_ends_the_cli_and_pauses_and_resume_finishes(
        cli: str, store: SqlStore, gateway: ScriptedGateway, tmp_path: Path) -> None:
    require_agent_cli(cli)
    rules = fix_rules(cli, "calc.py", BUG, FIX, final=FINAL)
    edit = next(r for r in rules if r["name"].endswith(":edit"))
    refused_at: list[float] = []

    def note(_body: object) -> bool:
        refused_at.append(time.time())
        return True

    # The gateway refuses the key when the program asks for its edit (aider: its one call).
    refusal = {"name": "refuse", "match": {**edit["match"], "when": note},
               "fault": "key_refused", "times": 1}
    gateway.set_rules([refusal, *rules])
    hive = cli_hive(store, tmp_path, cli)
    async with GatewayClient(gateway.base_url, KEY, store=store) as client:
        paused = await drive(store, hive, client)
        assert paused.status is HiveStatus.PAUSED, why(store, hive)
        assert paused.pause_reason == "gateway refused the key"
        assert refused_at, "the program made the call that met the refusal"
        [stopped] = [e for e in store.events(hive.id, kinds=[EventKind.PROCESS_EXITED])
                     if e.data.get("stopped")]
        assert stopped.ts.timestamp() - refused_at[-1] < 10, "ended within 10 s"
        assert store.list_tasks(hive.id)[0].state is TaskState.OPEN

        resume_hive(store, hive.id)
        final = await drive(store, hive, client)
    assert final.status is HiveStatus.DONE, why(store, hive)
    assert store.list_tasks(hive.id)[0].verified is True
    assert git_show(Path(hive.workspace), f"ruflo/{hive.id}:calc.py") == \
        f"def add(a, b):\n{FIX}\n"
