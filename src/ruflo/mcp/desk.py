"""The hive operations MCP tools call: create a hive, post, claim, complete and release tasks, read
the board, memory and ledger. Depends on the model, the Store protocol, memory, ruflo.agents (the
verify command runner) and the hive's policy put back from the store (engine/stored_policy.py);
knows nothing of the MCP protocol itself.

Every operation on a hive also records an `mcp_call` event naming the tool and the caller, in the
same transaction as its effect when it succeeds, and on its own when it is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ruflo.agents.gitwork import AttemptTree
from ruflo.engine import start, stored_policy
from ruflo.engine.claim_worktrees import ClaimWorktrees
from ruflo.engine.isolation import check_isolation, isolation_of, prepare_workspace
from ruflo.engine.start import HiveSpec, Planner
from ruflo.engine.stored_policy import StoredPolicies
from ruflo.errors import ConfigError, Conflict, NotFound, PolicyError, RufloError
from ruflo.event_kinds import EventKind
from ruflo.memory.notes import Memory, entry_to_json, hive_namespace
from ruflo.model import (
    JSON,
    Agent,
    AgentStatus,
    CostKind,
    Hive,
    HiveStatus,
    Mode,
    Task,
    TaskState,
    new_id,
    utcnow,
)

if TYPE_CHECKING:
    from ruflo.store.base import Spend, Store

T = TypeVar("T")

MCP_MODES = (Mode.SWARM, Mode.SOLO, Mode.ROUND_ROBIN)
DEFAULT_NAMESPACE = "default"
VERIFY_TIMEOUT = 600.0
VERIFY_OUTPUT_CHARS = 2_000
BOARD_TASK_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claim committed, before its worktree is opened (a git hive) and it is answered."""

    hive: Hive
    task: Task
    agent: Agent
    why: str
    reopened: list[str]


