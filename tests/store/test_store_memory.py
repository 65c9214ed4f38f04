"""Memory notes: upsert by (namespace, key), ranked full-text search, hostile queries."""

from __future__ import annotations

from typing import Any

import pytest

from ruflo.errors import NotFound
from ruflo.model import MemoryEntry

CORPUS = {
    "postgres-locks": "Use SELECT FOR UPDATE SKIP LOCKED so that workers never claim the same "
                      "row; the database locks rows while a transaction holds them.",
    "sqlite-wal": "SQLite in WAL mode lets readers continue while one writer commits; set a busy "
                  "timeout for concurrent writers.",
    "budget-caps": "Every agent has a budget cap in tokens and dollars; calls stop at 100 percent "
                   "and warn at 80 percent of the budget.",
    "kubernetes-probes": "Probe a liveness endpoint that touches nothing outside the process, "
                         "never the page that renders the model list.",
    "litellm-keys": "The gateway authenticates with a LiteLLM virtual key, not the upstream "
                    "provider key; revoking it stops inference.",
}


@pytest.fixture
def notes(store: Any) -> Any:
    for key, content in CORPUS.items():
        store.memory_put(MemoryEntry(namespace="ops", key=key, content=content,
                                     tags=(key.split("-")[0],)))
    store.memory_put(MemoryEntry(namespace="other", key="wal", content="wal wal wal writer"))
    return store


RELEVANCE = [
    ("which rows are locked when workers claim", "postgres-locks"),
    ("readers and writers in WAL mode", "sqlite-wal"),
    ("budget cap for agent spending", "budget-caps"),
    ("liveness probe endpoint", "kubernetes-probes"),
    ("virtual key for the gateway", "litellm-keys"),
]
HOSTILE = [
    '"', "'", "*", "AND", "NOT OR", "NEAR(", 'foo" OR "bar', "a:b", "(((", "-x", "^start",
    "col:value", "a & | ! b", "<->", "\\", "%s", "%", "?", "'; DROP TABLE memory; --", "\x00",
    "é", "🙂 emoji", "x" * 5000, " ".join(["word"] * 500), "budget!!! caps???",
]


def test_best_match_ranks_first(notes: Any) -> None:
    for query, expected in RELEVANCE:
        found = notes.memory_search(query, namespace="ops")
        assert found, query
        assert found[0].key == expected, query
        scores = [entry.score for entry in found]
        assert scores == sorted(scores, reverse=True)


def test_any_query_is_safe(notes: Any) -> None:
    for query in HOSTILE:
        results = notes.memory_search(query)
        assert isinstance(results, list), query
    assert len(notes.memory_list()) == 6


def test_punctuation_does_not_hide_words(notes: Any) -> None:
    assert notes.memory_search("budget!!! caps???")[0].key == "budget-caps"
    assert notes.memory_search("") == []
    assert notes.memory_search("  ...  ") == []


def test_namespace_filter_put_get_delete(notes: Any) -> None:
    assert [e.key for e in notes.memory_search("wal writer", namespace="other")] == ["wal"]
    assert {e.namespace for e in notes.memory_search("wal writer")} == {"ops", "other"}
    updated = notes.memory_put(MemoryEntry(namespace="other", key="wal", content="replaced"))
    assert updated.content == "replaced"
    assert notes.memory_search("writer", namespace="other") == []
    assert notes.memory_search("replaced")[0].key == "wal"
    assert [e.key for e in notes.memory_list("other")] == ["wal"]
    assert len(notes.memory_list()) == 6
    assert len(notes.memory_list(limit=2)) == 2
    assert notes.memory_delete("other", "wal")
    assert not notes.memory_delete("other", "wal")
    assert notes.memory_search("replaced") == []
    with pytest.raises(NotFound):
        notes.memory_get("other", "wal")
