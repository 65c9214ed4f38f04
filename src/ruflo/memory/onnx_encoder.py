"""all-MiniLM-L6-v2 on ONNX Runtime, for long-lived processes (`ruflo mcp`): a new query in ~2 ms
where numpy takes ~8 (two cores). Depends on ruflo.memory.semantic and, lazily, onnxruntime (the
`embeddings` extra); absent or broken, callers keep the numpy encoder.

The BERT graph, out of ONNX Runtime's fused CPU kernels (Attention, SkipLayerNormalization,
BiasGelu), ships in graphs/ without its weights (~20 KB, written by ruflo.memory.minilm_graph at
development time, so the onnx package is not needed here): the session is handed the arrays
session_weights derives from the same safetensors file. `ruflo mcp` runs it with 8-bit weights
(each product's input is quantised per call by the kernel): ~1.7x quicker than in float, its
vectors within 1% of numpy's (cosine >= 0.99), which moves only near-ties. Tokens and embedding
lookup stay in numpy, shared with MiniLMEncoder: the 47 MB word table then stays memory-mapped
instead of copied into the session.
Setting up costs ~0.2 s of imports, weights and session, more than a one-shot CLI search could
save, so `ruflo memory search` keeps numpy.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Literal

from ruflo.memory.semantic import MiniLMEncoder, map_safetensors

GRAPHS = {True: "minilm-int8.onnx", False: "minilm-float.onnx"}
"""The committed graph of each variant, by whether its weights are 8-bit."""
THREADS = min(2, os.cpu_count() or 1)
"""Two at most: a query's products are small, and `ruflo mcp` shares the machine with the
agents calling it."""

Spinning = Literal["within runs", "always", "never"]

log = logging.getLogger(__name__)


def quickest_encoder() -> MiniLMEncoder:
    """ONNX Runtime's encoder, or numpy's when it can't be had: then a warning says why (and
    searches answer alike, only slower)."""
    problem = onnx_runtime_missing()
    if problem is None:
        try:
            return OnnxMiniLMEncoder(int8=True)
        except Exception as error:  # whatever breaks the optional engine, numpy still works
            problem = describe(error)
    log.warning("memory search runs on numpy, ~4x slower per new query: ONNX Runtime can't be "
                "used (%s); pip install 'ruflo[embeddings]' (again, if it is broken) brings it",
                problem)
    return MiniLMEncoder()


def onnx_runtime_problem(*, build: bool = False) -> str | None:
    """Why long-lived processes would search on numpy rather than ONNX Runtime, or None. With
    `build`, the encoder is built and run once (~0.5 s) instead of only its packages found."""
    problem = onnx_runtime_missing()
    if problem is not None or not build:
        return problem
    try:
        OnnxMiniLMEncoder(int8=True).encode(["ruflo doctor"])
    except Exception as error:  # any failure is the answer
        return describe(error)
    return None


def onnx_runtime_missing() -> str | None:
    """Which package the ONNX Runtime encoder lacks (checked without importing), or None."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    return None


