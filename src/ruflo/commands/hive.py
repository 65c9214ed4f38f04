"""`ruflo hive list|show|diff|apply|pause|resume|cancel`: stored hives, from the shell. A hive may be given
by its id or a unique prefix of it.

Imports only typer and the standard library at module level.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ruflo.event_kinds import EventKind

if TYPE_CHECKING:
    from ruflo.config import Settings
    from ruflo.model import Event, Hive, HiveDriver
    from ruflo.store.sql import SqlStore

app = typer.Typer(help="List, show, pause, resume and cancel stored hives.",
                  no_args_is_help=True, add_completion=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
HiveArgument = Annotated[str, typer.Argument(help="Hive id (or a unique prefix of it).")]

TRANSCRIPT = (EventKind.AGENT_STARTED, EventKind.AGENT_TURN, EventKind.TOOL_CALL,
              EventKind.TOOL_RESULT, EventKind.AGENT_OUTCOME, EventKind.PROCESS_STARTED,
              EventKind.PROCESS_OUTPUT, EventKind.PROCESS_EXITED, EventKind.HTTP_REQUEST,
              EventKind.HTTP_RESPONSE, EventKind.TASK_VERIFIED)


@contextmanager
def opened() -> Iterator[tuple[Settings, SqlStore]]:
    from ruflo.config import load_settings
    from ruflo.store import open_store

    settings = load_settings()
    store = open_store(settings)
    try:
        yield settings, store
    finally:
        store.close()


def find_hive(store: SqlStore, ref: str) -> Hive:
    """The hive with this id, or the only one whose id starts with it."""
    from ruflo.errors import NotFound

    ref = ref.strip()
    try:
        return store.get_hive(ref)
    except NotFound:
        pass
    matches = [h for h in store.list_hives(limit=1_000_000) if h.id.startswith(ref)] \
        if len(ref) >= 4 else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise NotFound(f"{len(matches)} hives start with {ref!r}; give more of the id")
    raise NotFound(f"no hive {ref!r}; `ruflo hive list` shows the stored hives")


def hive_json(hive: Hive) -> dict[str, Any]:
    return {"id": hive.id, "name": hive.name, "mode": hive.mode.value,
            "objective": hive.objective, "status": hive.status.value, "owner": hive.owner,
            "reason": hive.pause_reason, "workspace": hive.workspace,
            "budget": {"max_tokens": hive.budget.max_tokens, "max_cost": hive.budget.max_cost},
            "config": hive.config, "created_at": hive.created_at.isoformat(),
            "updated_at": hive.updated_at.isoformat()}


def event_json(event: Event) -> dict[str, Any]:
    return {"seq": event.seq, "kind": event.kind, "ts": event.ts.isoformat(),
            "agent_id": event.agent_id, "task_id": event.task_id, "data": event.data}


@app.command("list")
def list_hives(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List stored hives, newest first."""
    with opened() as (_, store):
        rows = []
        for hive in store.list_hives(limit=limit):
            counts = store.count_tasks(hive.id)
            rows.append((hive, counts))
    if as_json:
        typer.echo(json.dumps([{**hive_json(h), "tasks": {s.value: n for s, n in c.items()}}
                               for h, c in rows]))
        return
    if not rows:
        typer.echo("no hives yet; `ruflo orchestrate \"...\"` starts one", err=True)
        return
    for hive, counts in rows:
        total = sum(counts.values())
        done = sum(n for s, n in counts.items() if s.value == "done")
        reason = f" ({hive.pause_reason})" if hive.pause_reason else ""
        typer.echo(f"{hive.id}  {hive.status.value:<9} {hive.mode.value:<11} "
                   f"{done}/{total} done  {hive.created_at:%Y-%m-%d %H:%M}  "
                   f"{hive.owner:<12} {hive.name}{reason}")


