"""What refusing hostile values costs: posting tasks and claim-then-complete cycles on SQLite
with the store's NUL guard and cycle check, against the same with both switched off (the
baseline, measured in the same run), and validating a request body with and without the edge's
NUL walk. Prints wall and CPU time for each.

Run: .venv/bin/python bench/guards.py [--tasks N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ruflo.model import Agent, Hive, Mode, Task, TaskState, new_id
from ruflo.server import schemas
from ruflo.server.board import CompleteBody
from ruflo.server.schemas import TaskSpec
from ruflo.store import approvals, board, chat, hives, memory, open_store, rows, tokens


def timed(work: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


GUARDED = (approvals, board, chat, hives, memory, rows, tokens)
"""The store modules whose writes pass the NUL guard (the board also checks for cycles)."""


@contextmanager
def guards_off() -> Iterator[None]:
    refuse, cycle = board.refuse_nul, board.find_cycle
    for module in GUARDED:
        module.refuse_nul = lambda kind, fields: None  # type: ignore[assignment]
    board.find_cycle = lambda edges: None  # type: ignore[assignment]
    try:
        yield
    finally:
        for module in GUARDED:
            module.refuse_nul = refuse  # type: ignore[assignment]
        board.find_cycle = cycle  # type: ignore[assignment]


def store_run(folder: Path, tasks: int) -> dict[str, tuple[float, float]]:
    store = open_store(f"sqlite:///{folder / f'{new_id()}.db'}")
    hive = Hive(id=new_id(), name="bench", mode=Mode.SWARM, objective="bench")
    agent = Agent(id=new_id(), hive_id=hive.id, name="a")
    store.create_hive(hive, [agent])
    board = [Task(id=new_id(), hive_id=hive.id, title=f"task {i}", description="d" * 200,
                  skills=("python",), depends_on=()) for i in range(tasks)]

    def post() -> None:
        for start in range(0, tasks, 500):
            store.post_tasks(hive.id, board[start:start + 500])

    def cycle() -> None:
        while (task := store.claim_task(hive.id, agent.id, lease_seconds=60)) is not None:
            store.finish_task(task.id, agent.id, state=TaskState.DONE, result="ok")

    figures = {"post": timed(post), "claim+complete": timed(cycle)}
    store.close()
    return figures


def body_run(repeats: int) -> dict[str, tuple[float, float]]:
    complete = {"agent": "rest-1", "success": True, "result": "r" * 2_000}
    task = {"title": "t", "description": "d" * 2_000, "skills": ["a", "b"], "depends_on": ["x"]}

    def validate() -> None:
        for _ in range(repeats):
            CompleteBody.model_validate(complete)
            TaskSpec.model_validate(task)

    return {"validate 2 bodies": timed(validate)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    repeats = 20_000
    with tempfile.TemporaryDirectory() as folder:
        store_run(Path(folder), 1_000)  # warm up
        guarded = store_run(Path(folder), args.tasks)
        with guards_off():
            baseline = store_run(Path(folder), args.tasks)
        guarded_again = store_run(Path(folder), args.tasks)
    for name in guarded:
        for label, figures in (("guarded", guarded), ("baseline (off)", baseline),
                               ("guarded again", guarded_again)):
            wall, cpu = figures[name]
            print(f"{name:>16} {label:>15}: {args.tasks / wall:10,.0f}/s wall "
                  f"{args.tasks / cpu:10,.0f}/s cpu")
    walk = body_run(repeats)

    before = schemas._holds_nul
    schemas._holds_nul = lambda data: False  # type: ignore[assignment]
    try:
        unguarded = body_run(repeats)
    finally:
        schemas._holds_nul = before  # type: ignore[assignment]
    for label, figures in (("guarded", walk), ("baseline (off)", unguarded)):
        wall, cpu = figures["validate 2 bodies"]
        print(f"{'validate 2 bodies':>16} {label:>15}: {wall / repeats * 1e6:8.2f} µs wall "
              f"{cpu / repeats * 1e6:8.2f} µs cpu")


if __name__ == "__main__":
    main()
