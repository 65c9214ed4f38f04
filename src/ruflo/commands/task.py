"""`ruflo task post|list|show|cancel`: a hive's board from the shell. A running engine (here or
in another process) picks the change up from the store's events.

Imports only typer and the standard library at module level.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ruflo.model import Task
    from ruflo.store.sql import SqlStore

app = typer.Typer(help="Post, list, show and cancel tasks on a hive's board.",
                  no_args_is_help=True, add_completion=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TaskArgument = Annotated[str, typer.Argument(help="Task id.")]
ShortIdHiveOption = Annotated[str | None, typer.Option(
    "--hive", help="Hive, to give the task's short id.")]
HiveArgument = Annotated[str, typer.Argument(help="Hive id (or a unique prefix of it).")]


def find_task(store: SqlStore, ref: str, hive_id: str | None = None) -> Task:
    """A task by its id, or by its short id within a hive (`build` for `3f9a2c1b.build`)."""
    from ruflo.engine.plan import board_id
    from ruflo.errors import NotFound

    try:
        return store.get_task(ref)
    except NotFound:
        if hive_id is None:
            raise NotFound(f"no task {ref!r}; `ruflo task list HIVE` shows a hive's "
                           "tasks") from None
    try:
        return store.get_task(board_id(hive_id, ref))
    except NotFound:
        raise NotFound(f"no task {ref!r} in hive {hive_id}; nothing was changed") from None


@app.command()
def post(
    hive_ref: HiveArgument,
    title: Annotated[str, typer.Argument(help="What to do, in a few words.")],
    description: Annotated[str, typer.Option(help="Enough detail to do it alone.")] = "",
    skill: Annotated[list[str] | None, typer.Option(
        "--skill", help="A skill the task needs (repeatable).")] = None,
    depends_on: Annotated[list[str] | None, typer.Option(
        "--depends-on", help="A task that must be done first (repeatable).")] = None,
    verify: Annotated[str | None, typer.Option(
        help="Shell command run in the workspace; exit code 0 means done.")] = None,
    priority: Annotated[int, typer.Option(min=0, max=1000, help="Higher is sooner.")] = 1,
    effort: Annotated[float, typer.Option(min=0.001, help="Estimated work units.")] = 1.0,
    task_id: Annotated[str | None, typer.Option(
        "--id", help="A short id, unique in the hive (default: generated).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Post a task to a hive's board (refused on a finished hive)."""
    from ruflo.commands.hive import find_hive, task_json
    from ruflo.commands.hive import opened as open_hive_store
    from ruflo.engine.plan import board_id
    from ruflo.errors import ConfigError, Conflict, NotFound
    from ruflo.model import Task, new_id

    if not title.strip():
        raise ConfigError("a task needs a title; nothing was posted")
    with open_hive_store() as (_, store):
        hive = find_hive(store, hive_ref)
        if hive.status.terminal:
            raise Conflict(f"hive {hive.id} is {hive.status.value}; nothing was posted (start a "
                           "new hive with `ruflo orchestrate`)")
        deps = tuple(find_task(store, d, hive.id).id for d in depends_on or [])
        local = task_id or new_id()[:8]
        task = Task(id=board_id(hive.id, local), hive_id=hive.id, title=title.strip(),
                    description=description, skills=tuple(skill or ()), priority=priority,
                    effort=effort, depends_on=deps, verify=verify)
        try:
            store.get_task(task.id)
        except NotFound:
            pass
        else:
            raise Conflict(f"hive {hive.id} already has a task {local!r}; nothing was posted")
        posted = store.post_tasks(hive.id, [task])[0]
    if as_json:
        typer.echo(json.dumps(task_json(posted)))
    else:
        typer.echo(f"posted {posted.id} to hive {hive.id} ({hive.status.value})")


