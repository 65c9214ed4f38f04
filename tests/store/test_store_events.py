"""Transactions, the event log's gap-free per-hive sequence, and listeners after commit."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from store_helpers import agent_id, make_hive

from ruflo.errors import Unstorable
from ruflo.model import Event, Task, TaskState, new_id


def test_a_failed_transaction_leaves_no_trace(store: Any) -> None:
    hive = make_hive(store)
    seen: list[Event] = []
    store.add_listener(seen.append)
    before = store.last_seq(hive.id)
    def doomed() -> None:
        with store.transaction():
            store.post_tasks(hive.id, [Task(id=new_id(), hive_id=hive.id, title="ghost")])
            store.append_event(hive.id, "agent_turn")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        doomed()
    assert store.list_tasks(hive.id) == []
    assert store.last_seq(hive.id) == before
    assert seen == [], "listeners hear only committed events"
    # The sequence continues without a gap after the rollback.
    assert store.append_event(hive.id, "agent_outcome").seq == before + 1


def test_an_unknown_event_kind_is_refused_and_nothing_is_recorded(store: Any) -> None:
    hive = make_hive(store)
    before = store.last_seq(hive.id)
    with pytest.raises(Unstorable, match="unknown event kind 'made_up'"):
        store.append_event(hive.id, "made_up", data={"n": 1})

    def post_with_a_typo() -> None:
        with store.transaction():
            store.post_tasks(hive.id, [Task(id=new_id(), hive_id=hive.id, title="ghost")])
            store.append_event(hive.id, "task_typo")

    # In a batch, one unknown kind refuses the whole transaction (the task too).
    with pytest.raises(Unstorable):
        post_with_a_typo()
    assert store.last_seq(hive.id) == before
    assert store.list_tasks(hive.id) == []
    assert store.append_event(hive.id, "agent_turn").seq == before + 1


def test_nested_transactions_commit_once_and_listeners_run_after_commit(store: Any) -> None:
    hive = make_hive(store)
    seen: list[tuple[int, int]] = []

    def listener(event: Event) -> None:
        # Runs after commit: the event is readable by the store (as by any other reader).
        seen.append((event.seq, len(store.events(hive.id, after_seq=event.seq - 1))))

    store.add_listener(listener)
    with store.transaction():
        store.append_event(hive.id, "process_started")
        with store.transaction():
            store.append_event(hive.id, "process_output")
        assert seen == []
    assert [s for s, _ in seen] == [store.last_seq(hive.id) - 1, store.last_seq(hive.id)]
    assert all(visible >= 1 for _, visible in seen)
    store.remove_listener(listener)
    store.append_event(hive.id, "process_exited")
    assert len(seen) == 2


def test_board_change_and_event_are_one_unit(store: Any) -> None:
    hive = make_hive(store, tasks=1)
    task = store.claim_task(hive.id, agent_id(hive), lease_seconds=30)
    store.finish_task(task.id, agent_id(hive), state=TaskState.DONE, result="x" * 2000,
                      data={"tokens": 12})
    done = store.events(hive.id, kinds=["task_done"])
    assert len(done) == 1
    assert done[0].task_id == task.id
    assert done[0].data["tokens"] == 12
    assert len(done[0].data["result"]) == 500


def test_events_paging_and_filters(store: Any) -> None:
    hive = make_hive(store)
    start = store.last_seq(hive.id)
    for i in range(10):
        store.append_event(hive.id, "tool_call" if i % 2 else "tool_result", data={"i": i})
    page = store.events(hive.id, after_seq=start + 3, limit=4)
    assert [e.seq for e in page] == [start + 4, start + 5, start + 6, start + 7]
    assert [e.data["i"] for e in store.events(hive.id, kinds=["tool_call"])] == [1, 3, 5, 7, 9]


def test_two_hives_have_independent_sequences(store: Any) -> None:
    a, b = make_hive(store), make_hive(store)
    for _ in range(3):
        store.append_event(a.id, "http_request")
    assert store.last_seq(b.id) == store.last_seq(a.id) - 3


def test_gap_free_seq_under_concurrent_appenders(store: Any) -> None:
    hive = make_hive(store)
    start = store.last_seq(hive.id)
    got: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def append(n: int) -> None:
        try:
            for _ in range(n):
                seq = store.append_event(hive.id, "tool_call").seq
                with lock:
                    got.append(seq)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=append, args=(40,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(got) == list(range(start + 1, start + 321))
    stored = [e.seq for e in store.events(hive.id, after_seq=start)]
    assert stored == list(range(start + 1, start + 321))


@pytest.mark.postgres
def test_postgres_notifies_each_commit_once_per_hive(pg_schema_url: str) -> None:
    import psycopg

    from ruflo.store import open_store

    store = open_store(pg_schema_url)
    listener = psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True)
    try:
        hive = make_hive(store)
        listener.execute("LISTEN ruflo_events")

        def ours(seconds: float, wanted: int | None = None) -> list[str]:
            # The channel is shared by every ruflo on this server: keep this hive's payloads.
            got: list[str] = []
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and (wanted is None or len(got) < wanted):
                for note in listener.notifies(timeout=max(0.01, deadline - time.monotonic()),
                                              stop_after=1):
                    if note.payload.startswith(f"{hive.id}:"):
                        got.append(note.payload)
            return got

        with store.transaction():
            store.append_event(hive.id, "process_started")
            store.append_event(hive.id, "process_output")
            assert ours(0.2) == [], "nothing before commit"
        event = store.append_event(hive.id, "process_exited")
        got = ours(2, wanted=2)
        # One notification per committed transaction, carrying the hive's newest seq.
        assert got == [f"{hive.id}:{event.seq - 1}", f"{hive.id}:{event.seq}"]
        assert ours(0.2) == [], "nothing more"
    finally:
        listener.close()
        store.close()


@pytest.mark.postgres
def test_postgres_takes_the_hive_counter_only_at_commit(pg_schema_url: str) -> None:
    """A transaction that appends an event and then goes on working must not hold the hive's
    sequence counter meanwhile: another appender of the hive goes through, and both events
    still get gap-free seqs in commit order."""
    from ruflo.store import open_store

    store = open_store(pg_schema_url)
    try:
        hive = make_hive(store, tasks=1)
        start = store.last_seq(hive.id)
        claimed = threading.Event()
        finish = threading.Event()
        errors: list[BaseException] = []

        def slow_claimer() -> None:
            try:
                with store.transaction():
                    assert store.claim_task(hive.id, agent_id(hive), lease_seconds=30) is not None
                    claimed.set()
                    assert finish.wait(30), "the other appender never finished"
            except BaseException as error:
                errors.append(error)
                claimed.set()

        thread = threading.Thread(target=slow_claimer)
        thread.start()
        assert claimed.wait(30)
        other = threading.Thread(target=lambda: store.append_event(hive.id, "tool_call"))
        other.start()
        other.join(timeout=20)
        blocked = other.is_alive()
        finish.set()
        thread.join(timeout=30)
        other.join(timeout=30)
        assert errors == []
        assert not blocked, "the open claim held the hive's counter before its commit"
        events = store.events(hive.id, after_seq=start)
        assert [e.seq for e in events] == [start + 1, start + 2]
        assert [e.kind for e in events] == ["tool_call", "task_claimed"]
    finally:
        store.close()
