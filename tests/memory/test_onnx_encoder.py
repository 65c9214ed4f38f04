"""The ONNX Runtime encoder `ruflo mcp` searches with: in float its vectors equal numpy's
(truncation and padded batches included), with the int8 weights `ruflo mcp` uses they are within
1% of them; both rank notes alike; `ruflo mcp` ends up with it while a one-shot
CLI search keeps numpy; without onnxruntime, or when it fails, numpy answers and says why. The
committed graphs are what ruflo.memory.minilm_graph builds now, and running them needs no onnx."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ruflo.memory import Memory, open_memory, search_backend, semantic_available
from ruflo.store import open_store

pytestmark = pytest.mark.skipif(not semantic_available(),
                                reason="the embeddings extra is not installed")

LONG = "The deploy failed because the lock on the tasks table was held. " * 40
TEXTS = [
    "",
    "?!",
    "hi",
    "Migrations hang when another session holds a lock on the tasks table.",
    LONG,
    "Budgets warn at 80 percent and stop the agent at 100 percent of its cap.",
    "[CLS] naïve café — 東京 [MASK]",
    "A 401 from the gateway means the LiteLLM virtual key was revoked; the hive pauses.",
]
NOTES = {
    "deploy": "Deploy the server to Kubernetes with the manifests in deploy/k8s; Argo CD syncs them.",
    "postgres-lock": "Migrations hang when another session holds a lock on the tasks table.",
    "gateway-key": "A 401 from the gateway means the LiteLLM virtual key was revoked.",
    "tests": "Run the unit tests with scripts/test; pytest markers select the postgres tests.",
    "budget": "Budgets warn at 80 percent and stop the agent at 100 percent of its cap.",
    "bees": "Bees make honey from the nectar of flowers.",
}
QUERIES = ["how do we ship the service onto the cluster", "the schema upgrade is stuck waiting",
           "why does the model proxy refuse our credentials", "what happens when spending runs out",
           "insects that produce something sweet", "budget"]


@pytest.fixture
def store(tmp_path: Path) -> Any:
    """SQLite only: the engines are what differs here, not the stores."""
    opened = open_store(f"sqlite:///{tmp_path / 'ruflo.db'}")
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def encoders() -> tuple[Any, Any, Any]:
    """numpy's, ONNX Runtime's in float, ONNX Runtime's with int8 weights."""
    from ruflo.memory.onnx_encoder import OnnxMiniLMEncoder
    from ruflo.memory.semantic import MiniLMEncoder

    return MiniLMEncoder(), OnnxMiniLMEncoder(), OnnxMiniLMEncoder(int8=True)


def test_vectors_equal_numpy_alone_and_in_padded_batches(encoders: tuple[Any, Any]) -> None:
    import numpy as np

    from ruflo.memory.semantic import MAX_TOKENS

    numpy_encoder, onnx_encoder, _ = encoders
    assert len(onnx_encoder.tokenizer.encode(LONG)) == MAX_TOKENS, "the long text is truncated"
    alone = np.stack([numpy_encoder.encode([text])[0] for text in TEXTS])  # no padding at all
    together = onnx_encoder.encode(TEXTS, batch_size=len(TEXTS))  # one run, padded to 256
    assert together.dtype == np.float32
    assert together.shape == (len(TEXTS), 384)
    assert np.abs(together - alone).max() < 1e-4
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    in_threes = onnx_encoder.encode(TEXTS, batch_size=3)
    assert np.abs(in_threes - numpy_encoder.encode(TEXTS, batch_size=3)).max() < 1e-4
    # Real words are not all alike: a vector that ignored its text would pass the rest.
    assert float(together[3] @ together[4]) < 0.95


