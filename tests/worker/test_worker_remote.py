"""A hive across machines through a git remote: a local bare repository is the remote, two real
`ruflo worker` processes each work in a folder of their own (no folder shared), the model is the
ScriptedGateway over HTTP. Both workers do attempts and push their task branches; merges go one
at a time across the processes (the store's merge lock); a conflict becomes an integration task
that is resolved and merged; the result is the remote's ruflo/<hive>, which `ruflo hive diff` /
`apply` fetch on the user's machine. Also: a worker SIGKILLed mid-attempt, the other finishes,
nothing is merged twice; and the refusals (SQLite, an unreachable remote, a remote without the
start commit) store nothing."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from git_repos import bare_clone, user_repo
from ruflo.engine.isolation import isolation_config
from ruflo.errors import ConfigError
from ruflo.event_kinds import EventKind
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, Event, Hive, HiveStatus, Mode, Task
from ruflo.store.sql import SqlStore

from .harness import RUFLO, WorkerProcess, start_worker, stop_all, wait_for, worker_env

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

KEY = "sk-remote-test"
LEASE = 3.0
SHARED = "line1\nVALUE=0\nline3\n"


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def gateway() -> Iterator[ScriptedGateway]:
    server = ScriptedGateway({"keys": [KEY], "cost": 0.0001})
    server.start()
    yield server
    server.stop()


def user_and_remote(tmp_path: Path) -> tuple[Path, Path]:
    """The user's repository and a bare clone of it: the remote."""
    repo = tmp_path / "user"
    user_repo(repo, {"shared.txt": SHARED, "README": "the user's project\n"})
    return repo, bare_clone(repo, tmp_path / "remote.git")


def turns(title: str, *calls: tuple[str, dict[str, Any]],
          hold: str | None = None) -> list[dict[str, Any]]:
    """One rule per turn of the task titled `title` (a regex), then complete; the first turn
    waits at the gate `hold`."""
    match = f"^Task: {title}$|^Task: {title}\\n"
    rules: list[dict[str, Any]] = [
        {"name": f"{title}-{n}", "match": {"last_user": match, "turn": n},
         "reply": {"tool_calls": [{"name": tool, "arguments": args}]}}
        for n, (tool, args) in enumerate(calls, 1)]
    if hold is not None:
        rules[0]["hold"] = hold
    rules.append({"name": f"{title}-done", "match": {"last_user": match, "turn": len(calls) + 1},
                  "reply": {"tool_calls": [{"name": "complete", "arguments": {"result": "ok"}}]}})
    return rules


def remote_hive(store: SqlStore, repo: Path, bare: Path, hive_id: str, tasks: list[Task], *,
                agents: int, verify: str | None) -> Hive:
    config, notice = isolation_config(repo, None, remote=str(bare), dialect="postgresql")
    assert config["git_remote"] == str(bare.resolve())
    assert "integration branch on the remote" in notice
    config.update(time_unit=0.05, seed=3)
    if verify:
        config["verify"] = verify
    hive = Hive(id=hive_id, name="remote", mode=Mode.SWARM, objective="edit the repo",
                workspace=str(repo), config=config)
    crew = [Agent(id=f"{hive_id}-a{n}", hive_id=hive_id, name=f"agent-{n}", skills=("code",))
            for n in range(agents)]
    board = [Task(id=f"{hive_id}-{t.id}", hive_id=hive_id, title=t.title, skills=("code",),
                  verify=t.verify) for t in tasks]
    return store.create_hive(hive, agents=crew, tasks=board)


def machines(pg_schema_url: str, gateway: ScriptedGateway, tmp_path: Path, hive: Hive,
             count: int, agents: int) -> list[WorkerProcess]:
    """`count` workers, each as on a machine of its own: its own data dir and workspace."""
    workers = []
    for n in range(count):
        env = worker_env(pg_schema_url, tmp_path / f"machine-{n}" / "data", lease_seconds=LEASE)
        env.update(OPENAI_BASE_URL=gateway.base_url, OPENAI_API_KEY=KEY)
        args = ["--hive", hive.id, "--agents", str(agents), "--poll-seconds", "1",
                "--workspace", str(tmp_path / f"machine-{n}" / "ws")]
        workers.append(start_worker(n, args, env, tmp_path / "logs"))
    return workers