@app.command()
def show(
    hive_ref: HiveArgument,
    events: Annotated[int, typer.Option(min=0, help="Recent events to show.")] = 30,
    transcript: Annotated[bool, typer.Option(
        "--transcript/--no-transcript", help="Include the agents' transcripts in the "
                                             "events.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Show a hive: agents (thresholds, status, spend), tasks by state, recent events."""
    from ruflo.engine.board_engine import summarise
    from ruflo.engine.isolation import isolation_json
    from ruflo.engine.view import describe_event
    from ruflo.engine.worker import hive_workers
    from ruflo.model import TaskState

    with opened() as (settings, store):
        hive = find_hive(store, hive_ref)
        agents = store.list_agents(hive.id)
        tasks = store.list_tasks(hive.id)
        summary = summarise(store, hive.id)
        last = store.last_seq(hive.id)
        recent = store.events(hive.id, after_seq=max(0, last - max(events, 1) * 20))
        if not transcript:
            recent = [e for e in recent if e.kind not in TRANSCRIPT]
        recent = recent[-events:] if events else []
        workers = hive_workers(store, hive.id, stale_after=settings.lease_seconds)
        driver = store.hive_driver(hive.id)
    isolation = isolation_json(hive)
    if as_json:
        typer.echo(json.dumps({
            "hive": hive_json(hive), "summary": summary.to_json(),
            "agents": [{"id": a.id, "name": a.name, "role": a.role, "skills": list(a.skills),
                        "status": a.status.value, "current_task": a.current_task,
                        "thresholds": a.thresholds, "spent_tokens": a.spent_tokens,
                        "spent_cost": a.spent_cost, "model": a.model,
                        "adapter": a.adapter.value} for a in agents],
            "tasks": [task_json(t) for t in tasks],
            "workers": workers,
            "driver": driver_json(driver), "isolation": isolation,
            "events": [event_json(e) for e in recent]}, default=str))
        return
    reason = f" ({hive.pause_reason})" if hive.pause_reason else ""
    typer.echo(f"hive {hive.id}  {hive.name}\n  {hive.mode.value}, {hive.status.value}{reason}"
               f"\n  owner: {hive.owner}"
               f"\n  objective: {hive.objective}\n  workspace: {hive.workspace}")
    typer.echo(f"  driver: {describe_driver(driver)}")
    if isolation["isolation"] == "git":
        typer.echo(f"  isolation: git worktrees, branch {isolation.get('branch')} from "
                   f"{str(isolation.get('start_commit'))[:12]}, "
                   f"{isolation.get('live_worktrees')} live worktree(s), "
                   f"{isolation.get('disk_bytes')} bytes on disk")
        if isolation.get("remote"):
            typer.echo(f"  git remote: {isolation['remote']} (the result is its "
                       f"{isolation.get('branch')}; `ruflo hive diff` fetches it)")
    else:
        typer.echo("  isolation: none (the agents share the workspace folder)")
    typer.echo(f"  spend: {summary.calls} calls, {summary.tokens} tokens, ${summary.cost:.4f}"
               f" (coordination {summary.coordination_tokens} tokens)")
    typer.echo("agents:")
    names = {a.id: a.name for a in agents}
    for agent in agents:
        thresholds = ", ".join(f"{k}={v:.2f}" for k, v in sorted(agent.thresholds.items()))
        doing = f" on {agent.current_task}" if agent.current_task else ""
        typer.echo(f"  {agent.name:<16} {agent.status.value:<8}{doing}  {agent.spent_tokens} "
                   f"tokens ${agent.spent_cost:.4f}  θ: {thresholds or '-'}")
    if workers:
        typer.echo("workers:")
        for worker in workers:
            typer.echo(f"  {worker.get('id')}  {worker.get('host')}  "
                       f"{len(worker.get('agents') or [])} agents  "
                       f"heartbeat {worker.get('heartbeat_at')}  "
                       f"{'alive' if worker.get('alive') else 'NOT ALIVE'}")
    typer.echo("tasks:")
    for state in TaskState:
        group = [t for t in tasks if t.state is state]
        if not group:
            continue
        typer.echo(f"  {state.value} ({len(group)}):")
        for task in group:
            who = f" [{names.get(task.assignee, task.assignee)}]" if task.assignee else ""
            verdict = {True: " ✓verified", False: " ✗verify failed", None: ""}[task.verified]
            typer.echo(f"    {task.id}  {task.title}{who}{verdict}")
    if recent:
        typer.echo("recent events:")
        for event in recent:
            typer.echo(f"  {describe_event(event, names)}")


def driver_json(driver: HiveDriver | None) -> dict[str, Any] | None:
    if driver is None:
        return None
    return {"host": driver.host, "pid": driver.pid, "instance": driver.instance,
            "driving_since": driver.driving_since.isoformat(),
            "driver_until": driver.driver_until.isoformat(), "alive": driver.live()}


def describe_driver(driver: HiveDriver | None) -> str:
    if driver is None:
        return "none (no process drives it now)"
    state = ("lease until" if driver.live() else "NOT ALIVE: its lease ran out at")
    return (f"{driver.who} since {driver.driving_since:%Y-%m-%d %H:%M:%S} UTC ({state} "
            f"{driver.driver_until:%H:%M:%S} UTC)")


def task_json(task: Any) -> dict[str, Any]:
    return {"id": task.id, "title": task.title, "description": task.description,
            "state": task.state.value, "assignee": task.assignee, "skills": list(task.skills),
            "depends_on": list(task.depends_on), "parent_id": task.parent_id,
            "priority": task.priority, "effort": task.effort, "attempts": task.attempts,
            "verify": task.verify, "verified": task.verified, "result": task.result,
            "blocked_on": task.blocked_on}


@app.command()
def pause(
    hive_ref: HiveArgument,
    reason: Annotated[str, typer.Option(help="Why, shown to others.")] = "paused by a person",
    as_json: JsonOption = False,
) -> None:
    """Pause a hive: work in flight is released back to the board, nothing is lost."""
    from ruflo.engine.control import pause_hive

    with opened() as (_, store):
        hive = pause_hive(store, find_hive(store, hive_ref).id, reason=reason)
    _said(hive, as_json, f"hive {hive.id} paused ({hive.pause_reason}); "
                         f"`ruflo hive resume {hive.id}` goes on")


@app.command()
def resume(
    hive_ref: HiveArgument,
    run: Annotated[bool, typer.Option(
        "--run/--no-run", help="Drive the hive to its end here (default), or only mark it "
                               "running for an engine elsewhere.")] = True,
    budget_tokens: Annotated[int | None, typer.Option(
        min=0, help="A new token budget for the hive.")] = None,
    budget_cost: Annotated[float | None, typer.Option(
        min=0, help="A new money budget for the hive, in USD.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Resume a paused hive and (unless --no-run) drive it to its end in the foreground."""
    from ruflo.agents.sandbox import sandbox_trace
    from ruflo.config import boot_trace
    from ruflo.engine.control import resume_hive
    from ruflo.model import Budget

    with opened() as (settings, store):
        hive = find_hive(store, hive_ref)
        budget = None
        if budget_tokens is not None or budget_cost is not None:
            budget = Budget(max_tokens=budget_tokens if budget_tokens is not None
                            else hive.budget.max_tokens,
                            max_cost=budget_cost if budget_cost is not None
                            else hive.budget.max_cost)
        if run:
            from ruflo.commands.orchestrate import require_gateway

            for line in [*boot_trace(settings), *sandbox_trace(settings)]:
                typer.echo(line, err=True)
            require_gateway(settings)
        driving = None
        if run:
            from ruflo.engine.driving import drive_here

            driving = drive_here(store, hive.id, by="`ruflo hive resume`", hint=(
                f" (`ruflo hive resume --no-run {hive.id}` marks it running for that driver)"))
        try:
            hive = resume_hive(store, hive.id, budget=budget)
        except BaseException:
            if driving is not None:
                driving.release_all()
            raise
        if not run:
            _said(hive, as_json, f"hive {hive.id} is running again; an engine must drive it "
                                 "(`ruflo hive resume` without --no-run does)")
            return
        from ruflo.commands.orchestrate import report, run_in_foreground

        summary = run_in_foreground(settings, store, hive.id, show=not as_json, driving=driving)
        code = report(summary, as_json)
    raise typer.Exit(code)


@app.command()
def cancel(hive_ref: HiveArgument, as_json: JsonOption = False) -> None:
    """Cancel a hive: every unfinished task is cancelled and its engine stops."""
    from ruflo.engine.control import cancel_hive

    with opened() as (_, store):
        hive = cancel_hive(store, find_hive(store, hive_ref).id)
        cancelled = store.count_tasks(hive.id)
    from ruflo.model import TaskState

    _said(hive, as_json, f"hive {hive.id} cancelled ({cancelled[TaskState.CANCELLED]} tasks "
                         "cancelled)")


@app.command()
def diff(hive_ref: HiveArgument,
         stat: Annotated[bool, typer.Option("--stat", help="Files changed only.")] = False
         ) -> None:
    """The hive's result: its integration branch against the commit it started from (a hive
    on a git remote: fetched from it into your repository's ruflo/<hive> first)."""
    from ruflo.engine.isolation import hive_repo

    with opened() as (_settings, store):
        hive = find_hive(store, hive_ref)
    repo = hive_repo(hive)
    start = hive.config.get("start_commit")
    typer.echo(repo.diff(start if isinstance(start, str) else "HEAD", stat=stat), nl=False)


@app.command()
def apply(hive_ref: HiveArgument) -> None:
    """Merge the hive's integration branch into your checked-out branch (refuses a dirty
    tree; a hive on a git remote: fetched from it first). To throw the result away instead:
    git branch -D ruflo/<hive>."""
    from ruflo.engine.isolation import hive_repo

    with opened() as (_settings, store):
        hive = find_hive(store, hive_ref)
    repo = hive_repo(hive)
    head = repo.apply_to_user_branch()
    typer.echo(f"applied {repo.branch} to your branch: now at {head[:12]}")


def _said(hive: Hive, as_json: bool, line: str) -> None:
    if as_json:
        typer.echo(json.dumps(hive_json(hive)))
    else:
        typer.echo(line)
