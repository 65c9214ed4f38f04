"""Values a store can't hold, refused alike on SQLite and Postgres before anything is written:
text holding a NUL character (Unstorable, naming the field), and a batch of tasks whose
dependencies form a cycle (PolicyError, naming the cycle). Lookups by an id holding a NUL find
nothing on both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from store_helpers import agent_id, make_hive

from ruflo.errors import NotFound, PolicyError, Unstorable
from ruflo.model import (
    Agent,
    Conversation,
    Hive,
    MemoryEntry,
    Message,
    Mode,
    Task,
    TaskState,
    new_id,
)

NUL = "a\x00b"


def refused(write: Callable[[], Any], *words: str) -> None:
    with pytest.raises(Unstorable) as caught:
        write()
    message = str(caught.value)
    for word in (*words, "NUL", "nothing was stored"):
        assert word in message, message


def test_nul_is_refused_in_every_kind_of_text(store: Any) -> None:
    def hive(**fields: Any) -> Hive:
        return Hive(**{"id": new_id(), "name": "h", "mode": Mode.SWARM, "objective": "o",
                       **fields})

    refused(lambda: store.create_hive(hive(name=NUL)), "hive's name")
    refused(lambda: store.create_hive(hive(objective=NUL)), "objective")
    refused(lambda: store.create_hive(hive(workspace=f"/tmp/{NUL}")), "workspace")
    refused(lambda: store.create_hive(hive(owner=NUL)), "owner")
    good = hive()
    refused(lambda: store.create_hive(good, [Agent(id=new_id(), hive_id=good.id, name=NUL)]),
            "agent's name")
    refused(lambda: store.create_hive(good, [], [Task(id=new_id(), hive_id=good.id, title="t",
                                                      skills=("x", NUL))]), "task's skills")
    assert store.list_hives() == []

    made = make_hive(store, tasks=1)
    (task,) = store.list_tasks(made.id)
    refused(lambda: store.post_tasks(made.id, [Task(id=new_id(), hive_id=made.id, title=NUL)]),
            "task's title")
    refused(lambda: store.post_tasks(made.id, [Task(id=new_id(), hive_id=made.id, title="t",
                                                    description=NUL)]), "description")
    refused(lambda: store.add_agent(Agent(id=new_id(), hive_id=made.id, name="n",
                                          capabilities=NUL)), "capabilities")
    refused(lambda: store.update_task(task.id, title=NUL), "title")
    refused(lambda: store.update_hive(made.id, objective=NUL), "objective")
    refused(lambda: store.update_agent(agent_id(made), name=NUL), "name")
    claimed = store.claim_task(made.id, agent_id(made), lease_seconds=60)
    assert claimed is not None
    refused(lambda: store.finish_task(task.id, agent_id(made), state=TaskState.DONE,
                                      result=NUL), "result")
    assert store.get_task(task.id).state is TaskState.CLAIMED
    assert len(store.list_tasks(made.id)) == 1
    assert len(store.list_agents(made.id)) == 1

    chat = Conversation(id=new_id(), user_id="u", title="t", model="m")
    refused(lambda: store.create_conversation(Conversation(id=new_id(), user_id="u",
                                                           title=NUL, model="m")), "title")
    store.create_conversation(chat)
    refused(lambda: store.add_message(Message(id=new_id(), conversation_id=chat.id,
                                              role="user", content=NUL)), "content")
    refused(lambda: store.update_conversation(chat.id, title=NUL), "title")
    assert store.messages(chat.id) == []
    refused(lambda: store.memory_put(MemoryEntry(namespace="n", key="k", content=NUL)),
            "content")
    refused(lambda: store.memory_put(MemoryEntry(namespace=NUL, key="k", content="c")),
            "namespace")
    refused(lambda: store.memory_put(MemoryEntry(namespace="n", key="k", content="c",
                                                 tags=("t", NUL))), "tags")
    assert store.memory_list() == []


def test_lookups_by_an_id_holding_nul_find_nothing(store: Any) -> None:
    made = make_hive(store, tasks=1)
    for lookup in (lambda: store.get_hive(NUL), lambda: store.get_task(NUL),
                   lambda: store.get_agent(NUL), lambda: store.get_conversation(NUL),
                   lambda: store.memory_get("n", NUL)):
        with pytest.raises(NotFound):
            lookup()
    # The store still works after Postgres was spared the question.
    assert store.get_hive(made.id).id == made.id


CYCLES = {
    "self": [("a", ["a"])],
    "pair": [("a", ["b"]), ("b", ["a"])],
    "ring of five": [("a", ["e"]), ("b", ["a"]), ("c", ["b"]), ("d", ["c"]), ("e", ["d"])],
    "ring behind a sound task": [("root", []), ("x", ["root", "y"]), ("y", ["x"])],
}


@pytest.mark.parametrize("edges", CYCLES.values(), ids=CYCLES.keys())
def test_a_batch_whose_dependencies_form_a_cycle_is_refused(store: Any,
                                                            edges: list[tuple[str, list[str]]]
                                                            ) -> None:
    made = make_hive(store, tasks=1)
    before = store.list_tasks(made.id)
    ids = {title: new_id() for title, _ in edges}
    batch = [Task(id=ids[title], hive_id=made.id, title=title,
                  depends_on=tuple(ids[dep] for dep in deps)) for title, deps in edges]
    with pytest.raises(PolicyError, match="dependency cycle") as caught:
        store.post_tasks(made.id, batch)
    assert "nothing was posted" in str(caught.value)
    assert "→" in str(caught.value)
    assert store.list_tasks(made.id) == before
    with pytest.raises(PolicyError, match="dependency cycle"):
        store.create_hive(Hive(id=new_id(), name="h", mode=Mode.SWARM, objective="o"), [],
                          [Task(id=task.id, hive_id="", title=task.title,
                                depends_on=task.depends_on) for task in batch])
    assert [hive.id for hive in store.list_hives()] == [made.id]