def describe(error: Exception) -> str:
    """The error in one line, for people (ONNX Runtime's messages run on with internals)."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__


class OnnxMiniLMEncoder(MiniLMEncoder):
    """MiniLMEncoder with the forward pass run by ONNX Runtime: the same vectors (to 1e-4), or
    with `int8` weights, vectors within 1% of them, ~1.7x sooner."""

    def __init__(self, model_dir: Path | None = None, *, int8: bool = False) -> None:
        super().__init__(model_dir)
        self.engine = "ONNX Runtime, int8 weights" if int8 else "ONNX Runtime"
        ort: Any = importlib.import_module("onnxruntime")
        # The weights go to ONNX Runtime, which copies them, from a mapping of their own: once
        # it is dropped the pages read while deriving them leave this process's memory.
        # self.weights keeps mapping the embedding tables, of which a search reads a few rows.
        weights = session_weights(self.np, map_safetensors(self.np, self.weights_path),
                                  layers=self.layers, int8=int8)
        self.session: Any = inference_session(ort, graph_path(int8).read_bytes(), weights)

    def _forward(self, ids: Any, mask: Any) -> Any:
        (vectors,) = self.session.run(None, {"embeddings": self.embed(ids), "mask": mask})
        return vectors


def inference_session(ort: Any, model: bytes, weights: dict[str, Any], *, threads: int = THREADS,
                      spinning: Spinning = "never") -> Any:
    """An ONNX Runtime session of `model` (a committed graph) on the CPU, with ORT's own graph
    optimisations. The weights, which the graph declares as external initializers, are copied
    in: the caller may drop them afterwards. (SessionOptions.add_initializer would use the
    arrays in place, but only for initializers the graph holds with their data, or inputs that
    every run must then feed.)

    `spinning`: when idle pool threads spin rather than sleep. Never (ruflo's choice), an idle
    `ruflo mcp` costs no CPU. "always" (ORT's default) answers a query ~2-4 ms sooner but spins
    on for ~50 ms after it, a core's worth of CPU; "within runs" stops at the end of each query,
    which is ~1-2 ms quicker back to back but ~3 ms slower when queries come tens of
    milliseconds or more apart, as an agent's do. bench/embeddings.py measures all three."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's arena would keep, for good, the memory of the largest batch it ever ran (~300 MB
    # after 32 long notes); plain allocations are given back, and queries are no slower.
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.intra_op.allow_spinning",
                                     "0" if spinning == "never" else "1")
    if spinning == "within runs":
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.log_severity_level = 3  # errors only; they raise anyway
    names = sorted(weights)
    options.add_external_initializers(
        names, [ort.OrtValue.ortvalue_from_numpy(weights[name]) for name in names])
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def graph_path(int8: bool) -> Path:
    """The committed graph, weights left out, of the float or 8-bit variant."""
    return Path(__file__).parent / "graphs" / GRAPHS[int8]


def session_weights(np: Any, weights: dict[str, Any], *, layers: int,
                    int8: bool = False) -> dict[str, Any]:
    """The arrays the graph of `int8` names, from the model's safetensors `weights`: query, key
    and value joined into one product per layer, and with `int8`, each product's weights
    rounded to 8 bits per output column (symmetric: W ~ scale * q with q in [-127, 127]) with
    their scales. Float products keep W as stored ([out, in]; the graph multiplies by W.T)."""
    found: dict[str, Any] = {}

    def add(name: str, array: Any, dtype: Any = np.float32) -> None:
        found[name] = np.ascontiguousarray(array, dtype=dtype)

    def product(name: str, transposed: Any) -> None:
        if not int8:
            add(name, transposed.T)
            return
        transposed = np.asarray(transposed, dtype=np.float32)
        scale = np.abs(transposed).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        add(f"{name}.int8", np.clip(np.rint(transposed / scale), -127, 127), np.int8)
        add(f"{name}.scale", scale)

    for name in ("embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"):
        add(name, weights[name])
    for layer in range(layers):
        p = f"encoder.layer.{layer}"
        parts = [f"{p}.attention.self.{part}" for part in ("query", "key", "value")]
        add(f"{p}.attention.qkv.bias", np.concatenate([weights[f"{part}.bias"] for part in parts]))
        qkv = np.concatenate([weights[f"{part}.weight"] for part in parts]).T
        if int8:
            product(f"{p}.attention.qkv.weight", qkv)
        else:  # Attention takes [in, 3 * out]
            add(f"{p}.attention.qkv.weight", qkv)
        for dense in ("attention.output.dense", "intermediate.dense", "output.dense"):
            product(f"{p}.{dense}.weight", weights[f"{p}.{dense}.weight"].T)
            add(f"{p}.{dense}.bias", weights[f"{p}.{dense}.bias"])
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            add(f"{p}.{norm}.weight", weights[f"{p}.{norm}.weight"])
            add(f"{p}.{norm}.bias", weights[f"{p}.{norm}.bias"])
    return found