def test_int8_vectors_stay_within_a_percent_of_numpy(encoders: tuple[Any, Any, Any]) -> None:
    import numpy as np

    numpy_encoder, _, int8_encoder = encoders
    exact = numpy_encoder.encode(TEXTS)
    sentences = [i for i, text in enumerate(TEXTS) if len(text) > 2]
    for batch_size in (1, 3, len(TEXTS)):  # alone, and padded beside others (truncation too)
        found = int8_encoder.encode(TEXTS, batch_size=batch_size)
        assert found.dtype == np.float32
        assert found.shape == (len(TEXTS), 384)
        assert np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-5)
        agreement = (found * exact).sum(axis=1)
        assert agreement[sentences].min() >= 0.985, (batch_size, agreement)
        assert agreement.min() >= 0.95, (batch_size, agreement)  # "" and "?!" drift the most
        assert float(found[3] @ found[4]) < 0.95


def test_notes_rank_alike_on_both_engines(store, encoders: tuple[Any, Any, Any]) -> None:
    from ruflo.memory.semantic import SemanticRanker

    numpy_encoder, onnx_encoder, int8_encoder = encoders
    on_numpy = Memory(store, SemanticRanker(None, numpy_encoder))
    on_onnx = Memory(store, SemanticRanker(None, onnx_encoder))
    on_int8 = Memory(store, SemanticRanker(None, int8_encoder))  # notes embedded in int8 too
    for key, text in NOTES.items():
        on_numpy.put("n", key, text, tags=["fixture"])
    for query in QUERIES:
        expected = on_numpy.search(query, namespace="n", limit=len(NOTES))
        found = on_onnx.search(query, namespace="n", limit=len(NOTES))
        assert [e.key for e in found] == [e.key for e in expected], query
        assert all(abs((a.score or 0) - (b.score or 0)) < 1e-4
                   for a, b in zip(found, expected, strict=True)), query
        rough = on_int8.search(query, namespace="n", limit=len(NOTES))
        assert rough[0].key == expected[0].key, query
        assert all(abs((a.score or 0) - (b.score or 0)) < 0.05
                   for a, b in zip(sorted(rough, key=lambda e: e.key),
                                   sorted(expected, key=lambda e: e.key), strict=True)), query
    assert on_onnx.search("insects that produce something sweet", namespace="n")[0].key == "bees"


def test_the_committed_graphs_are_what_the_generator_builds() -> None:
    """Else a change to minilm_graph.py (or to session_weights' names) was not written out:
    `python -m ruflo.memory.minilm_graph` does."""
    pytest.importorskip("onnx", reason="the generator needs onnx, from the dev extra")
    import onnx

    from ruflo.memory.minilm_graph import SUPPLIED, build_graphs
    from ruflo.memory.onnx_encoder import graph_path

    for int8, built in build_graphs().items():
        committed = graph_path(int8).read_bytes()
        assert committed == built, f"{graph_path(int8).name} is stale"
        model = onnx.load_from_string(committed)
        assert [i.name for i in model.graph.input] == ["embeddings", "mask"]
        assert [o.name for o in model.graph.output] == ["vectors"]
        declared = [t for t in model.graph.initializer if t.data_location == t.EXTERNAL]
        assert len(declared) == (98 if int8 else 74)  # 16 or 12 per layer, 2 before them
        assert all(t.external_data[0].value == SUPPLIED and not t.raw_data for t in declared)
        assert len(committed) < 30_000, "no weights in the package data"