@app.command("list")
def list_tasks(
    hive_ref: HiveArgument,
    state: Annotated[list[str] | None, typer.Option(
        "--state", help="Only tasks in this state (repeatable): open, claimed, done, failed, "
                        "blocked, cancelled.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List a hive's tasks."""
    from ruflo.commands.hive import find_hive, task_json
    from ruflo.commands.hive import opened as open_hive_store
    from ruflo.errors import ConfigError
    from ruflo.model import TaskState

    try:
        states = [TaskState(s) for s in state or []]
    except ValueError as error:
        raise ConfigError(f"{error}; states are {', '.join(s.value for s in TaskState)}") \
            from None
    with open_hive_store() as (_, store):
        hive = find_hive(store, hive_ref)
        tasks = store.list_tasks(hive.id, states=states or None)
        names = {a.id: a.name for a in store.list_agents(hive.id)}
    if as_json:
        typer.echo(json.dumps([task_json(t) for t in tasks]))
        return
    if not tasks:
        typer.echo("no tasks", err=True)
    for task in tasks:
        who = f" [{names.get(task.assignee, task.assignee)}]" if task.assignee else ""
        deps = f" after {', '.join(task.depends_on)}" if task.depends_on else ""
        typer.echo(f"{task.id}  {task.state.value:<9} {task.title}{who}{deps}")


@app.command()
def show(
    task_ref: TaskArgument,
    hive_ref: ShortIdHiveOption = None,
    as_json: JsonOption = False,
    patch: Annotated[bool, typer.Option(
        "--patch", help="Under git isolation, print the task's patch too (the first 64 KiB).")
    ] = False,
) -> None:
    """Show a task with its history (claims, transcript, verdicts) and, under git isolation, its
    branch, commit, merge state and diff stat (--json: and its patch)."""
    from ruflo.commands.hive import event_json, find_hive, task_json
    from ruflo.commands.hive import opened as open_hive_store
    from ruflo.engine.isolation import task_git
    from ruflo.engine.view import describe_event

    with open_hive_store() as (_, store):
        hive_id = find_hive(store, hive_ref).id if hive_ref else None
        task = find_task(store, task_ref, hive_id)
        history = [e for e in store.events(task.hive_id) if e.task_id == task.id]
        names = {a.id: a.name for a in store.list_agents(task.hive_id)}
        hive = store.get_hive(task.hive_id)
    git_info = task_git(hive, history)
    if as_json:
        typer.echo(json.dumps({**task_json(task), "hive_id": task.hive_id, "git": git_info,
                               "events": [event_json(e) for e in history]}, default=str))
        return
    typer.echo(f"task {task.id}  {task.title}\n  {task.state.value}, hive {task.hive_id}, "
               f"attempts {task.attempts}")
    for label, value in (("description", task.description), ("verify", task.verify),
                         ("depends on", ", ".join(task.depends_on)),
                         ("result", task.result), ("blocked on", task.blocked_on)):
        if value:
            typer.echo(f"  {label}: {value}")
    if git_info:
        typer.echo(f"  branch: {git_info['branch']}  commit: {git_info['commit']}  "
                   f"merged: {git_info['merged']}")
        typer.echo(_printable(str(git_info.get("diff") or "")), nl=False)
        if patch:
            typer.echo(_printable(str(git_info.get("patch") or "")), nl=False)
        if patch and git_info.get("patch_truncated"):
            typer.echo("  (patch cut: see it in full with `git diff "
                       f"{git_info['base']} {git_info['commit']}`)")
    for event in history:
        typer.echo(f"  {describe_event(event, names)}")


def _printable(text: str) -> str:
    """Text from agents' files for a terminal: control characters (escapes) shown as '?'."""
    return "".join(c if c in "\n\t" or c.isprintable() else "?" for c in text)


@app.command()
def cancel(
    task_ref: TaskArgument,
    hive_ref: ShortIdHiveOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a task (and what waits on it); an agent working on it stops."""
    from ruflo.commands.hive import find_hive
    from ruflo.commands.hive import opened as open_hive_store
    from ruflo.engine.control import cancel_task

    with open_hive_store() as (_, store):
        hive_id = find_hive(store, hive_ref).id if hive_ref else None
        cancelled = cancel_task(store, find_task(store, task_ref, hive_id).id)
    if as_json:
        typer.echo(json.dumps({"cancelled": cancelled}))
    else:
        typer.echo(f"cancelled {', '.join(cancelled)}")