def attempt_dirs(tmp_path: Path, hive: Hive, count: int) -> list[Path]:
    """Attempt worktrees in flight on every machine."""
    found: list[Path] = []
    for n in range(count):
        folder = tmp_path / f"machine-{n}" / "ws" / hive.id / "ruflo" / hive.id / "attempts"
        if folder.is_dir():
            found += [p for p in folder.iterdir() if (p / "README").exists()]
    return found


def worker_of(events: list[Event]) -> dict[str, str]:
    """agent id -> worker id, from the workers' `worker_attached` events."""
    hosts: dict[str, str] = {}
    for event in events:
        if event.kind == EventKind.WORKER_ATTACHED:
            for agent_id in event.data["agents"]:
                hosts[agent_id] = event.data["worker_id"]
    return hosts


def ended(store: SqlStore, hive: Hive) -> bool:
    return store.get_hive(hive.id).status is not HiveStatus.RUNNING


def test_two_workers_in_separate_folders_integrate_through_a_bare_remote(
        pg_store: SqlStore, pg_schema_url: str, gateway: ScriptedGateway,
        tmp_path: Path) -> None:
    repo, bare = user_and_remote(tmp_path)
    user_head = sh("rev-parse", "HEAD", cwd=repo)
    remote_main = sh("rev-parse", "main", cwd=bare)
    for name in ("alpha", "beta"):
        gateway.add_rules(*turns(name, ("write_file", {"path": f"{name}.txt", "content": name}),
                                 hold="start"))
    for name in ("gamma", "delta"):
        gateway.add_rules(*turns(name, ("edit_file", {
            "path": "shared.txt", "old": "VALUE=0", "new": f"VALUE=0 {name}-was-here"}),
            hold="start"))
    gateway.add_rules(*turns("Integrate: (gamma|delta)", ("write_file", {
        "path": "shared.txt", "content": "line1\nVALUE=0 gamma-was-here delta-was-here\nline3\n"})))
    tasks = [Task(id=n, hive_id="", title=n,
                  verify=f"grep -q {n} {'shared.txt' if n in ('gamma', 'delta') else n + '.txt'}")
             for n in ("alpha", "beta", "gamma", "delta")]
    hive = remote_hive(pg_store, repo, bare, "rmt", tasks, agents=4,
                       verify="! grep -q '<<<<<<<' shared.txt && test -f alpha.txt")

    workers = machines(pg_schema_url, gateway, tmp_path, hive, count=2, agents=2)
    try:
        # Every first turn waits at the gate until all four worktrees are cut: each worker's
        # two agents hold one task each, so both machines attempt, from the same base.
        try:
            wait_for(lambda: len(attempt_dirs(tmp_path, hive, 2)) == 4, 120,
                     "four attempt worktrees cut across the two machines", workers)
        finally:
            gateway.open_gate("start")
        wait_for(lambda: ended(pg_store, hive), 180, "the hive to end", workers)
        for worker in workers:
            assert worker.process.wait(timeout=30) == 0, worker.output[-3000:]
    finally:
        stop_all(workers)

    events = pg_store.events(hive.id)
    assert pg_store.get_hive(hive.id).status is HiveStatus.DONE, [
        (e.kind, e.data) for e in events if e.kind in ("task_failed", "agent_paused")]
    # Which worker did which attempt, from the events: both did some.
    hosts = worker_of(events)
    committed = [e for e in events if e.kind == EventKind.TASK_COMMITTED]
    assert {hosts[str(e.agent_id)] for e in committed} == set(hosts.values())
    assert len(set(hosts.values())) == 2
    assert all(e.data["remote"] == str(bare.resolve()) for e in committed)
    ready = [e for e in events if e.kind == EventKind.ISOLATION_READY]
    assert {e.data["integration"].split("/machine-")[1][0] for e in ready} == {"0", "1"}
    # The conflict became an integration task, which was resolved and merged.
    posted = [e for e in events if e.kind == EventKind.INTEGRATION_POSTED]
    assert len(posted) == 1
    assert posted[0].data["files"] == ["shared.txt"]
    integration = posted[0].data["integration_task"]
    merged = Counter(e.task_id for e in events if e.kind == EventKind.TASK_MERGED)
    assert set(merged.values()) == {1}, f"each task merged exactly once: {merged}"
    assert integration in merged
    assert len(merged) == 4  # alpha, beta, the first of gamma/delta, and the integration
    carried = pg_store.get_task(integration).parent_id
    assert carried not in merged
    assert carried in {f"{hive.id}-gamma", f"{hive.id}-delta"}
    # The result is the remote's ruflo/<hive>: both edits of the line, every file.
    branch = f"ruflo/{hive.id}"
    final = sh("show", f"{branch}:shared.txt", cwd=bare)
    assert "gamma-was-here" in final
    assert "delta-was-here" in final
    assert sh("show", f"{branch}:alpha.txt", cwd=bare) == "alpha"
    assert sh("show", f"{branch}:beta.txt", cwd=bare) == "beta"
    # One merge into the branch per merged task (the integration commit is a merge itself).
    assert len(sh("rev-list", "--first-parent", "--merges", branch, cwd=bare).split()) == 4
    for event in committed:  # every attempt's branch was pushed
        assert sh("rev-parse", f"refs/heads/{event.data['branch']}", cwd=bare).strip()
    # The user's branch, folder and the remote's main are untouched.
    assert sh("rev-parse", "HEAD", cwd=repo) == user_head
    assert sh("rev-parse", "main", cwd=bare) == remote_main
    assert (repo / "shared.txt").read_text() == SHARED
    assert not (repo / "alpha.txt").exists()

    # On the user's machine, `hive diff` fetches the result; `hive apply` merges it.
    env = worker_env(pg_schema_url, tmp_path / "user-data", lease_seconds=LEASE)
    diff = subprocess.run([str(RUFLO), "hive", "diff", hive.id], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert diff.returncode == 0, diff.stderr
    assert "+VALUE=0 gamma-was-here delta-was-here" in diff.stdout
    assert "+++ b/alpha.txt" in diff.stdout
    assert sh("rev-parse", "HEAD", cwd=repo) == user_head
    shown = subprocess.run([str(RUFLO), "hive", "show", hive.id, "--json"], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["isolation"]["remote"] == str(bare.resolve())
    applied = subprocess.run([str(RUFLO), "hive", "apply", hive.id], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert applied.returncode == 0, applied.stderr
    assert "delta-was-here" in (repo / "shared.txt").read_text()
    assert (repo / "beta.txt").read_text() == "beta"


def test_a_worker_killed_mid_attempt_the_other_finishes_and_nothing_merges_twice(
        pg_store: SqlStore, pg_schema_url: str, gateway: ScriptedGateway,
        tmp_path: Path) -> None:
    repo, bare = user_and_remote(tmp_path)
    for name in ("a", "b"):
        gateway.add_rules(*turns(name, ("write_file", {"path": f"{name}.txt", "content": name}),
                                 hold=f"{name}-held"))
    tasks = [Task(id=n, hive_id="", title=n, verify=f"grep -qx {n} {n}.txt") for n in "ab"]
    hive = remote_hive(pg_store, repo, bare, "rmk", tasks, agents=2, verify=None)

    workers = machines(pg_schema_url, gateway, tmp_path, hive, count=2, agents=1)
    try:
        wait_for(lambda: len(attempt_dirs(tmp_path, hive, 2)) == 2, 120,
                 "both attempts under way, one on each machine", workers)
        holder = next(t.assignee for t in pg_store.list_tasks(hive.id)
                      if t.id == f"{hive.id}-b")
        victim_id = worker_of(pg_store.events(hive.id))[str(holder)]
        victim = next(w for w in workers if victim_id in w.output)
        victim.process.kill()  # mid-attempt: b's model call is held at its gate
        victim.process.wait(timeout=10)
        gateway.open_gate("a-held")
        gateway.open_gate("b-held")
        wait_for(lambda: ended(pg_store, hive), 180, "the hive to end", workers)
        survivor = next(w for w in workers if w is not victim)
        assert survivor.process.wait(timeout=30) == 0, survivor.output[-3000:]
    finally:
        gateway.open_gate("a-held")
        gateway.open_gate("b-held")
        stop_all(workers)

    events = pg_store.events(hive.id)
    assert pg_store.get_hive(hive.id).status is HiveStatus.DONE
    assert any(e.kind == EventKind.LEASE_EXPIRED and e.task_id == f"{hive.id}-b"
               for e in events), "the killed worker's claim reopened"
    merged = Counter(e.task_id for e in events if e.kind == EventKind.TASK_MERGED)
    assert merged == Counter({f"{hive.id}-a": 1, f"{hive.id}-b": 1})
    hosts = worker_of(events)
    survivor_id = next(w for w in hosts.values() if w != victim_id)
    assert {hosts[str(e.agent_id)] for e in events
            if e.kind == EventKind.TASK_MERGED} == {survivor_id}
    branch = f"ruflo/{hive.id}"
    assert len(sh("rev-list", "--first-parent", "--merges", branch, cwd=bare).split()) == 2
    assert sh("show", f"{branch}:a.txt", cwd=bare) == "a"
    assert sh("show", f"{branch}:b.txt", cwd=bare) == "b"


WORKLOAD = """\
name: refused
objective: nothing
tasks:
  - id: a
    title: a
"""


def refused(tmp_path: Path, database_url: str, remote: str, repo: Path) -> str:
    """`ruflo orchestrate --git-remote` that must be refused; returns its error output. (A
    gateway is named but never reached: the refusal comes first.)"""
    workload = tmp_path / "w.yaml"
    workload.write_text(WORKLOAD)
    env = worker_env(database_url, tmp_path / "data", lease_seconds=LEASE)
    env.update(OPENAI_BASE_URL="http://127.0.0.1:9", OPENAI_API_KEY=KEY)
    done = subprocess.run([str(RUFLO), "orchestrate", "--workload", str(workload),
                           "--workspace", str(repo), "--git-remote", remote],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0, done.stdout + done.stderr
    return done.stderr


def test_a_remote_that_cannot_serve_the_hive_is_refused_and_nothing_is_stored(
        pg_store: SqlStore, pg_schema_url: str, tmp_path: Path) -> None:
    repo, bare = user_and_remote(tmp_path)
    said = refused(tmp_path, pg_schema_url, str(tmp_path / "nowhere.git"), repo)
    assert "cannot be reached" in said
    assert "nothing was stored" in said
    # A remote that never received the user's commit.
    user_repo(tmp_path / "other", {"x": "x"})
    stranger = bare_clone(tmp_path / "other", tmp_path / "stranger.git")
    said = refused(tmp_path, pg_schema_url, str(stranger), repo)
    assert "does not have commit" in said
    assert "nothing was stored" in said
    assert pg_store.list_hives() == []
    assert sh("branch", "--list", "ruflo/*", cwd=bare) == ""
    # SQLite stays on one machine.
    said = refused(tmp_path, f"sqlite:///{tmp_path / 'one.db'}", str(bare), repo)
    assert "Postgres" in said
    assert "nothing was stored" in said
    with pytest.raises(ConfigError, match="needs git isolation"):
        isolation_config(repo, "none", remote=str(bare), dialect="postgresql")