def test_running_the_graphs_needs_no_onnx_package() -> None:
    """The main install has onnxruntime but not onnx: both variants build and encode with
    `import onnx` failing, and never try it."""
    code = ("import sys\n"
            "class Refuse:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'onnx':\n"
            "            raise ImportError('onnx is blocked by the test')\n"
            "sys.meta_path.insert(0, Refuse())\n"
            "from ruflo.memory.onnx_encoder import OnnxMiniLMEncoder, onnx_runtime_missing\n"
            "assert onnx_runtime_missing() is None\n"
            "for int8 in (True, False):\n"
            "    vectors = OnnxMiniLMEncoder(int8=int8).encode(['bees make honey', 'x'])\n"
            "    print(vectors.shape, round(float(vectors[0] @ vectors[0]), 4))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["(2, 384) 1.0"] * 2, done.stdout


def test_ruflo_mcp_searches_on_onnx_runtime(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory the `ruflo mcp` command serves, with the MCP server itself stubbed out."""
    import ruflo.mcp.server
    from ruflo.commands.mcp import Transport, mcp

    for var in [v for v in os.environ if v.startswith("RUFLO_")] + ["DATABASE_URL"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RUFLO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    served: list[Any] = []

    class Server:
        def run(self, transport: str, **options: Any) -> None:
            served.append(transport)

    def build_server(desk: Any) -> Server:
        served.append(desk)
        return Server()

    monkeypatch.setattr(ruflo.mcp.server, "build_server", build_server)
    mcp(transport=Transport.STDIO, host="127.0.0.1", port=3100, hive=None, insecure=False)
    desk, transport = served
    assert transport == "stdio"
    assert desk.memory.ranker.encoder.engine == "ONNX Runtime, int8 weights"


def test_a_cli_search_keeps_numpy(tmp_path: Path) -> None:
    """A one-shot `ruflo memory search` would spend more building ONNX Runtime's session than
    the search it speeds up: it never imports it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUFLO_")
           and k != "DATABASE_URL"}
    env.update({"RUFLO_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path),
                "XDG_CONFIG_HOME": str(tmp_path / "config")})
    code = ("import sys; from ruflo.cli import run; "
            "assert run(['memory', 'store', 'bees', 'Bees make honey from nectar.']) == 0; "
            "assert run(['memory', 'search', 'insects that make something sweet']) == 0; "
            "print('numpy' in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "default / bees" in lines[-3], done.stdout
    assert lines[-1] == "True []", "the search was semantic, on numpy alone"


def test_without_onnxruntime_numpy_answers_and_says_why(
        store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    with caplog.at_level(logging.WARNING):
        memory = open_memory(store, data_dir=tmp_path, long_lived=True)
        memory.put("n", "bees", NOTES["bees"])
        memory.put("n", "budget", NOTES["budget"])
        assert memory.search("insects that produce something sweet", namespace="n")[0].key == "bees"
    assert memory.ranker is not None
    assert memory.ranker.encoder.engine == "numpy"
    assert "onnxruntime is not installed" in caplog.text
    assert "runs on numpy" in caplog.text
    said = search_backend(try_engine=True)
    assert "numpy everywhere" in said
    assert "onnxruntime is not installed" in said


def test_when_building_fails_numpy_answers_and_says_why(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from ruflo.memory import onnx_encoder

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no kernel for Attention\nsecond line")

    monkeypatch.setattr(onnx_encoder, "session_weights", broken)
    with caplog.at_level(logging.WARNING):
        encoder = onnx_encoder.quickest_encoder()
    assert encoder.engine == "numpy"
    assert encoder.encode(["still answers"]).shape == (1, 384)
    assert "RuntimeError: no kernel for Attention" in caplog.text
    assert "second line" not in caplog.text
    said = search_backend(try_engine=True)
    assert "RuntimeError: no kernel for Attention" in said
    assert search_backend().startswith(  # only looking for the packages, it can't know
        "semantic (all-MiniLM-L6-v2 from the embeddings extra, run by ONNX Runtime with int8 weights in ruflo mcp")


def test_ruflo_doctor_names_the_engine(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RUFLO_") and k not in ("DATABASE_URL", "OPENAI_BASE_URL",
                                                       "LITELLM_BASE_URL")}
    env.update({"RUFLO_DATA_DIR": str(tmp_path), "HOME": str(tmp_path),
                "XDG_CONFIG_HOME": str(tmp_path / "config")})
    done = subprocess.run([sys.executable, "-c", "from ruflo.cli import main; main()", "doctor"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert "memory search: semantic (all-MiniLM-L6-v2 from the embeddings extra, run by ONNX " \
           "Runtime with int8 weights in ruflo mcp and numpy in CLI calls" in done.stdout, \
        done.stdout + done.stderr
