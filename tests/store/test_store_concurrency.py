"""Of many claimers of one task, from threads or from separate processes, exactly one wins;
claimers offered the same tasks in different orders each get a different one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import pytest
from store_helpers import make_hive

from ruflo.store import open_store


def at_once(count: int, body: Callable[[int], None]) -> list[BaseException]:
    """Run `body(i)` for i in range(count), each in its own thread, released together; the
    errors they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            body(i)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_one_winner_among_threads(store: Any) -> None:
    hive = make_hive(store, tasks=1, agents=12)
    winners: list[str] = []

    def claim(i: int) -> None:
        task = store.claim_task(hive.id, f"{hive.id[:8]}-a{i}", lease_seconds=30)
        if task is not None:
            winners.append(task.assignee)

    assert at_once(12, claim) == []
    assert len(winners) == 1
    claimed = store.events(hive.id, kinds=["task_claimed"])
    assert len(claimed) == 1
    assert claimed[0].agent_id == winners[0]


def test_many_threads_drain_a_board_without_double_claims(store: Any) -> None:
    hive = make_hive(store, tasks=60, agents=6)
    taken: list[str] = []

    def work(i: int) -> None:
        me = f"{hive.id[:8]}-a{i}"
        while (task := store.claim_task(hive.id, me, lease_seconds=30)) is not None:
            store.finish_task(task.id, me, state="done")
            taken.append(task.id)

    assert at_once(6, work) == []
    assert len(taken) == 60
    assert len(set(taken)) == 60


CLAIMER = textwrap.dedent("""
    import sys
    from ruflo.store import open_store
    store = open_store(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    task = store.claim_task(sys.argv[2], sys.argv[3], lease_seconds=30)
    print("won" if task else "lost", flush=True)
    store.close()
""")


@pytest.mark.integration
def test_one_winner_among_processes(store_url: str) -> None:
    store = open_store(store_url)
    try:
        hive = make_hive(store, tasks=1, agents=6)
        procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, store_url, hive.id,
                                   f"{hive.id[:8]}-a{i}"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True) for i in range(6)]
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        answers = [proc.communicate(timeout=60)[0].strip() for proc in procs]
        assert all(proc.returncode == 0 for proc in procs)
        assert sorted(answers) == ["lost"] * 5 + ["won"]
        assert len(store.events(hive.id, kinds=["task_claimed"])) == 1
    finally:
        store.close()


def test_a_taken_task_gives_way_to_the_first_free_alternative(store: Any) -> None:
    hive = make_hive(store, tasks=4, agents=3)
    first, second, third, fourth = (t.id for t in store.list_tasks(hive.id))
    me, other = f"{hive.id[:8]}-a0", f"{hive.id[:8]}-a1"
    assert store.claim_task(hive.id, other, lease_seconds=30, task_id=first) is not None
    store.finish_task(third, None, state="cancelled")

    got = store.claim_task(hive.id, me, lease_seconds=30, task_id=first,
                           alternatives=[third, fourth, second])
    assert got is not None
    assert got.id == fourth, "third is cancelled, fourth comes before second"
    assert got.assignee == me
    last = store.events(hive.id, kinds=["task_claimed"])[-1]
    assert (last.task_id, last.agent_id) == (fourth, me)

    assert store.claim_task(hive.id, me, lease_seconds=30, task_id=first,
                            alternatives=[third, fourth]) is None, "nothing left of those"
    with pytest.raises(ValueError, match="alternatives go with a task_id"):
        store.claim_task(hive.id, me, lease_seconds=30, alternatives=[second])
    assert store.get_task(second).state.value == "open", "the refused calls changed nothing"


def test_claimers_offered_the_same_tasks_each_get_a_different_one(store: Any) -> None:
    """Twelve threads, each offering the store the same eight tasks in its own order: eight
    win one each (SKIP LOCKED passes over a row another claimer holds), four get nothing."""
    hive = make_hive(store, tasks=8, agents=12)
    ids = [t.id for t in store.list_tasks(hive.id)]
    won: list[tuple[str, str]] = []

    def claim(i: int) -> None:
        offered = ids[i % 8:] + ids[:i % 8]
        task = store.claim_task(hive.id, f"{hive.id[:8]}-a{i}", lease_seconds=30,
                                task_id=offered[0], alternatives=offered[1:])
        if task is not None:
            won.append((task.id, task.assignee))

    assert at_once(12, claim) == []
    assert sorted(task for task, _ in won) == sorted(ids), "every task claimed exactly once"
    assert len({agent for _, agent in won}) == 8
    claimed = store.events(hive.id, kinds=["task_claimed"])
    assert sorted((e.task_id, e.agent_id) for e in claimed) == sorted(won)
