"""Git isolation end to end, on SQLite and Postgres with the ScriptedGateway over real HTTP: every
attempt in its own worktree, ruflo's merges into the integration branch, a conflict and a merge
that breaks the hive's verify both becoming integration tasks, the user's branch untouched until
`apply`."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from ruflo.agents.gitwork import HiveRepo, init_repo
from ruflo.commands.task import _printable
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.isolation import isolation_config, task_git
from ruflo.event_kinds import EventKind
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, Hive, HiveStatus, Mode, Task, TaskState
from waiting import until

KEY = "sk-worktrees-test"
FAST = LiveParams(lease_seconds=2.0, time_unit=0.05, poll_seconds=0.2)


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout


def user_repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "shared.txt").write_text("line1\nVALUE=0\nline3\n")
    (folder / "README").write_text("the user's project\n")
    init_repo(folder)
    return folder


def turns(title: str, *calls: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One rule per turn of the task titled `title` (a regex-safe title), then complete."""
    match = f"^Task: {title}$|^Task: {title}\\n"
    rules = [{"name": f"{title}-{n}", "match": {"last_user": match, "turn": n},
              "reply": {"tool_calls": [{"name": tool, "arguments": args}]}}
             for n, (tool, args) in enumerate(calls, 1)]
    rules.append({"name": f"{title}-done", "match": {"last_user": match, "turn": len(calls) + 1},
                  "reply": {"tool_calls": [{"name": "complete", "arguments": {"result": "ok"}}]}})
    return rules


def make_hive(store: Any, repo: Path, tasks: list[Task], *, verify: str | None,
              agents: int = 4) -> Hive:
    config, _ = isolation_config(repo, None)
    if verify:
        config["verify"] = verify
    hive_id = f"wt{len(store.list_hives())}"
    hive = Hive(id=hive_id, name="worktrees", mode=Mode.SWARM, objective="edit the repo",
                workspace=str(repo), config=config)
    crew = [Agent(id=f"{hive_id}-a{i}", hive_id=hive_id, name=f"agent-{i}", skills=("python",))
            for i in range(agents)]
    from dataclasses import replace

    store.create_hive(hive, agents=crew,
                      tasks=[replace(t, id=f"{hive_id}-{t.id}", hive_id=hive_id) for t in tasks])
    return hive


def why(store: Any, hive: Hive) -> str:
    return "; ".join(f"{e.kind}: {e.data}" for e in store.events(
        hive.id, kinds=[EventKind.AGENT_PAUSED, EventKind.TASK_RELEASED, EventKind.TASK_FAILED]))


async def run(store: Any, hive: Hive, client: GatewayClient) -> Hive:
    from ruflo.agents.commands import command_env

    engine = BoardEngine(store, hive.id, gateway=client, params=FAST, env=command_env())
    return await asyncio.wait_for(engine.run(), 90)


