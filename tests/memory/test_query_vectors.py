"""A long-lived ranker (ruflo mcp, the server) remembers the vectors of recent queries: asking
again skips the model, gives the same answer, and the memory stays bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ruflo.memory import Memory, semantic_available

pytestmark = pytest.mark.skipif(not semantic_available(),
                                reason="the embeddings extra is not installed")


def counting_ranker(tmp_path: Path) -> tuple[Any, list[int]]:
    from ruflo.memory import semantic

    class Counting(semantic.MiniLMEncoder):
        def encode(self, texts: Any, *, batch_size: int = 32) -> Any:
            calls.append(len(texts))
            return super().encode(texts, batch_size=batch_size)

    calls: list[int] = []
    return semantic.SemanticRanker(tmp_path / "vectors.sqlite3", Counting()), calls


def test_a_repeated_query_skips_the_model_and_answers_alike(store, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from ruflo.memory import semantic

    ranker, calls = counting_ranker(tmp_path)
    memory = Memory(store, ranker)
    memory.put("n", "bees", "Bees make honey from the nectar of flowers.")
    memory.put("n", "tax", "File the quarterly VAT return before the 7th.")
    first = memory.search("insects that produce something sweet", namespace="n")
    encoded = len(calls)
    again = memory.search("insects that produce something sweet", namespace="n")
    assert len(calls) == encoded, "the second search used the remembered vector"
    assert [(e.key, e.score) for e in again] == [(e.key, e.score) for e in first]
    assert again[0].key == "bees"
    other = memory.search("paying sales taxes", namespace="n")
    assert len(calls) == encoded + 1, "a new query is encoded"
    assert other[0].key == "tax"

    monkeypatch.setattr(semantic, "QUERY_CACHE_SIZE", 2)
    for query in ("one", "two", "three"):
        ranker.query_vector(query)
    assert list(ranker._queries) == ["two", "three"], "the oldest query is forgotten first"
    vector = ranker.query_vector("three")
    with pytest.raises(ValueError, match="read-only"):
        vector[0] = 1.0  # shared between searches, so nobody may change it