class Desk:
    """Hive operations for MCP agents over one store. `default_hive` (an id) answers calls that
    name no hive; `caller` names who is calling (the MCP client) for the events."""

    def __init__(self, store: Store, memory: Memory, *, lease_seconds: float,
                 workspace_root: Path, default_hive: str | None = None,
                 planner: Planner | None = None, asking_agent: str | None = None,
                 asking_task: str | None = None) -> None:
        self.store = store
        self.asking_agent = asking_agent
        """The agent (by name) whose permission questions `permission_prompt` decides: its
        policy applies over the hive's. None: the hive's policy only."""
        self.asking_task = asking_task
        """The task (id or title) the asking agent works on, shown with its approvals."""
        self.planner = planner
        """Plans a new hive's objective into its first tasks (None: the board starts empty and
        the MCP client posts the tasks)."""
        self.memory = memory
        self.keyword_memory = Memory(store)
        """Full-text search only: for callers who ask for it (fast, no query embedding)."""
        self.lease_seconds = lease_seconds
        self.policies = StoredPolicies()
        """The hives' policies, which choose what `claim_next_task` takes."""
        self.workspace_root = workspace_root
        self.worktrees = ClaimWorktrees()
        """A git hive's claims in worktrees of their own (engine/claim_worktrees.py)."""
        self.default_hive: str | None = None
        if default_hive is not None:
            self.default_hive = self.hive(default_hive).id

    # -- lookups -------------------------------------------------------------------------------
    def hive(self, ref: str | None) -> Hive:
        """A hive by id or by its unique name; the server's default hive when `ref` is None."""
        if ref is None or not ref.strip():
            if self.default_hive is None:
                raise ConfigError("no hive given, and the server was started without --hive: "
                                  "pass `hive` (an id or name; create_hive makes one)")
            ref = self.default_hive
        ref = ref.strip()
        try:
            return self.store.get_hive(ref)
        except NotFound:
            pass
        named = [h for h in self.store.list_hives(limit=10_000) if h.name == ref]
        if len(named) == 1:
            return named[0]
        if named:
            raise ConfigError(f"{len(named)} hives are named {ref!r}: pass the hive's id instead")
        raise NotFound(f"no hive {ref!r} (neither an id nor a hive name); create_hive makes one")

    def task(self, hive: Hive, ref: str) -> Task:
        """A task of `hive` by id, or by its title when exactly one task has it."""
        ref = ref.strip()
        try:
            task = self.store.get_task(ref)
            if task.hive_id == hive.id:
                return task
        except NotFound:
            pass
        titled = [t for t in self.store.list_tasks(hive.id) if t.title == ref]
        if len(titled) == 1:
            return titled[0]
        if titled:
            raise ConfigError(f"{len(titled)} tasks of hive {hive.name!r} are titled {ref!r}: "
                              "pass the task's id instead")
        raise NotFound(f"hive {hive.name!r} has no task {ref!r}; board_status lists its tasks")

    def agent(self, hive: Hive, name: str) -> Agent:
        for agent in self.store.list_agents(hive.id):
            if agent.name == name:
                return agent
        raise NotFound(f"hive {hive.name!r} has no agent {name!r}; claim_next_task registers "
                       "an agent on its first claim")

    def _agent_or_register(self, hive: Hive, name: str, skills: Sequence[str]) -> Agent:
        try:
            return self.agent(hive, name)
        except NotFound:
            pass
        return self.store.add_agent(Agent(id=new_id(), hive_id=hive.id, name=name,
                                          role="mcp", skills=tuple(skills),
                                          adapter_config={"via": "mcp"}))

    # -- the call record -----------------------------------------------------------------------
    def call(self, hive_ref: str | None, tool: str, caller: str, action: Callable[[Hive], T],
             *, agent_name: str | None = None) -> T:
        """Run `action` on the hive inside one transaction with its `mcp_call` event; a refused
        call is recorded too (with the reason) and re-raised."""
        hive = self.hive(hive_ref)
        try:
            with self.store.transaction():
                result = action(hive)
                self.record(hive.id, tool, caller, agent_name=agent_name)
            return result
        except RufloError as error:
            self.record(hive.id, tool, caller, agent_name=agent_name, error=str(error))
            raise

    def record(self, hive_id: str, tool: str, caller: str, *, agent_name: str | None = None,
               task_id: str | None = None, error: str | None = None) -> None:
        data: JSON = {"tool": tool, "caller": caller, "ok": error is None}
        if agent_name is not None:
            data["agent"] = agent_name
        if error is not None:
            data["error"] = error[:500]
        agent_id = None
        if agent_name is not None:
            agent_id = next((a.id for a in self.store.list_agents(hive_id)
                             if a.name == agent_name), None)
        self.store.append_event(hive_id, EventKind.MCP_CALL, agent_id=agent_id, task_id=task_id,
                                data=data)

    # -- hives ---------------------------------------------------------------------------------
    async def create_hive(self, caller: str, *, name: str, objective: str, mode: str,
                          agents: Sequence[tuple[str, Sequence[str], str]],
                          workspace: str | None, seed: int, isolation: str | None = None,
                          git_remote: str | None = None) -> JSON:
        """Make its folder ready and choose its isolation (engine/isolation.py's one rule),
        store the hive, then seed its first board (engine/start.py: the objective planned by
        this desk's planner; without one the board starts empty, for the client to fill)."""
        spec, notice = self.hive_spec(name=name, objective=objective, mode=mode, agents=agents,
                                      workspace=workspace, seed=seed, isolation=isolation,
                                      git_remote=git_remote)
        with self.store.transaction():
            hive = start.create_hive(self.store, spec)
            self.record(hive.id, "create_hive", caller)
        # Without a planner the MCP client plans: it posts the tasks (engine/start.py, rule 4).
        board = (await start.seed_board(self.store, hive.id, self.planner)
                 if self.planner is not None else [])
        return {"hive": hive_json(self.store.get_hive(hive.id)), "isolation_notice": notice,
                "agents": [agent_json(a) for a in spec.agents],
                "tasks": [self.task_json(t) for t in board]}

    def hive_spec(self, *, name: str, objective: str, mode: str,
                  agents: Sequence[tuple[str, Sequence[str], str]], workspace: str | None,
                  seed: int, isolation: str | None = None,
                  git_remote: str | None = None) -> tuple[HiveSpec, str]:
        """What create_hive starts, checked, and the isolation notice; its workspace folder is
        made ready (engine/isolation.py prepare_workspace; `git_remote` as there)."""
        check_isolation(isolation, remote=git_remote, dialect=self.store.dialect)
        try:
            hive_mode = Mode(mode)
        except ValueError:
            raise PolicyError(f"unknown mode {mode!r}; choose one of "
                              f"{', '.join(m.value for m in MCP_MODES)}") from None
        if hive_mode not in MCP_MODES:
            raise PolicyError("company mode delegates through an org chart with LLM managers "
                              "(`ruflo orchestrate`); MCP agents work swarm, solo or "
                              "round_robin hives")
        names = [a[0] for a in agents]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PolicyError(f"agent names must be unique in a hive; repeated: "
                              f"{', '.join(duplicates)}")
        if any(h.name == name for h in self.store.list_hives(limit=10_000)):
            raise Conflict(f"a hive named {name!r} already exists; pick another name "
                           "(nothing was created)")
        hive_id = new_id()
        folder = Path(workspace).expanduser() if workspace else self.workspace_root / hive_id
        if workspace and not (folder.is_absolute() and folder.is_dir()):
            raise ConfigError(f"workspace {workspace!r} is not an existing folder given by an "
                              "absolute path; nothing was created")
        prepared = prepare_workspace(folder, isolation, remote=git_remote,
                                     dialect=self.store.dialect)
        members = [Agent(id=new_id(), hive_id=hive_id, name=agent_name, role=role or "worker",
                         skills=tuple(skills), adapter_config={"via": "mcp"})
                   for agent_name, skills, role in agents]
        notice = prepared.notice
        if prepared.config["isolation"] == "git":
            notice += ("; each claim gets a git worktree of its own (the claim's `workspace`): "
                       "work there, ruflo commits and merges it on complete_task")
        return HiveSpec(id=hive_id, name=name, mode=hive_mode, objective=objective,
                        workspace=str(prepared.folder),
                        config={"seed": seed, "created_via": "mcp", **prepared.config},
                        agents=members), notice

    # -- the board -----------------------------------------------------------------------------
    def post_task(self, caller: str, hive_ref: str | None, *, title: str, description: str,
                  skills: Sequence[str], depends_on: Sequence[str], verify: str | None,
                  priority: int, effort: float, parent: str | None,
                  agent_name: str | None) -> JSON:
        def post(hive: Hive) -> JSON:
            if hive.status.terminal:
                raise Conflict(f"hive {hive.name!r} is {hive.status}; nothing was posted")
            deps = tuple(dict.fromkeys(self.task(hive, ref).id for ref in depends_on))
            parent_id = self.task(hive, parent).id if parent else None
            poster = self.agent(hive, agent_name).id if agent_name else None
            task = Task(id=new_id(), hive_id=hive.id, title=title, description=description,
                        parent_id=parent_id, skills=tuple(dict.fromkeys(skills)),
                        priority=priority, effort=effort, depends_on=deps,
                        verify=verify or None)
            posted = self.store.post_tasks(hive.id, [task], agent_id=poster)[0]
            return {"task": self.task_json(posted)}
        return self.call(hive_ref, "post_task", caller, post, agent_name=agent_name)

    async def claim_next_task(self, caller: str, hive_ref: str | None, *, agent_name: str,
                              skills: Sequence[str], task_ref: str | None) -> JSON:
        """Expire lapsed leases, register the agent if new, then let the hive's policy choose
        (or claim `task_ref` when the agent names one). In a git hive the claim's worktree is
        opened once the claim is committed, off the event loop (engine/claim_worktrees.py)."""
        def claim(hive: Hive) -> JSON | Claimed:
            if hive.status is not HiveStatus.RUNNING:
                why = f" ({hive.pause_reason})" if hive.pause_reason else ""
                raise Conflict(f"hive {hive.name!r} is {hive.status}{why}; no task was claimed")
            expired = self.store.expire_leases(hive_id=hive.id)
            agent = self._agent_or_register(hive, agent_name, skills)
            held = self.store.list_tasks(hive.id, states=[TaskState.CLAIMED],
                                         assignee=agent.id)
            if held:
                raise Conflict(f"agent {agent_name!r} already holds task {held[0].id} "
                               f"({held[0].title!r}); complete_task or release_task it first")
            reopened = [t.id for t in expired]
            if task_ref is not None:
                wanted = self.task(hive, task_ref)
                claimed = self.store.claim_task(hive.id, agent.id,
                                                lease_seconds=self.lease_seconds,
                                                task_id=wanted.id)
                if claimed is None:
                    raise Conflict(f"task {wanted.id} ({wanted.title!r}) is {wanted.state} "
                                   "or waits on dependencies, so it cannot be claimed now")
                return self._claimed(hive, claimed, agent, "the agent asked for it", reopened)
            return self._choose_and_claim(hive, agent, reopened)
        claimed = self.call(hive_ref, "claim_next_task", caller, claim, agent_name=agent_name)
        if not isinstance(claimed, Claimed):
            return claimed
        tree = None
        if self.worktrees.isolated(claimed.hive):
            tree = await asyncio.to_thread(self.worktrees.open_for_claim, self.store,
                                           claimed.hive, claimed.task, claimed.agent)
        return self._claimed_json(claimed, tree)

    def _choose_and_claim(self, hive: Hive, agent: Agent,
                          reopened: list[str]) -> JSON | Claimed:
        for _ in range(8):
            chosen = self.policies.decide(self.store, hive, agent)
            if chosen.task_id is None:
                counts = self.store.count_tasks(hive.id)
                return {"task": None, "agent": agent.name, "reason": chosen.reason,
                        "retry_after_seconds": chosen.retry_after_seconds,
                        "open": counts.get(TaskState.OPEN, 0),
                        "claimed": counts.get(TaskState.CLAIMED, 0),
                        "reopened_expired": reopened}
            claimed = self.store.claim_task(hive.id, agent.id, lease_seconds=self.lease_seconds,
                                            task_id=chosen.task_id)
            if claimed is not None:
                return self._claimed(hive, claimed, agent, chosen.reason, reopened)
        raise Conflict("other agents claimed every task this agent chose, eight times running; "
                       "nothing is held: call claim_next_task again")

    def _claimed(self, hive: Hive, task: Task, agent: Agent, why: str,
                 reopened: list[str]) -> Claimed:
        self.store.update_agent(agent.id, status=AgentStatus.WORKING, current_task=task.id,
                                heartbeat_at=utcnow())
        return Claimed(hive, task, agent, why, reopened)

    def _claimed_json(self, claimed: Claimed, tree: AttemptTree | None) -> JSON:
        hive = claimed.hive
        where = (f"work ONLY in {tree.path} (your own git worktree on branch {tree.branch}; "
                 "changes made anywhere else are not merged)" if tree is not None else
                 f"work in {hive.workspace} (the hive's shared folder)" if hive.workspace else
                 "do the work")
        return {"task": self.task_json(claimed.task), "agent": claimed.agent.name,
                "reason": claimed.why, "lease_seconds": self.lease_seconds,
                "reopened_expired": claimed.reopened,
                "workspace": str(tree.path) if tree is not None else hive.workspace,
                "worktree": tree is not None,
                "next": f"{where}, call heartbeat before the lease ends, then complete_task "
                        "(or release_task to give it back)"}

    def heartbeat(self, caller: str, hive_ref: str | None, *, agent_name: str) -> JSON:
        def renew(hive: Hive) -> JSON:
            agent = self.agent(hive, agent_name)
            held = self.store.list_tasks(hive.id, states=[TaskState.CLAIMED],
                                         assignee=agent.id)
            renewed = [t.id for t in held
                       if self.store.renew_lease(t.id, agent.id,
                                                 lease_seconds=self.lease_seconds)]
            self.store.update_agent(agent.id, heartbeat_at=utcnow())
            until = utcnow() + timedelta(seconds=self.lease_seconds)
            return {"agent": agent.name, "renewed": renewed,
                    "lease_until": until.isoformat() if renewed else None}
        return self.call(hive_ref, "heartbeat", caller, renew, agent_name=agent_name)

    async def complete_task(self, caller: str, hive_ref: str | None, *, task_ref: str,
                            agent_name: str, result: str, success: bool) -> JSON:
        """Finish the agent's claim. With success claimed and a verify command on the task, the
        command runs in the claim's worktree (a git hive) or the hive's workspace and its exit
        code decides done or failed. In a git hive a passing attempt's worktree is then
        committed and integrated as ruflo's own attempts are (agents/isolated.py `land`); a
        commit refused or a merge refused fails the task; a conflict posts an integration task.
        The worktree is removed once the task is finished, whatever the outcome."""
        hive = self.hive(hive_ref)
        tree: AttemptTree | None = None
        try:
            agent = self.agent(hive, agent_name)
            task = self.task(hive, task_ref)
            if task.state is not TaskState.CLAIMED or task.assignee != agent.id:
                holder = self._agent_name(hive, task.assignee)
                raise Conflict(f"task {task.id} ({task.title!r}) is {task.state}"
                               f"{f' (held by {holder})' if holder else ''}, not held by "
                               f"{agent_name!r}; nothing was changed")
            tree = self.worktrees.tree(self.store, hive, task)
            verdict: JSON | None = None
            if success and task.verify:
                verdict = await self._verify(hive, task, agent,
                                             tree.path if tree is not None else None)
            passed = verdict["passed"] if verdict is not None else None
            state = TaskState.DONE if success and passed is not False else TaskState.FAILED
            landed = (await self.worktrees.land(self.store, hive, task, agent, tree)
                      if tree is not None and state is TaskState.DONE else None)
            if landed is not None:
                state = TaskState.FAILED if landed.refused is not None else state
                result = f"{result}\n{landed.note()}".strip()
            with self.store.transaction():
                finished = self.store.finish_task(
                    task.id, agent.id, state=state, result=result,
                    verified=passed if isinstance(passed, bool) else None,
                    data={"via": "mcp", "claimed_success": success})
                self._learn(hive, agent, task, success=state is TaskState.DONE)
                self.store.update_agent(agent.id, status=AgentStatus.IDLE, current_task=None,
                                        heartbeat_at=utcnow())
                self.record(hive.id, "complete_task", caller, agent_name=agent_name,
                            task_id=task.id)
        except RufloError as error:
            self.record(hive.id, "complete_task", caller, agent_name=agent_name,
                        error=str(error))
            raise
        if tree is not None:  # a call refused above keeps the claim and so its worktree
            self.worktrees.drop(self.store, hive, task)
        answer: JSON = {"task": self.task_json(finished)}
        if verdict is not None:
            answer["verify"] = verdict
        if landed is not None:
            answer["integration"] = landed.json()
        return answer

    async def _verify(self, hive: Hive, task: Task, agent: Agent,
                      worktree: Path | None = None) -> JSON:
        from ruflo.agents.commands import command_env, run_command

        folder = worktree if worktree is not None else workspace_of(hive)
        if folder is None:
            self.store.append_event(hive.id, EventKind.TASK_VERIFIED, agent_id=agent.id,
                                    task_id=task.id, data={
                                        "command": task.verify, "passed": None,
                                        "skipped": "the hive has no workspace folder"})
            return {"passed": None, "skipped": "the hive has no workspace folder, so the "
                                               "verify command was not run"}
        assert task.verify is not None
        # Verification may outlast the lease: hold the claim while it runs.
        self.store.renew_lease(task.id, agent.id, lease_seconds=VERIFY_TIMEOUT + self.lease_seconds)
        ran = await run_command(task.verify, cwd=folder, env=command_env(),
                                time_limit=VERIFY_TIMEOUT)
        output = ran.output[-VERIFY_OUTPUT_CHARS:]
        verdict: JSON = {"command": task.verify, "passed": ran.ok, "exit_code": ran.exit_code,
                         "timed_out": ran.timed_out, "output": output}
        self.store.append_event(hive.id, EventKind.TASK_VERIFIED, agent_id=agent.id,
                                task_id=task.id, data=verdict)
        return verdict

    def _learn(self, hive: Hive, agent: Agent, task: Task, *, success: bool) -> None:
        """Swarm thresholds learn from the attempt: the skills done drop by the time worked."""
        if hive.mode is not Mode.SWARM or task.claimed_at is None:
            return
        start = stored_policy.policy_time(hive, task.claimed_at)
        policy = stored_policy.rebuild(hive, self.store.list_agents(hive.id),
                                self.store.policy_board(hive.id), start)
        if policy.board.tasks.get(task.id) is None:
            return
        with_claim = policy.board.get(task.id)
        if with_claim.holder != agent.id:
            return
        policy.on_task_finished(task.id, agent.id, success, stored_policy.policy_time(hive, utcnow()))
        thresholds = stored_policy.thresholds_of(policy, agent.id)
        if thresholds is not None:
            self.store.update_agent(agent.id, thresholds=thresholds)

    def release_task(self, caller: str, hive_ref: str | None, *, task_ref: str,
                     agent_name: str, reason: str) -> JSON:
        def release(hive: Hive) -> JSON:
            agent = self.agent(hive, agent_name)
            task = self.task(hive, task_ref)
            released = self.store.release_task(task.id, agent.id, reason=reason)
            self.store.update_agent(agent.id, status=AgentStatus.IDLE, current_task=None)
            self.worktrees.drop(self.store, hive, task)
            return {"task": self.task_json(released)}
        return self.call(hive_ref, "release_task", caller, release, agent_name=agent_name)

    def board_status(self, caller: str, hive_ref: str | None, *,
                     states: Sequence[str]) -> JSON:
        def status(hive: Hive) -> JSON:
            try:
                wanted = [TaskState(s) for s in states] or None
            except ValueError:
                raise PolicyError(f"unknown task state in {list(states)}; states are "
                                  f"{', '.join(s.value for s in TaskState)}") from None
            counts = self.store.count_tasks(hive.id)
            agents = self.store.list_agents(hive.id)
            names = {a.id: a.name for a in agents}
            tasks = self.store.list_tasks(hive.id, states=wanted, limit=BOARD_TASK_LIMIT)
            return {"hive": hive_json(hive),
                    "counts": {s.value: counts.get(s, 0) for s in TaskState},
                    "tasks": [self.task_json(t, names) for t in tasks],
                    "tasks_shown": len(tasks),
                    "agents": [agent_json(a) for a in agents]}
        return self.call(hive_ref, "board_status", caller, status)

    # -- memory and ledger ---------------------------------------------------------------------
    def memory_store(self, caller: str, hive_ref: str | None, *, key: str, content: str,
                     namespace: str | None, tags: Sequence[str]) -> JSON:
        hive = self._hive_if_any(hive_ref)
        if hive is None:
            entry = self.memory.put(namespace or DEFAULT_NAMESPACE, key, content, tags=tags)
            return {"note": entry_to_json(entry)}

        def put(hive: Hive) -> JSON:
            entry = self.memory.put(namespace or hive_namespace(hive.id), key, content, tags=tags)
            return {"note": entry_to_json(entry)}
        return self.call(hive.id, "memory_store", caller, put)

    def memory_search(self, caller: str, hive_ref: str | None, *, query: str,
                      namespace: str | None, limit: int, keyword: bool = False) -> JSON:
        memory = self.keyword_memory if keyword else self.memory
        hive = self._hive_if_any(hive_ref)
        if hive is None:
            found = memory.search(query, namespace=namespace, limit=limit)
            return {"notes": [entry_to_json(e) for e in found], "backend": memory.backend}

        def search(hive: Hive) -> JSON:
            found = memory.search(query, namespace=namespace or hive_namespace(hive.id),
                                  limit=limit)
            return {"notes": [entry_to_json(e) for e in found], "backend": memory.backend}
        return self.call(hive.id, "memory_search", caller, search)

    def _hive_if_any(self, ref: str | None) -> Hive | None:
        if ref is None and self.default_hive is None:
            return None
        return self.hive(ref)

    def ledger_summary(self, caller: str, hive_ref: str | None) -> JSON:
        def summary(hive: Hive) -> JSON:
            names = {a.id: a.name for a in self.store.list_agents(hive.id)}
            rows: dict[tuple[str, str], JSON] = {}
            for entry in self.store.ledger(hive_id=hive.id):
                who = names.get(entry.agent_id or "", entry.agent_id or "(no agent)")
                row = rows.setdefault((who, entry.kind.value), {
                    "agent": who, "kind": entry.kind.value, "calls": 0, "tokens": 0,
                    "cost": 0.0, "unknown_cost_calls": 0})
                row["calls"] += 1
                row["tokens"] += entry.total_tokens
                if entry.cost is None:
                    row["unknown_cost_calls"] += 1
                else:
                    row["cost"] += entry.cost
            total = self.store.spend(hive_id=hive.id)
            by_kind = {kind.value: spend_json(self.store.spend(hive_id=hive.id, kind=kind))
                       for kind in CostKind}
            return {"hive": hive.id, "total": spend_json(total), "by_kind": by_kind,
                    "by_agent_and_kind": sorted(rows.values(),
                                                key=lambda r: (r["agent"], r["kind"]))}
        return self.call(hive_ref, "ledger_summary", caller, summary)

    # -- shapes --------------------------------------------------------------------------------
    def _agent_name(self, hive: Hive, agent_id: str | None) -> str | None:
        if agent_id is None:
            return None
        return next((a.name for a in self.store.list_agents(hive.id) if a.id == agent_id),
                    agent_id)

    def task_json(self, task: Task, names: dict[str, str] | None = None) -> JSON:
        if names is None:
            names = {a.id: a.name for a in self.store.list_agents(task.hive_id)}
        return {"id": task.id, "title": task.title, "description": task.description,
                "state": task.state.value, "skills": list(task.skills),
                "priority": task.priority, "effort": task.effort,
                "depends_on": list(task.depends_on), "parent_id": task.parent_id,
                "assignee": names.get(task.assignee, task.assignee) if task.assignee else None,
                "lease_until": iso(task.lease_until), "attempts": task.attempts,
                "verify": task.verify, "verified": task.verified, "result": task.result}


def workspace_of(hive: Hive) -> Path | None:
    """The hive's workspace folder when it has one that exists."""
    if not hive.workspace:
        return None
    folder = Path(hive.workspace)
    return folder if folder.is_dir() else None


def hive_json(hive: Hive) -> JSON:
    return {"id": hive.id, "name": hive.name, "mode": hive.mode.value,
            "objective": hive.objective, "status": hive.status.value,
            "pause_reason": hive.pause_reason, "workspace": hive.workspace,
            "isolation": isolation_of(hive)}


def agent_json(agent: Agent) -> JSON:
    return {"id": agent.id, "name": agent.name, "role": agent.role, "skills": list(agent.skills),
            "status": agent.status.value, "current_task": agent.current_task,
            "thresholds": {k: round(v, 3) for k, v in agent.thresholds.items()},
            "spent_tokens": agent.spent_tokens, "spent_cost": agent.spent_cost}


def spend_json(spend: Spend) -> JSON:
    return {"calls": spend.calls, "tokens": spend.tokens, "cost": round(spend.cost, 6),
            "unknown_cost_calls": spend.unknown_cost_calls}


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