async def test_four_agents_two_on_the_same_line_conflict_is_integrated_and_nothing_is_lost(
        store: Any, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    repo = user_repo(tmp_path)
    user_head = sh("rev-parse", "HEAD", cwd=repo)
    for name in ("alpha", "beta"):
        gateway_server.add_rules(*turns(name, ("write_file", {"path": f"{name}.txt",
                                                              "content": name})))
    for name in ("gamma", "delta"):
        rules = turns(name, ("edit_file", {
            "path": "shared.txt", "old": "VALUE=0", "new": f"VALUE=0 {name}-was-here"}))
        # The edits wait at a gate until both worktrees are cut, so neither starts from a
        # tree the other already merged into.
        rules[0]["hold"] = "edits"
        gateway_server.add_rules(*rules)
    gateway_server.add_rules(*turns("Integrate: (gamma|delta)", ("write_file", {
        "path": "shared.txt", "content": "line1\nVALUE=0 gamma-was-here delta-was-here\nline3\n"})))
    tasks = [Task(id=n, hive_id="", title=n, skills=("python",),
                  verify=f"grep -q {n} {'shared.txt' if n in ('gamma', 'delta') else n + '.txt'}")
             for n in ("alpha", "beta", "gamma", "delta")]
    hive = make_hive(store, repo, tasks, verify="! grep -q '<<<<<<<' shared.txt")

    running = asyncio.create_task(run(store, hive, client))
    attempts = repo / ".git" / "ruflo" / hive.id / "attempts"
    try:
        await until(lambda: all((attempts / f"{hive.id}-{name}").is_dir()
                                for name in ("gamma", "delta")),
                    what="both edits' worktrees cut")
    finally:
        gateway_server.open_gate("edits")  # never leave the engine held, pass or fail
    final = await running

    assert final.status is HiveStatus.DONE, why(store, hive)
    posted = store.events(hive.id, kinds=[EventKind.INTEGRATION_POSTED])
    assert len(posted) == 1
    assert posted[0].data["files"] == ["shared.txt"]
    integration = store.get_task(posted[0].data["integration_task"])
    assert integration.state is TaskState.DONE
    assert integration.priority == 2
    assert "shared.txt" in integration.description
    assert "-was-here" in integration.description
    merged = {e.task_id for e in store.events(hive.id, kinds=[EventKind.TASK_MERGED])}
    assert len(merged) == 4
    assert integration.id in merged
    branch = f"ruflo/{hive.id}"
    final_text = sh("show", f"{branch}:shared.txt", cwd=repo)
    assert "gamma-was-here" in final_text
    assert "delta-was-here" in final_text
    assert sh("show", f"{branch}:alpha.txt", cwd=repo) == "alpha"
    # The user's branch and folder are untouched until apply; no attempt worktree is left.
    assert sh("rev-parse", "HEAD", cwd=repo) == user_head
    assert (repo / "shared.txt").read_text() == "line1\nVALUE=0\nline3\n"
    assert not (repo / "alpha.txt").exists()
    hive_repo = HiveRepo(repo, hive.id)
    assert hive_repo.leftovers() == []
    assert [line for line in sh("worktree", "list", "--porcelain", cwd=repo).splitlines()
            if line.startswith("worktree ")] == [f"worktree {repo}",
                                                f"worktree {hive_repo.integration}"]
    history = [e for e in store.events(hive.id) if e.task_id == integration.id]
    shown = task_git(store.get_hive(hive.id), history)
    assert shown is not None
    assert shown["merged"] is True
    assert shown["branch"] == f"ruflo-tasks/{hive.id}/{integration.id}"
    assert "shared.txt" in shown["diff"]
    assert "+++ b/shared.txt" in shown["patch"]
    assert shown["patch_truncated"] is False
    cut = task_git(store.get_hive(hive.id), history, patch_limit=20)
    assert cut is not None
    assert cut["patch_truncated"] is True
    assert cut["patch"] == shown["patch"][:20]
    assert _printable("a\x1b[2Jb\n") == "a?[2Jb\n"
    hive_repo.apply_to_user_branch()
    assert "delta-was-here" in (repo / "shared.txt").read_text()
    assert (repo / "beta.txt").read_text() == "beta"


async def test_a_merge_that_breaks_the_verify_although_each_branch_passed_reopens_work(
        store: Any, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    repo = user_repo(tmp_path)
    for name in ("left", "right"):
        gateway_server.add_rules(*turns(name, ("write_file", {"path": f"{name}.txt",
                                                              "content": name})))
    gateway_server.add_rules(*turns("Integrate: (left|right)", ("write_file", {
        "path": "both.txt", "content": "ok"})))
    other = {"left": "right", "right": "left"}
    tasks = [Task(id=n, hive_id="", title=n, skills=("python",),
                  verify=f"grep -q {n} {n}.txt && {{ test ! -f {other[n]}.txt || "
                         f"grep -q ok both.txt; }}")
             for n in ("left", "right")]
    hive = make_hive(store, repo, tasks, verify=None, agents=2)

    final = await run(store, hive, client)

    assert final.status is HiveStatus.DONE, why(store, hive)
    posted = store.events(hive.id, kinds=[EventKind.INTEGRATION_POSTED])
    assert len(posted) == 1
    assert "verify command fails" in posted[0].data["reason"]
    assert len(store.events(hive.id, kinds=[EventKind.MERGE_CHECK_FAILED])) == 1
    branch = f"ruflo/{hive.id}"
    for name in ("left.txt", "right.txt", "both.txt"):
        assert sh("cat-file", "-e", f"{branch}:{name}", cwd=repo) == ""


def test_a_killed_processs_worktrees_are_cleaned_at_the_next_start_and_a_merge_is_not_doubled(
        store: Any, tmp_path: Path) -> None:
    from ruflo.engine.isolation import open_isolation

    repo = user_repo(tmp_path)
    hive = make_hive(store, repo, [Task(id="t", hive_id="", title="t")], verify=None, agents=1)
    integrator = open_isolation(store, hive)
    assert integrator is not None
    left = integrator.repo.open_attempt(f"{hive.id}-t")  # the process dies here
    (left.path / "half.txt").write_text("half")
    commit, _ = integrator.repo.commit_attempt(left, "t")
    handle = integrator.repo.lock()
    try:
        assert integrator.repo.merge(commit, "m").merged
        head = integrator.repo.head()
        assert integrator.repo.merge(commit, "again").commit == head  # redone after a restart
    finally:
        integrator.repo.unlock(handle)

    again = open_isolation(store, store.get_hive(hive.id))

    assert again is not None
    assert again.repo.leftovers() == []
    cleaned = store.events(hive.id, kinds=[EventKind.WORKTREES_CLEANED])
    assert cleaned[-1].data["tasks"] == [f"{hive.id}-t"]
    assert f"{hive.id}-t" not in sh("worktree", "list", cwd=repo)
    assert len(store.events(hive.id, kinds=[EventKind.ISOLATION_READY])) == 1


async def test_a_merge_the_policy_asks_about_waits_for_a_person(
        store: Any, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    from ruflo.model import ApprovalStatus

    repo = user_repo(tmp_path)
    gateway_server.add_rules(*turns("solo", ("write_file", {"path": "solo.txt",
                                                            "content": "solo"})))
    hive = make_hive(store, repo, [Task(id="solo", hive_id="", title="solo")], verify=None,
                     agents=1)
    store.update_hive(hive.id, config={**hive.config, "actions": {"merge": "ask"}})
    from ruflo.agents.commands import command_env

    engine = BoardEngine(store, hive.id, gateway=client, params=FAST, env=command_env())
    running = asyncio.create_task(engine.run())
    approval = await until(lambda: next(iter(store.list_approvals(hive_id=hive.id)), None))
    assert approval.data["action"] == "merge"
    assert approval.data["arguments"]["files"] == ["solo.txt"]
    branch = f"ruflo/{hive.id}"
    merged_yet = await asyncio.to_thread(
        subprocess.run, ["git", "-C", str(repo), "cat-file", "-e", f"{branch}:solo.txt"],
        capture_output=True, check=False)
    assert merged_yet.returncode != 0  # not merged while the approval waits
    store.decide_approval(approval.id, ApprovalStatus.APPROVED, decided_by="person:ops")
    final = await asyncio.wait_for(running, 90)
    assert final.status is HiveStatus.DONE, why(store, hive)
    assert sh("cat-file", "-e", f"{branch}:solo.txt", cwd=repo) == ""
