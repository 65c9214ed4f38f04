"""Wake-ups (`store.listen`) and the adoption lock (`store.adoption_lock`), on SQLite and Postgres,
including hostile cases: a failing callback, foreign notifications, a killed LISTEN connection, a
lock holder that dies, a body that raises."""

from __future__ import annotations

import queue
import sqlite3
import threading
import uuid
from typing import Any

import pytest

from ruflo.model import Agent, Hive, Mode
from ruflo.store import open_store
from ruflo.store.sql import SqlStore
from ruflo.store.workers import ADOPTION_LOCK

WAIT = 20.0
"""Longest wait for a wake-up that should come (a failure bound, never a timing assertion)."""


def unique(*names: str) -> list[str]:
    """Hive ids no other test uses: NOTIFY is database-wide, so a listener on Postgres also hears
    the stores in other schemas (other tests running at the same time)."""
    run = uuid.uuid4().hex[:8]
    return [f"h-{name}-{run}" for name in names]


def make_hive(store: SqlStore, hive_id: str) -> Hive:
    return store.create_hive(Hive(id=hive_id, name=hive_id, mode=Mode.SWARM, objective="o"),
                             [Agent(id=f"{hive_id}-a", hive_id=hive_id, name="a")])


class Inbox:
    """Collects wake-ups from any thread."""

    def __init__(self) -> None:
        self.items: queue.Queue[str | None] = queue.Queue()

    def __call__(self, hive_id: str | None) -> None:
        self.items.put(hive_id)

    def next(self) -> str | None:
        return self.items.get(timeout=WAIT)

    def until(self, sentinel: str) -> list[str | None]:
        """Everything received before `sentinel` (which is consumed)."""
        seen: list[str | None] = []
        while (item := self.next()) != sentinel:
            seen.append(item)
        return seen


def test_listen_wakes_once_per_hive_per_commit(store: SqlStore) -> None:
    a, b, end = unique("a", "b", "end")
    for hive_id in (a, b, end):
        make_hive(store, hive_id)
    inbox = Inbox()
    listening = store.listen(inbox, hives=[a, b, end])
    try:
        assert inbox.next() is None  # at start: look at the log, anything may have been missed
        with store.transaction():
            for n in range(3):
                store.append_event(a, "agent_turn", data={"n": n})
            store.append_event(b, "agent_turn")
        store.append_event(end, "agent_turn")
        assert sorted(x for x in inbox.until(end) if x is not None) == [a, b]
    finally:
        listening.stop()


def test_listen_filters_by_hive_and_stops(store: SqlStore) -> None:
    mine_id, other, end = unique("mine", "other", "end")
    for hive_id in (mine_id, other, end):
        make_hive(store, hive_id)
    mine, everyone = Inbox(), Inbox()
    only_mine = store.listen(mine, hives=[mine_id])
    all_hives = store.listen(everyone, hives=[mine_id, other, end])
    try:
        assert mine.next() is None
        assert everyone.next() is None
        store.append_event(other, "agent_turn")
        store.append_event(mine_id, "agent_turn")
        assert mine.next() == mine_id
        only_mine.stop()
        store.append_event(mine_id, "agent_turn")
        store.append_event(end, "agent_turn")
        everyone.until(end)  # every wake-up sent before has been delivered by now
        assert mine.items.empty()
    finally:
        only_mine.stop()
        all_hives.stop()


