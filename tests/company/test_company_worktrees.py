"""Company mode under git isolation, on SQLite and Postgres: two engineers' branches each pass
alone but break a check once both are merged; the integration ticket goes to their manager
(not back to the engineer), who integrates it in its own worktree with the same merge machinery,
and the final tree holds both sides' work."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from ruflo.agents.gitwork import HiveRepo, init_repo
from ruflo.engine.isolation import isolation_config
from ruflo.event_kinds import EventKind
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import HiveStatus, TaskState
from ruflo.store.sql import SqlStore
from waiting import until

from .conftest import KEY, engine, integrate_rule, make_company, plan_rule, work_rules

OTHER = {"left": "right", "right": "left"}


def leaf(name: str, report: str) -> dict[str, Any]:
    """Its check passes alone; with the other side merged too it needs both.txt."""
    return {"title": f"Write {name}", "report": report, "skills": ["python"],
            "verify": f"grep -q {name} {name}.txt && {{ test ! -f {OTHER[name]}.txt || "
                      f"grep -q ok both.txt; }}"}


def show(repo: Path, spec: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", spec], check=True,
                          capture_output=True, text=True).stdout


async def test_a_merge_that_breaks_a_check_goes_to_the_owners_manager(
        any_store: SqlStore, gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    store = any_store
    rules: list[dict[str, Any]] = [
        plan_rule("ceo", "Ship", [{"title": "Build", "report": "eng-lead",
                                   "skills": ["python"]}]),
        plan_rule("eng-lead", "Build", [leaf("left", "dev-1"), leaf("right", "dev-2")]),
        # The integration ticket: the manager does it itself.
        plan_rule("eng-lead", "Integrate: Write (left|right)", action="self"),
        integrate_rule("eng-lead", "Build"), integrate_rule("ceo", "Ship")]
    for agent, name in (("dev-1", "left"), ("dev-2", "right")):
        work = work_rules(agent, f"Write {name}", f"{name}.txt", name)
        work[0]["hold"] = "both-cut"  # both branches start from the same integration head
        rules += work
    rules += work_rules("eng-lead", "Integrate: Write (left|right)", "both.txt", "ok")
    gateway_server.add_rules(*rules)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "README").write_text("the product\n")
    init_repo(workspace)
    config, _ = isolation_config(workspace, None)
    config["verify"] = "test -f left.txt && test -f right.txt && grep -q ok both.txt"
    hive = make_company(store, tmp_path, objective="Ship", config=config)
    agents = {a.name: a.id for a in store.list_agents(hive.id)}
    client = GatewayClient(gateway_server.base_url, KEY, store=store)
    repo = HiveRepo(workspace, hive.id)

    def both_cut() -> bool:
        writes = [t for t in store.list_tasks(hive.id) if t.title.startswith("Write ")]
        return len(writes) == 2 and all(repo.attempt_path(t.id).is_dir() for t in writes)

    try:
        running = asyncio.create_task(engine(store, hive.id, client).run())
        try:
            await until(both_cut,
                within=60, what="both engineers' worktrees cut")
        finally:
            gateway_server.open_gate("both-cut")
        final = await asyncio.wait_for(running, 90)
    finally:
        await client.aclose()

    assert final.status is HiveStatus.DONE, final.pause_reason
    posted = store.events(hive.id, kinds=[EventKind.INTEGRATION_POSTED])
    assert len(posted) == 1
    assert "verify command fails" in posted[0].data["reason"]
    integration = store.get_task(posted[0].data["integration_task"])
    assert integration.state is TaskState.DONE
    owners = [e.data["owner"] for e in store.events(hive.id, kinds=[EventKind.TICKET_ASSIGNED])
              if e.task_id == integration.id]
    assert owners == [agents["eng-lead"]], "the engineers' manager owns the integration"
    done_by = [e.agent_id for e in store.events(hive.id, kinds=[EventKind.TASK_DONE])
               if e.task_id == integration.id]
    assert done_by == [agents["eng-lead"]]
    merged = {e.task_id for e in store.events(hive.id, kinds=[EventKind.TASK_MERGED])}
    assert integration.id in merged
    for name, text in (("left.txt", "left"), ("right.txt", "right"), ("both.txt", "ok")):
        assert show(workspace, f"{repo.branch}:{name}").strip() == text
    assert repo.leftovers() == []
