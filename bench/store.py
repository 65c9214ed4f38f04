"""Store throughput: claim-then-complete cycles per second on SQLite and Postgres, and the cost of
one more write at 1,000 and 100,000 stored conversations beside rewriting the whole state as one
JSON file (upstream ruvocal's way). Prints each figure and its ratio to the baseline.

Run: .venv/bin/python bench/store.py [--quick]   (Postgres part skipped if it is not reachable)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ruflo.model import Agent, Conversation, Hive, Message, Mode, Task, TaskState, new_id
from ruflo.store import open_store

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"


def cycles_per_second(store: Any, tasks: int) -> tuple[float, float]:
    """Claim-then-complete cycles per wall-clock second, and per CPU-second of this process
    (the second figure stays meaningful when other work shares the cores)."""
    hive = Hive(id=new_id(), name="bench", mode=Mode.SWARM, objective="bench")
    agent = Agent(id=new_id(), hive_id=hive.id, name="a")
    board = [Task(id=new_id(), hive_id=hive.id, title=f"t{i}", priority=i % 5)
             for i in range(tasks)]
    store.create_hive(hive, [agent], board)
    started, cpu = time.perf_counter(), time.process_time()
    done = 0
    while (task := store.claim_task(hive.id, agent.id, lease_seconds=60)) is not None:
        store.finish_task(task.id, agent.id, state=TaskState.DONE, result="ok")
        done += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert done == tasks
    return done / elapsed, done / cpu


def fill_conversations(store: Any, upto: int, have: int) -> None:
    with store.transaction():
        for i in range(have, upto):
            cid = uuid.uuid4().hex[:24]
            store.create_conversation(
                Conversation(id=cid, user_id=f"user{i % 50}", title=f"chat {i}", model="m"),
                [Message(id=uuid.uuid4().hex, conversation_id=cid, role="user",
                         content="hello there, how are you doing today?")])


def one_more_write(store: Any, repeats: int = 300) -> float:
    """Median seconds to add one conversation with one message (its own transaction)."""
    samples = []
    for _ in range(repeats):
        cid = uuid.uuid4().hex[:24]
        conversation = Conversation(id=cid, user_id="bench", title="new", model="m")
        message = Message(id=uuid.uuid4().hex, conversation_id=cid, role="user", content="hi")
        started = time.perf_counter()
        store.create_conversation(conversation, [message])
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def json_rewrite(count: int, folder: Path, repeats: int) -> float:
    """Seconds to rewrite the whole state as one JSON file after adding one conversation."""
    doc: dict[str, Any] = {"rvf_version": "2.0", "format": "rvf-database",
                           "collections": {"conversations": {}}}
    conversations = doc["collections"]["conversations"]
    for i in range(count):
        cid = f"{i:024x}"
        conversations[cid] = {"_id": cid, "userId": f"user{i % 50}", "title": f"chat {i}",
                              "model": "m", "createdAt": "2025-01-01T00:00:00.000Z",
                              "updatedAt": "2025-01-01T00:00:00.000Z", "messages": [
                                  {"id": uuid.uuid4().hex, "from": "user",
                                   "content": "hello there, how are you doing today?",
                                   "ancestors": [], "children": []}]}
    path = folder / f"state-{count}.json"
    samples = []
    for r in range(repeats):
        cid = f"new{r:021x}"
        started = time.perf_counter()
        conversations[cid] = {"_id": cid, "title": "new", "messages": []}
        path.write_text(json.dumps(doc))
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def postgres_url() -> tuple[str, str] | None:
    try:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except Exception as error:
        print(f"postgres: skipped ({str(error).splitlines()[0]})")
        return None
    return f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}", schema


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 instead of 100,000")
    args = parser.parse_args()
    big = 10_000 if args.quick else 100_000
    folder = Path(tempfile.mkdtemp(prefix="ruflo-bench-"))

    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores (other work slows the wall figures)")
    store = open_store(f"sqlite:///{folder / 'ruflo.db'}")
    sqlite_cycles, sqlite_cpu = cycles_per_second(store, 5000)
    print(f"sqlite   claim+complete: {sqlite_cycles:8.0f} cycles/s wall, {sqlite_cpu:8.0f} per "
          f"CPU-second   (target >= 2,000: {'met' if sqlite_cycles >= 2000 else 'MISSED'}; "
          f"x{sqlite_cycles / 2000:.1f})")

    pg = postgres_url()
    if pg is not None:
        url, schema = pg
        try:
            pg_store = open_store(url)
            pg_cycles, pg_cpu = cycles_per_second(pg_store, 2000)
            pg_store.close()
            print(f"postgres claim+complete: {pg_cycles:8.0f} cycles/s wall, {pg_cpu:8.0f} per "
                  f"client CPU-second   (sqlite/postgres x{sqlite_cycles / pg_cycles:.1f}; every "
                  "commit durable on the server)")
        finally:
            drop_schema(schema)

    fill_conversations(store, 1000, 0)
    at_small = one_more_write(store)
    json_small = json_rewrite(1000, folder, 20)
    started = time.perf_counter()
    fill_conversations(store, big, 1000)
    fill_seconds = time.perf_counter() - started
    at_big = one_more_write(store)
    json_big = json_rewrite(big, folder, 5)
    store.close()
    print(f"(filled {big - 1000:,} conversations in {fill_seconds:.1f} s)")
    print("one more write (a conversation with a message):")
    print(f"  at {1000:>7,}: sqlite {at_small * 1e6:8.0f} us   json rewrite "
          f"{json_small * 1e6:10.0f} us   json/sqlite x{json_small / at_small:,.0f}")
    print(f"  at {big:>7,}: sqlite {at_big * 1e6:8.0f} us   json rewrite "
          f"{json_big * 1e6:10.0f} us   json/sqlite x{json_big / at_big:,.0f}")
    growth = at_big / at_small
    print(f"  sqlite cost at {big:,} / at 1,000: x{growth:.2f} (target <= 1.5: "
          f"{'met' if growth <= 1.5 else 'MISSED'});  json: x{json_big / json_small:.0f}")


if __name__ == "__main__":
    main()