def test_a_failing_callback_does_not_deafen_the_listener(store: SqlStore,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    bad, good = unique("bad", "good")
    for hive_id in (bad, good):
        make_hive(store, hive_id)
    inbox = Inbox()

    def flaky(hive_id: str | None) -> None:
        if hive_id == bad:
            raise RuntimeError("the follower has a bug")
        inbox(hive_id)

    listening = store.listen(flaky, hives=[bad, good])
    try:
        assert inbox.next() is None
        store.append_event(bad, "agent_turn")
        store.append_event(good, "agent_turn")
        assert inbox.until(good) == []
        assert f"wake-up callback failed on hive {bad}" in caplog.text
    finally:
        listening.stop()


def test_closing_the_store_stops_its_listeners(store_url: str) -> None:
    store = open_store(store_url)
    inbox = Inbox()
    store.listen(inbox)
    assert inbox.next() is None
    store.close()
    assert store._subscriptions == []
    with pytest.raises(Exception, match="closed"):
        store.listen(inbox)


def test_sqlite_wakes_only_this_process(tmp_path: Any) -> None:
    """Another process writing the file wakes no one on SQLite (it can't tell): the follower's
    poll covers it. Here a second store object on the same file stands for that process."""
    url = f"sqlite:///{tmp_path / 'ruflo.db'}"
    here, elsewhere = open_store(url), open_store(url)
    try:
        make_hive(here, "h-1")
        inbox = Inbox()
        listening = here.listen(inbox)
        assert inbox.next() is None
        elsewhere.append_event("h-1", "agent_turn")
        assert inbox.items.empty()  # SQLite delivers in the committing thread: nothing pending
        here.append_event("h-1", "agent_turn")
        assert inbox.items.get_nowait() == "h-1"
        listening.stop()
    finally:
        here.close()
        elsewhere.close()


# -- Postgres: hostile notifications and a killed LISTEN connection ------------------------------

@pytest.fixture
def pg_store(pg_schema_url: str) -> Any:
    opened = open_store(pg_schema_url)
    yield opened
    opened.close()


def admin(url: str) -> Any:
    """A connection of the test's own, as another process would have."""
    import psycopg

    return psycopg.connect(url, autocommit=True)


@pytest.mark.postgres
def test_foreign_notifications_on_the_channel_are_harmless(pg_store: SqlStore,
                                                          pg_schema_url: str) -> None:
    (real,) = unique("real")
    make_hive(pg_store, real)
    inbox = Inbox()
    listening = pg_store.listen(inbox, hives=[real])
    try:
        assert inbox.next() is None
        with admin(pg_schema_url) as conn:
            for payload in ("", "garbage", ":::", real, "x" * 7000, f"{real}:not-a-seq"):
                conn.execute("SELECT pg_notify('ruflo_events', %s)", (payload,))
        pg_store.append_event(real, "agent_turn")
        # "<hive>:not-a-seq" names the hive too: a spurious wake-up costs one read, nothing more
        assert set(inbox.until(real)) <= {real}
    finally:
        listening.stop()


@pytest.mark.postgres
def test_a_killed_listen_connection_reconnects(pg_store: SqlStore, pg_schema_url: str) -> None:
    (hive,) = unique("1")
    make_hive(pg_store, hive)
    inbox = Inbox()
    listening = pg_store.listen(inbox, hives=[hive])
    try:
        assert inbox.next() is None
        pid = listening.backend_pid  # type: ignore[attr-defined]
        assert pid is not None
        with admin(pg_schema_url) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert inbox.next() is None  # reconnected: anything may have been missed meanwhile
        assert listening.backend_pid != pid  # type: ignore[attr-defined]
        pg_store.append_event(hive, "agent_turn")
        assert inbox.until(hive) == []
    finally:
        listening.stop()


# -- the adoption lock -----------------------------------------------------------------------

def test_adoption_lock_excludes_other_holders(store_url: str) -> None:
    """Several store objects (as several processes) adopt at once: never two inside together."""
    stores = [open_store(store_url) for _ in range(4)]
    make_hive(stores[0], "h-1")
    inside = 0
    overlaps: list[int] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def adopt(store: SqlStore) -> None:
        nonlocal inside
        try:
            for _ in range(10):
                with store.adoption_lock():
                    with guard:
                        inside += 1
                        overlaps.append(inside)
                    store.list_agents("h-1")  # the driver releases the GIL: others run now
                    store.update_agent("h-1-a", worker_id=f"w-{id(store)}")
                    with guard:
                        inside -= 1
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=adopt, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert not errors
    assert len(overlaps) == 40
    assert max(overlaps) == 1


def test_adoption_lock_is_free_after_a_body_that_raises(store: SqlStore, store_url: str) -> None:
    make_hive(store, "h-1")

    def adopt_and_fail() -> None:
        with store.adoption_lock():
            store.update_agent("h-1-a", worker_id="w-1")
            raise ValueError("adopter failed")

    with pytest.raises(ValueError, match="adopter failed"):
        adopt_and_fail()
    if store.dialect == "sqlite":
        # the block was one transaction: undone, and the file's write lock is free at once
        assert store.get_agent("h-1-a").worker_id is None
        path = store_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path, timeout=0, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        conn.close()
    else:
        with admin(store_url) as conn:
            assert conn.execute("SELECT pg_try_advisory_lock(%s)", (ADOPTION_LOCK,)).fetchone() \
                == (True,)
    with store.adoption_lock():
        store.update_agent("h-1-a", worker_id="w-2")
    assert store.get_agent("h-1-a").worker_id == "w-2"


def test_adoption_lock_refuses_to_be_taken_inside_a_transaction(store: SqlStore) -> None:
    with store.transaction(), pytest.raises(RuntimeError, match="before a transaction"), \
            store.adoption_lock():
        pass


@pytest.mark.postgres
def test_a_dead_lock_holder_frees_the_adoption_lock(pg_store: SqlStore,
                                                    pg_schema_url: str) -> None:
    """Another process holds the lock and dies without letting go: the server frees it with its
    connection, and the waiting adopter gets in."""
    make_hive(pg_store, "h-1")
    holder = admin(pg_schema_url)
    holder.execute("SELECT pg_advisory_lock(%s)", (ADOPTION_LOCK,))
    entered = threading.Event()
    done = threading.Event()

    def adopt() -> None:
        with pg_store.adoption_lock():
            entered.set()
        done.set()

    thread = threading.Thread(target=adopt)
    thread.start()
    high, low = ADOPTION_LOCK >> 32, ADOPTION_LOCK & 0xFFFFFFFF
    with admin(pg_schema_url) as watcher:
        def waiting() -> bool:
            row = watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND "
                "classid = %s AND objid = %s", (high, low)).fetchone()
            return bool(row and row[0])

        while not (entered.is_set() or waiting()):
            entered.wait(0.02)
        assert not entered.is_set()  # it waits while the holder lives
        watcher.execute("SELECT pg_terminate_backend(%s)", (holder.info.backend_pid,))
    assert done.wait(WAIT)
    thread.join()
    holder.close()
